package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jedib0t/go-pretty/v6/table"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/broker"
)

// errorWidth is how much of a task's last error the list shows.
const errorWidth = 60

func runTasks(ctx context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("tasks", "rediq tasks --queue Q --state STATE [flags]\n\n"+
		"Lists a page of the tasks of one queue in one state, in the state's natural order,\n"+
		"with when they are due (scheduled, retry) and their last error (dead, retry).\n"+
		"\"rediq task show ID\" prints the rest of a task.\n"+
		"States: "+stateNames()+".")
	var rf redisFlags
	rf.register(fs)
	queue := fs.StringP("queue", "q", "", "the queue (required)")
	stateName := fs.StringP("state", "s", "", "the state (required): "+stateNames())
	limit := fs.Int("limit", 20, "tasks per page")
	offset := fs.Int("offset", 0, "tasks to skip")
	out := registerOutput(fs, `{"total": N, "tasks": [...]}, each task as "rediq task show --output json" prints it`)
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	if *queue == "" {
		return usageErrorf("tasks: --queue is required")
	}
	if err := broker.ValidateQueueName(*queue); err != nil {
		return usageErrorf("tasks: --queue: %v", err)
	}
	if *stateName == "" {
		return usageErrorf("tasks: --state is required: one of %s", stateNames())
	}
	state, err := rediq.ParseTaskState(*stateName)
	if err != nil {
		return usageErrorf("tasks: --state %q: one of %s", *stateName, stateNames())
	}
	if *limit <= 0 {
		return usageErrorf("tasks: --limit must be positive")
	}
	if *offset < 0 {
		return usageErrorf("tasks: --offset must not be negative")
	}

	return withApp(ctx, "tasks", &rf, func(ctx context.Context, app *rediq.App) error {
		recs, total, err := app.ListTasks(ctx, *queue, state, rediq.ListOptions{Offset: *offset, Limit: *limit})
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
			_, err := fmt.Fprintf(stdout, "No %s tasks in queue %q of namespace %q.\n", state, *queue, app.Namespace())
			return err
		}
		if len(recs) > 0 {
			if err := printTable(stdout, tasksTable(recs, state, time.Now())); err != nil {
				return err
			}
		}
		_, err = fmt.Fprintln(stdout, pageFooter(*offset, len(recs), total))
		return err
	})
}

// tasksTable lays out a page of tasks in state, one per line.
func tasksTable(recs []*rediq.TaskRecord, state rediq.TaskState, now time.Time) table.Writer {
	header := table.Row{"ID", "NAME", "STATE", "PRIORITY", "RETRIED", "ENQUEUED"}
	due := state == rediq.StateScheduled || state == rediq.StateRetry
	failed := state == rediq.StateDead || state == rediq.StateRetry
	if due {
		header = append(header, "DUE")
	}
	if failed {
		header = append(header, "ERROR")
	}
	t := newTable(header...)
	for _, r := range recs {
		row := table.Row{r.ID, r.Name, r.State, r.Priority, retried(r), localTime(r.EnqueuedAt, now)}
		if due {
			row = append(row, localTime(r.DueAt, now))
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
