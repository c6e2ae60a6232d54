package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"

	"github.com/rediq/rediq"
)

// limitRow is one task's limit as --output json prints it.
type limitRow struct {
	Task        string         `json:"task"`
	Queue       string         `json:"queue"`
	Rate        int            `json:"rate"`
	Per         string         `json:"per,omitempty"` // a Go duration, "1s"; absent without a rate
	Concurrency int            `json:"concurrency"`
	Source      string         `json:"source"`  // code or set
	Running     map[string]int `json:"running"` // per limit key; "" for tasks enqueued without one
}

func newLimitRow(in rediq.LimitInfo) limitRow {
	r := limitRow{Task: in.Task, Queue: in.Queue, Rate: in.Rate, Concurrency: in.Concurrency, Source: "set", Running: in.Running}
	if in.Rate > 0 {
		r.Per = in.Per.String()
	}
	if in.Code {
		r.Source = "code"
	}
	if r.Running == nil {
		r.Running = map[string]int{}
	}
	return r
}

func runLimit(ctx context.Context, args []string, stdout, _ io.Writer) error {
	help := func() {
		fmt.Fprint(stdout, "Usage: rediq limit <action> [TASK] [flags]\n\n"+
			"A task's limit caps how often and how many of it start, counted across every worker\n"+
			"of the namespace (per limit key for tasks enqueued with rediq.LimitKey). A limit\n"+
			"declared in code (rediq.RateLimit, rediq.Concurrency) is a default: one set here\n"+
			"stands over it on every worker at once, until it is set again.\n\nActions:\n"+
			"  set   replace the limit of task TASK: --rate, --concurrency, or --clear\n"+
			"  show  the limit of each task, where it comes from, and how many run now\n")
	}
	return runAction("limit", "limit set TASK", []string{"set", "show"}, args, help,
		func(action string, rest []string) error {
			if action == "set" {
				return limitSet(ctx, rest, stdout)
			}
			return limitShow(ctx, rest, stdout)
		})
}

func limitSet(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("limit set", "rediq limit set TASK [--rate N/DURATION] [--concurrency N] [--clear] [flags]\n\n"+
		"Sets the limit of the task on every worker at once, for the tasks already waiting\n"+
		"too, and prints it. It replaces the whole limit, the one declared in code included:\n"+
		"--rate alone leaves the task no concurrency limit, and --concurrency alone no rate\n"+
		"limit. --clear removes both, until the next limit set. The task's queue comes from\n"+
		"the workers that run it: one of them must have started.")
	var rf redisFlags
	rf.register(fs)
	var rate rateValue
	fs.Var(&rate, "rate", "at most N starts per DURATION: 100/s, 6000/m, 100/h, 5/250ms (a unit s, m or h, or a Go duration)")
	conc := fs.Int("concurrency", 0, "at most N running at once")
	clear := fs.Bool("clear", false, "remove the task's limits, the one declared in code too")
	out := registerOutput(fs, "{task, queue, rate, per, concurrency, source, running}")
	pos, err := fs.parseArgs(args, stdout, "TASK")
	if err != nil {
		return err
	}
	task := pos[0]
	hasRate, hasConc := fs.Changed("rate"), fs.Changed("concurrency")
	switch {
	case *clear && (hasRate || hasConc):
		return usageErrorf("limit set: give --rate and --concurrency, or --clear, not both")
	case !*clear && !hasRate && !hasConc:
		return usageErrorf("limit set: give --rate, --concurrency or both, or --clear to remove the limits (see rediq limit set --help)")
	case hasConc && *conc < 1:
		return usageErrorf("limit set: --concurrency %d: 1 or more (--clear removes the limits)", *conc)
	}
	l := rediq.Limit{Rate: rate.n, Per: rate.per}
	if hasConc {
		l.Concurrency = *conc
	}
	return withApp(ctx, "limit set", &rf, func(ctx context.Context, app *rediq.App) error {
		if err := app.SetLimit(ctx, task, l); err != nil {
			if errors.Is(err, rediq.ErrInvalidOption) {
				return &usageError{err}
			}
			return err
		}
		// Read back what workers apply now, from where the task's limit is kept.
		infos, err := app.Limits(ctx)
		if err != nil {
			return err
		}
		var got *rediq.LimitInfo
		for i, in := range infos {
			// A task moved to another queue can keep its old queue's code
			// default: the one just set is the one that matches.
			if in.Task == task && (got == nil || (!in.Code && in.Limit == l)) {
				got = &infos[i]
			}
		}
		if got == nil {
			return fmt.Errorf("the limit of %q was set but is not listed in %s", task, where(app))
		}
		if *out == outputJSON {
			return printJSON(stdout, newLimitRow(*got))
		}
		_, err = fmt.Fprintf(stdout, "limit of %q on queue %q: %s\n", got.Task, got.Queue, got.Limit)
		return err
	})
}

