package main

import (
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

// batchAction is one of the subcommands of "rediq batch".
type batchAction struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout io.Writer) error
}

var batchActions = []batchAction{
	{"stat", "a batch's counts per worker and in all, rate, ETA and whether it stopped", batchStatCmd},
	{"list", "the latest batches with their counts", batchListCmd},
	{"wait", "show a batch's progress until it completes (exit 0) or stops (exit 1)", batchWaitCmd},
	{"logs", "print a batch's output lines, or follow them as they come", batchLogsCmd},
	{"dump", "print the rows of a batch's table as JSON lines, newest first, or write them to a file", batchDumpCmd},
	{"errors", "the errors a batch's failed tasks died with, each once with its count", batchErrorsCmd},
	{"stop", "stop a batch: no task of it starts any more, running ones are cancelled", batchStopCmd},
}

func runBatch(ctx context.Context, args []string, stdout, _ io.Writer) error {
	names := make([]string, len(batchActions))
	for i, a := range batchActions {
		names[i] = a.name
	}
	return runAction("batch", "batch stat N", names, args, func() { printBatchUsage(stdout) },
		func(name string, rest []string) error {
			return batchActions[slices.Index(names, name)].run(ctx, rest, stdout)
		})
}

func printBatchUsage(w io.Writer) {
	fmt.Fprint(w, "Usage: rediq batch <action> [N] [flags]\n\n"+
		"Acts on one batch by its number N: the tasks one producer run enqueued with\n"+
		"rediq.InBatch, their output lines, result tables and counts.\n\nActions:\n")
	for _, a := range batchActions {
		fmt.Fprintf(w, "  %-7s %s\n", a.name, a.summary)
	}
	fmt.Fprint(w, "\nEach takes the flags of every command that touches Redis (--redis-url, --namespace,\n"+
		"…) and --output json. Run \"rediq batch <action> --help\" for the rest.\n")
}

// parseBatchID reads the N of "rediq batch <action> N".
func parseBatchID(action, s string) (int64, error) {
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, usageErrorf("batch %s: %q is not a batch number (a positive integer)", action, s)
	}
	return id, nil
}

// batchArg reads the N of an action that takes N or --latest (0 for --latest).
func batchArg(action, arg string, latest bool) (int64, error) {
	switch {
	case latest && arg != "":
		return 0, usageErrorf("batch %s: N and --latest: give one", action)
	case !latest && arg == "":
		return 0, usageErrorf("batch %s: missing N, or --latest (see rediq batch %[1]s --help)", action)
	case latest:
		return 0, nil
	}
	return parseBatchID(action, arg)
}

// latestBatch returns the stat of the newest batch of app's namespace.
func latestBatch(ctx context.Context, app *rediq.App) (rediq.BatchStat, error) {
	sts, err := app.ListBatches(ctx, 1)
	if err != nil {
		return rediq.BatchStat{}, err
	}
	if len(sts) == 0 {
		return rediq.BatchStat{}, fmt.Errorf("no batches in %s", where(app))
	}
	return sts[0], nil
}

// batchNotFound rewords the error of a batch number Redis does not hold,
// naming the namespace searched: the wrong namespace is the likeliest reason.
func batchNotFound(app *rediq.App, id int64, err error) error {
	if !errors.Is(err, rediq.ErrBatchNotFound) {
		return err
	}
	return &reworded{fmt.Sprintf("batch %d not found in %s "+
		"(a batch is kept for its retention after it ends, 7 days by default)", id, where(app)), err}
}

// batchCmd parses the flags of an action on one batch, N, opens the App and
// runs fn with it under the CLI's I/O timeout. register adds the action's own
// flags.
func batchCmd(ctx context.Context, args []string, stdout io.Writer, action, about, jsonShape string,
	register func(fs *flagSet), fn func(ctx context.Context, app *rediq.App, id int64, out outputFormat) error) error {
	fs := newFlagSet("batch "+action, "rediq batch "+action+" N [flags]\n\n"+about)
	var rf redisFlags
	rf.register(fs)
	if register != nil {
		register(fs)
	}
	out := registerOutput(fs, jsonShape)
	pos, err := fs.parseArgs(args, stdout, "N")
	if err != nil {
		return err
	}
	id, err := parseBatchID(action, pos[0])
	if err != nil {
		return err
	}
	return withApp(ctx, "batch "+action, &rf, func(ctx context.Context, app *rediq.App) error {
		return batchNotFound(app, id, fn(ctx, app, id, *out))
	})
}

