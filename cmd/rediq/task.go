package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/rediq/rediq"
)

// taskAction is one of the subcommands of "rediq task", each on one task id.
type taskAction struct {
	name    string
	summary string
	about   string // the help's paragraph under the usage line
	run     func(ctx context.Context, app *rediq.App, id rediq.TaskID, out outputFormat, stdout io.Writer) error
	output  string // for actions that print a record: the shape of --output json
}

var taskActions = []taskAction{
	{name: "show", summary: "print the task's record: state, args, times, retries, last error",
		about: "Prints what Redis holds of the task, in whichever queue of the namespace it is:\n" +
			"its state, arguments and result as JSON, times as local time and age, retries\n" +
			"and the last error. A finished task is there only while its rediq.Retention lasts.",
		run: showTask, output: "one object; times RFC 3339 in UTC, left out when not applicable"},
	{name: "result", summary: "print the result of a succeeded task as JSON, alone (for jq)",
		about: "Prints the handler's result as JSON and nothing else. Only a succeeded task\n" +
			"enqueued with rediq.Retention has one; for any other the command fails and says why.",
		run: taskResult, output: "the same JSON value: the result is JSON either way"},
	{name: "cancel", summary: "cancel a task that has not finished",
		about: "Cancels a scheduled, pending or retry-waiting task at once. For an active task\n" +
			"it asks the worker running it to cancel the handler's context, and returns then.",
		run: cancelTask},
	{name: "delete", summary: "remove a task that is not active",
		about: "Removes the task and its record. An active task must be cancelled first.",
		run:   deleteTask},
	{name: "requeue", summary: "make a dead or retry-waiting task pending again now",
		about: "Puts a dead task, or one waiting for its next attempt, back in its queue, due now.",
		run:   requeueTask},
}

func runTask(ctx context.Context, args []string, stdout, _ io.Writer) error {
	names := make([]string, len(taskActions))
	for i, a := range taskActions {
		names[i] = a.name
	}
	return runAction("task", "task show ID", names, args, func() { printTaskUsage(stdout) },
		func(name string, rest []string) error {
			return taskActions[slices.Index(names, name)].parseAndRun(ctx, rest, stdout)
		})
}

func (a *taskAction) parseAndRun(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("task "+a.name, "rediq task "+a.name+" ID [flags]\n\n"+a.about)
	var rf redisFlags
	rf.register(fs)
	table := outputTable
	out := &table
	if a.output != "" {
		out = registerOutput(fs, a.output)
	}
	pos, err := fs.parseArgs(args, stdout, "ID")
	if err != nil {
		return err
	}
	if pos[0] == "" {
		return usageErrorf("task %s: empty ID", a.name)
	}
	return withApp(ctx, "task "+a.name, &rf, func(ctx context.Context, app *rediq.App) error {
		return a.run(ctx, app, rediq.TaskID(pos[0]), *out, stdout)
	})
}

func printTaskUsage(w io.Writer) {
	fmt.Fprint(w, "Usage: rediq task <action> ID [flags]\n\n"+
		"Acts on one task by its id, in whichever queue of the namespace holds it.\n\nActions:\n")
	for _, a := range taskActions {
		fmt.Fprintf(w, "  %-8s %s\n", a.name, a.summary)
	}
	fmt.Fprint(w, "\nEach takes the flags of every command that touches Redis (--redis-url, --namespace,\n"+
		"…); show and result take --output json too. Run \"rediq task <action> --help\" for them.\n")
}

// notFound rewords the error of an id no queue holds, naming the namespace
// searched: the wrong namespace is the likeliest reason.
func notFound(app *rediq.App, id rediq.TaskID, err error) error {
	return &reworded{fmt.Sprintf("task %s not found in %s "+
		"(a finished task is kept only for its rediq.Retention)", id, where(app)), err}
}