func limitShow(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("limit show", "rediq limit show [flags]\n\n"+
		"Lists the limit of each task of the namespace: its queue, rate and concurrency,\n"+
		"whether it was declared in code (rediq.RateLimit, rediq.Concurrency; workers write\n"+
		"it when they start) or set (rediq limit set, App.SetLimit), and how many of its\n"+
		"tasks hold a concurrency slot now: in all, then the busiest limit keys.")
	var rf redisFlags
	rf.register(fs)
	out := registerOutput(fs, "an array of {task, queue, rate, per, concurrency, source, running}")
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	return withApp(ctx, "limit show", &rf, func(ctx context.Context, app *rediq.App) error {
		infos, err := app.Limits(ctx)
		if err != nil {
			return err
		}
		if *out == outputJSON {
			rows := make([]limitRow, len(infos))
			for i, in := range infos {
				rows[i] = newLimitRow(in)
			}
			return printJSON(stdout, rows)
		}
		if len(infos) == 0 {
			_, err := fmt.Fprintf(stdout, "No limits in %s (workers write those declared in code when they start).\n", where(app))
			return err
		}
		t := newTable("TASK", "QUEUE", "RATE", "CONCURRENCY", "SOURCE", "RUNNING")
		for _, in := range infos {
			r := newLimitRow(in)
			rate, conc := "-", "-"
			if r.Rate > 0 {
				rate = rediq.Limit{Rate: in.Rate, Per: in.Per}.String()
			}
			if r.Concurrency > 0 {
				conc = strconv.Itoa(r.Concurrency)
			}
			t.AppendRow(table.Row{r.Task, r.Queue, rate, conc, r.Source, runningCell(in)})
		}
		return printTable(stdout, t)
	})
}

// runningKeys is how many limit keys a RUNNING cell names; the rest are counted.
const runningKeys = 3

// runningCell is the RUNNING column: the tasks holding a concurrency slot,
// then, if any ran with a limit key, the busiest keys: "7 (acme=4, globex=2,
// +1 more)". "-" when the task has no concurrency limit and none are held.
func runningCell(in rediq.LimitInfo) string {
	if in.Concurrency == 0 && len(in.Running) == 0 {
		return "-"
	}
	total := 0
	var keys []string
	for k, n := range in.Running {
		total += n
		if k != "" && n > 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return strconv.Itoa(total)
	}
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(in.Running[b], in.Running[a]), strings.Compare(a, b))
	})
	var parts []string
	for _, k := range keys[:min(len(keys), runningKeys)] {
		parts = append(parts, fmt.Sprintf("%s=%d", oneLine(k, 24), in.Running[k]))
	}
	if len(keys) > runningKeys {
		parts = append(parts, fmt.Sprintf("+%d more", len(keys)-runningKeys))
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, ", "))
}

// rateValue is the value of --rate: n starts per period per.
type rateValue struct {
	n   int
	per time.Duration
}

func (r *rateValue) String() string {
	if r.n == 0 {
		return ""
	}
	return fmt.Sprintf("%d/%s", r.n, r.per)
}

func (r *rateValue) Type() string { return "N/DURATION" }

func (r *rateValue) Set(s string) error {
	n, per, err := parseRate(s)
	if err != nil {
		return err
	}
	r.n, r.per = n, per
	return nil
}

// parseRate reads N/UNIT or N/DURATION: "100/s", "6000/m", "100/h" (a bare
// unit is one of it), "100/1s", "5/250ms" (time.ParseDuration). The library
// checks the bounds (a period of 1ms or more, at most 1,000,000 per period).
func parseRate(s string) (int, time.Duration, error) {
	ns, ps, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, errors.New("want N/DURATION, as 100/s, 6000/m or 5/250ms")
	}
	n, err := strconv.Atoi(ns)
	if err != nil || n < 1 {
		return 0, 0, fmt.Errorf("%q is not a whole number of 1 or more", ns)
	}
	var per time.Duration
	switch ps {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		per, err = time.ParseDuration(ps)
		if err != nil || per <= 0 {
			return 0, 0, fmt.Errorf("%q is not a period: s, m, h, or a duration such as 250ms, 10s, 1m30s", ps)
		}
	}
	return n, per, nil
}