// batchJSON is a batch's stat as --output json prints it. Times are RFC 3339
// in UTC, left out when not applicable.
type batchJSON struct {
	ID           int64        `json:"id"`
	State        string       `json:"state"` // running, completed or stopped
	Detached     bool         `json:"detached"`
	Enqueued     int          `json:"enqueued"`
	Started      int          `json:"started"`
	Succeeded    int          `json:"succeeded"`
	Failed       int          `json:"failed"`
	Cancelled    int          `json:"cancelled"`
	NeverStarted int          `json:"never_started"` // of the cancelled: ended without starting
	Running      int          `json:"running"`
	Unstarted    int          `json:"unstarted"`
	Rows         int          `json:"rows"`                // rows ever collected
	RowsHeld     *int         `json:"rows_held,omitempty"` // rows in its tables now (dump --pop removes some); stat and list only
	Stopped      bool         `json:"stopped"`
	StopReason   string       `json:"stop_reason,omitempty"`
	Created      time.Time    `json:"created,omitzero"`
	Finished     time.Time    `json:"finished,omitzero"`
	Rate         float64      `json:"rate_per_s"`
	ETAMs        int64        `json:"eta_ms,omitempty"` // left out when unknown or finished
	Workers      []workerJSON `json:"workers"`
}

type workerJSON struct {
	Worker    string `json:"worker"`
	Collected int    `json:"collected"`
	Executed  int    `json:"executed"`
	Failed    int    `json:"failed"`
}

func newBatchJSON(st rediq.BatchStat) batchJSON {
	j := batchJSON{ID: st.ID, State: batchState(st), Detached: st.Detached, Enqueued: st.Enqueued, Started: st.Started,
		Succeeded: st.Succeeded, Failed: st.Failed, Cancelled: st.Cancelled, NeverStarted: st.NeverStarted, Running: st.Running, Unstarted: st.Unstarted,
		Rows: st.Rows, Stopped: st.Stopped, StopReason: st.StopReason, Created: utc(st.Created), Finished: utc(st.Finished),
		Rate: st.Rate, ETAMs: st.ETA.Milliseconds(), Workers: []workerJSON{}}
	for _, w := range st.Workers {
		j.Workers = append(j.Workers, workerJSON{w.Worker, w.Collected, w.Executed, w.Failed})
	}
	return j
}

// batchState is one word for where a batch is.
func batchState(st rediq.BatchStat) string {
	switch {
	case st.Stopped:
		return "stopped"
	case !st.Finished.IsZero():
		return "completed"
	}
	return "running"
}

// batchMode says whether the batch lives with its producer.
func batchMode(st rediq.BatchStat) string {
	if st.Detached {
		return "detached"
	}
	return "keep-alive"
}

// cancelled says how many tasks were cancelled, and how many of them never
// started when some did not: "24 cancelled (20 never started)".
func cancelled(st rediq.BatchStat) string {
	if st.NeverStarted > 0 {
		return fmt.Sprintf("%d cancelled (%d never started)", st.Cancelled, st.NeverStarted)
	}
	return fmt.Sprintf("%d cancelled", st.Cancelled)
}

// ended counts the batch's tasks that will not run again.
func ended(st rediq.BatchStat) int { return st.Succeeded + st.Failed + st.Cancelled }

func rate(st rediq.BatchStat) string { return fmt.Sprintf("%.1f tasks/s", st.Rate) }

// eta shows how long the rest should take at the batch's rate so far.
func eta(st rediq.BatchStat) string {
	switch {
	case batchState(st) != "running":
		return "-"
	case st.ETA >= time.Second:
		return age(st.ETA)
	case st.ETA > 0:
		return "<1s"
	case st.Enqueued > 0 && ended(st) == st.Enqueued:
		return "0s" // all done; the producer may add more
	}
	return "unknown"
}

func batchStatCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("batch stat", "rediq batch stat N [flags]\n"+
		"  or: rediq batch stat --latest [flags]\n\n"+
		"Prints the batch's counts: a row per worker with the table\n"+
		"rows it collected and the attempts it executed and that failed, then the totals\n"+
		"with the tasks not started yet; then the tasks by state, the rate so far, the\n"+
		"ETA at that rate, and whether and why the batch stopped.")
	var rf redisFlags
	rf.register(fs)
	latest := fs.Bool("latest", false, "the newest batch of the namespace, in place of N")
	out := registerOutput(fs, `{id, state, detached, enqueued, started, succeeded, failed, cancelled, never_started, running, unstarted, `+
		`rows, stopped, stop_reason, created, finished, rate_per_s, eta_ms, workers: [{worker, collected, executed, failed}]}`)
	arg, err := fs.parseOptionalArg(args, stdout)
	if err != nil {
		return err
	}
	id, err := batchArg("stat", arg, *latest)
	if err != nil {
		return err
	}
	return withApp(ctx, "batch stat", &rf, func(ctx context.Context, app *rediq.App) error {
		var st rediq.BatchStat
		var err error
		if *latest {
			st, err = latestBatch(ctx, app)
		} else {
			st, err = app.BatchStat(ctx, id)
		}
		if err != nil {
			return batchNotFound(app, id, err)
		}
		held, err := app.BatchRowsHeld(ctx, st.ID)
		if err != nil {
			return err
		}
		if *out == outputJSON {
			j := newBatchJSON(st)
			j.RowsHeld = &held
			return printJSON(stdout, j)
		}
		return printBatchStat(stdout, st, held, time.Now())
	})
}

// printBatchStat writes vredis's stat table and the lines under it; held is
// what BatchRowsHeld says.
func printBatchStat(w io.Writer, st rediq.BatchStat, held int, now time.Time) error {
	t := newTable("WORKER", "COLLECTED", "EXECUTED", "FAILED", "UNSTARTED")
	var executed, failed int
	for _, ws := range st.Workers {
		// A worker name is chosen by its deployment: keep it to one cell.
		t.AppendRow(table.Row{oneLine(ws.Worker, 60), ws.Collected, ws.Executed, ws.Failed, "-"})
		executed += ws.Executed
		failed += ws.Failed
	}
	t.AppendRow(table.Row{"all", st.Rows, executed, failed, st.Unstarted})
	if err := printTable(w, t); err != nil {
		return err
	}
	stopped := "no"
	switch {
	case st.Stopped:
		stopped = fmt.Sprintf("yes, %s: %s", localTime(st.Finished, now), oneLine(st.StopReason, 200))
	case !st.Finished.IsZero():
		stopped = "no, completed " + localTime(st.Finished, now)
	}
	_, err := fmt.Fprintf(w, "\nbatch:    %d, %s, created %s\n"+
		"tasks:    %d enqueued, %d succeeded, %d failed, %s, %d running, %d unstarted\n"+
		"rows:     %d in the tables, %d collected, %d popped\n"+
		"rate:     %s, ETA %s\n"+
		"stopped:  %s\n",
		st.ID, batchMode(st), localTime(st.Created, now),
		st.Enqueued, st.Succeeded, st.Failed, cancelled(st), st.Running, st.Unstarted,
		held, st.Rows, max(st.Rows-held, 0),
		rate(st), eta(st), stopped)
	return err
}

func batchListCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("batch list", "rediq batch list [--last N] [flags]\n\n"+
		"Lists the newest batches of the namespace that still exist (a batch is kept for\n"+
		"its retention after it ends), newest first, with their counts.")
	var rf redisFlags
	rf.register(fs)
	last := fs.Int("last", 10, "how many batches")
	out := registerOutput(fs, `an array of what "rediq batch stat --output json" prints, newest first`)
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	if *last <= 0 {
		return usageErrorf("batch list: --last must be positive")
	}
	return withApp(ctx, "batch list", &rf, func(ctx context.Context, app *rediq.App) error {
		sts, err := app.ListBatches(ctx, *last)
		if err != nil {
			return err
		}
		held := make([]int, len(sts))
		for i, st := range sts {
			if held[i], err = app.BatchRowsHeld(ctx, st.ID); err != nil {
				return err
			}
		}
		if *out == outputJSON {
			js := make([]batchJSON, len(sts))
			for i, st := range sts {
				js[i] = newBatchJSON(st)
				js[i].RowsHeld = &held[i]
			}
			return printJSON(stdout, js)
		}
		if len(sts) == 0 {
			_, err := fmt.Fprintf(stdout, "No batches in %s.\n", where(app))
			return err
		}
		now := time.Now()
		t := newTable("BATCH", "STATE", "MODE", "ENQUEUED", "SUCCEEDED", "FAILED", "CANCELLED", "UNSTARTED", "ROWS", "CREATED")
		for i, st := range sts {
			// ROWS is what the tables hold now: a dump --pop takes rows out.
			t.AppendRow(table.Row{st.ID, batchState(st), batchMode(st), st.Enqueued, st.Succeeded, st.Failed, st.Cancelled,
				st.Unstarted, held[i], localTime(st.Created, now)})
		}
		return printTable(stdout, t)
	})
}

