package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"

	"github.com/rediq/rediq"
)

// errorWidth is how much of a task's last error the list shows.
const errorWidth = 60

func runTasks(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("tasks", "rediq tasks [--queue Q] [--state STATE] [flags]\n\n"+
		"Lists a page of tasks, with when they are due (scheduled, retry) and their last\n"+
		"error (dead, retry): of one queue in one state, in the state's natural order;\n"+
		"without --state, of every state of the queue, state by state; without --queue,\n"+
		"of the state in every queue, queue by queue (by name); with neither, everything.\n"+
		"\"rediq task show ID\" prints the rest of a task.\n"+
		"States: "+stateNames()+".")
	var rf redisFlags
	rf.register(fs)
	queue := fs.StringP("queue", "q", "", "the queue (default: every queue of the namespace)")
	stateName := fs.StringP("state", "s", "", "the state (default: every state): "+stateNames())
	limit := fs.Int("limit", 20, "tasks per page")
	offset := fs.Int("offset", 0, "tasks to skip")
	out := registerOutput(fs, `{"total": N, "tasks": [...]}, each task as "rediq task show --output json" prints it`)
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	if *queue != "" {
		if err := rediq.CheckQueueName(*queue); err != nil {
			return usageErrorf("tasks: --queue: %v", libError(err))
		}
	}
	states := rediq.TaskStates
	if *stateName != "" {
		state, err := rediq.ParseTaskState(*stateName)
		if err != nil {
			return usageErrorf("tasks: --state %q: one of %s", *stateName, stateNames())
		}
		states = []rediq.TaskState{state}
	}
	if *limit <= 0 {
		return usageErrorf("tasks: --limit must be positive")
	}
	if *offset < 0 {
		return usageErrorf("tasks: --offset must not be negative")
	}

	return withApp(ctx, "tasks", &rf, func(ctx context.Context, app *rediq.App) error {
		names, err := app.Queues(ctx)
		if err != nil {
			return err
		}
		queues := names
		if *queue != "" {
			if !slices.Contains(names, *queue) {
				return fmt.Errorf("no queue named %q in %s (rediq queues lists them)", *queue, where(app))
			}
			queues = []string{*queue}
		}
		recs, total, err := listPage(ctx, app, queues, states, *offset, *limit)
		if err != nil {
			return err
		}
		if *out == outputJSON {
			tasks := make([]taskJSON, len(recs))
			for i, r := range recs {
				tasks[i] = newTaskJSON(r)
			}
			return printJSON(stdout, struct {
				Total int        `json:"total"`
				Tasks []taskJSON `json:"tasks"`
			}{total, tasks})
		}
		if total == 0 {
			what, in := "tasks", "any queue of "+where(app)
			if len(states) == 1 {
				what = string(states[0]) + " tasks"
			}
			if *queue != "" {
				in = fmt.Sprintf("queue %q of %s", *queue, where(app))
			}
			_, err := fmt.Fprintf(stdout, "No %s in %s.\n", what, in)
			return err
		}
		if len(recs) > 0 {
			if err := printTable(stdout, tasksTable(recs, len(queues) > 1, time.Now())); err != nil {
				return err
			}
		}
		_, err = fmt.Fprintln(stdout, pageFooter(*offset, len(recs), total))
		return err
	})
}

// listPage lists the tasks of each queue in each state, queue by queue and
// state by state, as one list: it returns the limit of them from offset on,
// and how many the list holds in all. Each (queue, state) is one ListTasks.
func listPage(ctx context.Context, app *rediq.App, queues []string, states []rediq.TaskState, offset, limit int) ([]*rediq.TaskRecord, int, error) {
	var page []*rediq.TaskRecord
	total := 0
	for _, q := range queues {
		for _, st := range states {
			// Where this part starts in the whole list decides what of it
			// the page takes; once the page is full, only its total counts.
			opt := rediq.ListOptions{Offset: max(offset-total, 0), Limit: limit - len(page)}
			if opt.Limit == 0 {
				opt.Limit = 1
			}
			recs, n, err := app.ListTasks(ctx, q, st, opt)
			if err != nil {
				return nil, 0, err
			}
			if len(page) < limit {
				page = append(page, recs...)
			}
			total += n
		}
	}
	return page, total, nil
}

// tasksTable lays out a page of tasks, one per line; withQueue adds their
// queue. A column only some states have (DUE, ERROR) shows when a task of
// such a state is on the page.
func tasksTable(recs []*rediq.TaskRecord, withQueue bool, now time.Time) table.Writer {
	header := table.Row{"ID", "NAME"}
	if withQueue {
		header = append(header, "QUEUE")
	}
	header = append(header, "STATE", "PRIORITY", "RETRIED", "ENQUEUED")
	isDue := func(s rediq.TaskState) bool { return s == rediq.StateScheduled || s == rediq.StateRetry }
	isFailed := func(s rediq.TaskState) bool { return s == rediq.StateDead || s == rediq.StateRetry }
	due := slices.ContainsFunc(recs, func(r *rediq.TaskRecord) bool { return isDue(r.State) })
	failed := slices.ContainsFunc(recs, func(r *rediq.TaskRecord) bool { return isFailed(r.State) })
	if due {
		header = append(header, "DUE")
	}
	if failed {
		header = append(header, "ERROR")
	}
	t := newTable(header...)
	for _, r := range recs {
		row := table.Row{r.ID, r.Name}
		if withQueue {
			row = append(row, r.Queue)
		}
		row = append(row, r.State, r.Priority, retried(r), localTime(r.EnqueuedAt, now))
		if due {
			cell := "-"
			if isDue(r.State) {
				cell = localTime(r.DueAt, now)
			}
			row = append(row, cell)
		}
		if failed {
			row = append(row, oneLine(orDash(r.LastError), errorWidth))
		}
		t.AppendRow(row)
	}
	return t
}

// pageFooter says which of the total tasks the page shows: "showing 21–40 of 75".
func pageFooter(offset, n, total int) string {
	if n == 0 {
		return fmt.Sprintf("showing none of %d: --offset %d is past the last", total, offset)
	}
	return fmt.Sprintf("showing %d–%d of %d", offset+1, offset+n, total)
}

func stateNames() string {
	names := make([]string, len(rediq.TaskStates))
	for i, s := range rediq.TaskStates {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}