func showTask(ctx context.Context, app *rediq.App, id rediq.TaskID, out outputFormat, stdout io.Writer) error {
	r, err := app.GetTask(ctx, id)
	if errors.Is(err, rediq.ErrTaskNotFound) {
		return notFound(app, id, err)
	}
	if err != nil {
		return err
	}
	if out == outputJSON {
		j := newTaskJSON(r)
		if r.State == rediq.StateActive {
			j.Running = &r.Running
		}
		return printJSON(stdout, j)
	}
	return printTable(stdout, taskTable(r, time.Now()))
}

func taskResult(ctx context.Context, app *rediq.App, id rediq.TaskID, _ outputFormat, stdout io.Writer) error {
	r, err := app.GetTask(ctx, id)
	if errors.Is(err, rediq.ErrTaskNotFound) {
		return notFound(app, id, err)
	}
	if err != nil {
		return err
	}
	if r.Result == nil {
		switch {
		case r.State == rediq.StateSucceeded:
			return fmt.Errorf("task %s succeeded but has no result recorded", id)
		case r.State == rediq.StateDead && r.LastError != "":
			return fmt.Errorf("task %s is %s, so it has no result: %s", id, r.State, oneLine(r.LastError, 200))
		case r.State.Final():
			return fmt.Errorf("task %s is %s, so it has no result", id, r.State)
		}
		return fmt.Errorf("task %s is %s: it has no result yet (results are kept only with rediq.Retention)", id, r.State)
	}
	v, err := msgpackJSON(r.Result)
	if err != nil {
		return fmt.Errorf("task %s: result: %w", id, err)
	}
	return printJSON(stdout, v)
}

func cancelTask(ctx context.Context, app *rediq.App, id rediq.TaskID, _ outputFormat, stdout io.Writer) error {
	err := app.CancelTask(ctx, id)
	switch {
	case errors.Is(err, rediq.ErrTaskNotFound):
		return notFound(app, id, err)
	case errors.Is(err, rediq.ErrTaskFinished):
		if r, gerr := app.GetTask(ctx, id); gerr == nil {
			return &reworded{fmt.Sprintf("task %s has already finished: it is %s", id, r.State), err}
		}
		return err
	case err != nil:
		return err
	}
	// An active task is cancelled by its worker, a moment later: say which
	// happened. Without Retention a cancelled task's record is gone.
	r, err := app.GetTask(ctx, id)
	switch {
	case errors.Is(err, rediq.ErrTaskNotFound), err == nil && r.State == rediq.StateCancelled:
		_, err = fmt.Fprintf(stdout, "cancelled task %s\n", id)
	case err == nil && r.State == rediq.StateActive:
		_, err = fmt.Fprintf(stdout, "cancel requested for task %s: the worker running it cancels its handler\n", id)
	case err == nil:
		_, err = fmt.Fprintf(stdout, "cancel requested for task %s; it is now %s\n", id, r.State)
	}
	return err
}

func deleteTask(ctx context.Context, app *rediq.App, id rediq.TaskID, _ outputFormat, stdout io.Writer) error {
	err := app.DeleteTask(ctx, id)
	switch {
	case errors.Is(err, rediq.ErrTaskNotFound):
		return notFound(app, id, err)
	case errors.Is(err, rediq.ErrTaskActive):
		return &reworded{fmt.Sprintf("task %s is active: cancel it first (rediq task cancel %s)", id, id), err}
	case err != nil:
		return err
	}
	_, err = fmt.Fprintf(stdout, "deleted task %s\n", id)
	return err
}

func requeueTask(ctx context.Context, app *rediq.App, id rediq.TaskID, _ outputFormat, stdout io.Writer) error {
	err := app.RequeueTask(ctx, id)
	switch {
	case errors.Is(err, rediq.ErrTaskNotFound):
		return notFound(app, id, err)
	case err != nil:
		// Say what state stood in the way, whatever the library's words.
		if r, gerr := app.GetTask(ctx, id); gerr == nil && r.State != rediq.StateDead && r.State != rediq.StateRetry {
			return &reworded{fmt.Sprintf("task %s is %s: only a dead or retry-waiting task can be requeued", id, r.State), err}
		}
		return err
	}
	_, err = fmt.Fprintf(stdout, "requeued task %s\n", id)
	return err
}