func batchErrorsCmd(ctx context.Context, args []string, stdout io.Writer) error {
	return batchCmd(ctx, args, stdout, "errors",
		"Lists the errors the batch's failed tasks (out of retries) died with, each error\n"+
			"once with how many tasks, most frequent first, and\n"+
			"the ids of the first tasks that died of it (\"rediq task show ID\" shows one).\n"+
			"\"rediq batch logs N\" shows every attempt's error in the batch's output.",
		`an array of {error, tasks, task_ids}, most frequent first; task_ids holds up to 10`, nil,
		func(ctx context.Context, app *rediq.App, id int64, out outputFormat) error {
			errs, err := app.BatchErrors(ctx, id)
			if err != nil {
				return err
			}
			if out == outputJSON {
				type errorJSON struct {
					Error   string         `json:"error"`
					Tasks   int            `json:"tasks"`
					TaskIDs []rediq.TaskID `json:"task_ids"`
				}
				js := make([]errorJSON, len(errs))
				for i, e := range errs {
					js[i] = errorJSON{e.Error, e.Tasks, e.TaskIDs}
				}
				return printJSON(stdout, js)
			}
			if len(errs) == 0 {
				_, err := fmt.Fprintf(stdout, "No task of batch %d has failed.\n", id)
				return err
			}
			t := newTable("TASKS", "TASK IDS", "ERROR")
			for _, e := range errs {
				// Whole, on one line: the same error with another tail is
				// another error, and the tail is what tells them apart.
				t.AppendRow(table.Row{e.Tasks, someIDs(e, 3), strings.Join(strings.Fields(e.Error), " ")})
			}
			return printTable(stdout, t)
		})
}

// someIDs shows up to n ids of the tasks that died of e, and how many more
// did: "a,b,c +7 more"; "-" when none were kept.
func someIDs(e rediq.BatchError, n int) string {
	if len(e.TaskIDs) == 0 {
		return "-"
	}
	shown := e.TaskIDs[:min(n, len(e.TaskIDs))]
	s := make([]string, len(shown))
	for i, id := range shown {
		s[i] = string(id)
	}
	out := strings.Join(s, ",")
	if more := e.Tasks - len(shown); more > 0 {
		out += fmt.Sprintf(" +%d more", more)
	}
	return out
}

func batchStopCmd(ctx context.Context, args []string, stdout io.Writer) error {
	return batchCmd(ctx, args, stdout, "stop",
		"Stops the batch, whatever its mode: no task of it starts any more (the unstarted\n"+
			"ones end cancelled) and the workers cancel the running ones' handlers with cause\n"+
			"rediq.ErrBatchStopped. A batch that has completed or stopped is left as it is.",
		`{batch, stopped (by this command), state, stop_reason}`, nil,
		func(ctx context.Context, app *rediq.App, id int64, out outputFormat) error {
			before, err := app.BatchStat(ctx, id)
			if err != nil {
				return err
			}
			if batchState(before) == "running" {
				if err := app.StopBatch(ctx, id); err != nil {
					return err
				}
			}
			after, err := app.BatchStat(ctx, id)
			if err != nil {
				return err
			}
			// StopBatch does not say whether it stopped the batch: it did if
			// the batch ran before and has stopped now (it may also have
			// completed meanwhile).
			stopped := batchState(before) == "running" && after.Stopped
			if out == outputJSON {
				return printJSON(stdout, struct {
					Batch      int64  `json:"batch"`
					Stopped    bool   `json:"stopped"`
					State      string `json:"state"`
					StopReason string `json:"stop_reason,omitempty"`
				}{id, stopped, batchState(after), after.StopReason})
			}
			switch {
			case stopped:
				_, err = fmt.Fprintf(stdout, "stopped batch %d: %d unstarted %s will not start; the workers cancel the %d running\n",
					id, before.Unstarted, plural(before.Unstarted, "task", "tasks"), after.Running)
			case after.Stopped:
				_, err = fmt.Fprintf(stdout, "batch %d had already stopped: %s\n", id, after.StopReason)
			default:
				_, err = fmt.Fprintf(stdout, "batch %d had already completed: nothing to stop\n", id)
			}
			return err
		})
}
