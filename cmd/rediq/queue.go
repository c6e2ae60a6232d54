package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/rediq/rediq"
)

func runQueue(ctx context.Context, args []string, stdout, _ io.Writer) error {
	help := func() {
		fmt.Fprint(stdout, "Usage: rediq queue <action> QUEUE [flags]\n\n"+
			"Acts on one queue, on every worker at once.\n\nActions:\n"+
			"  pause   stop its tasks from starting (running ones finish; prefetched ones go\n"+
			"          back unstarted); it returns once every live worker has applied it\n"+
			"  resume  let its tasks start again\n"+
			"  purge   delete its tasks in the given states (--state, repeatable)\n"+
			"  window  set when its tasks may start (SPEC), clear it (--clear), or show it\n\n"+
			"A pause is kept in Redis: workers started later stay paused. \"rediq queues\" shows\n"+
			"which queues are paused.\n")
	}
	return runAction("queue", "queue pause", []string{"pause", "resume", "purge", "window"}, args, help,
		func(action string, rest []string) error {
			switch action {
			case "purge":
				return purgeQueue(ctx, rest, stdout)
			case "window":
				return queueWindow(ctx, rest, stdout)
			}
			return pauseResume(ctx, action, rest, stdout)
		})
}

func pauseResume(ctx context.Context, action string, args []string, stdout io.Writer) error {
	name := "queue " + action
	fs := newFlagSet(name, "rediq "+name+" QUEUE [flags]\n\n"+map[string]string{
		"pause":  "Pauses the queue on every worker and returns once each live worker has applied it.",
		"resume": "Resumes the queue: idle workers start its next task at once.",
	}[action])
	var rf redisFlags
	rf.register(fs)
	out := registerOutput(fs, `{"queue": Q, "paused": true|false}`)
	pos, err := fs.parseArgs(args, stdout, "QUEUE")
	if err != nil {
		return err
	}
	queue := pos[0]
	if err := rediq.CheckQueueName(queue); err != nil {
		return usageErrorf("%s: %v", name, libError(err))
	}
	// PauseQueue bounds its own wait for the workers (30 s, or their lease
	// deadline): the CLI's timeout would cut it short of its error, which
	// names the workers that did not acknowledge.
	with := withApp
	if action == "pause" {
		with = withAppUntimed
	}
	return with(ctx, name, &rf, func(ctx context.Context, app *rediq.App) error {
		var err error
		if action == "pause" {
			err = app.PauseQueue(ctx, queue)
		} else {
			err = app.ResumeQueue(ctx, queue)
		}
		if err != nil {
			return err
		}
		if *out == outputJSON {
			return printJSON(stdout, struct {
				Queue  string `json:"queue"`
				Paused bool   `json:"paused"`
			}{queue, action == "pause"})
		}
		_, err = fmt.Fprintf(stdout, "queue %q %sd\n", queue, action)
		return err
	})
}

// stdin is where purge reads its confirmation (tests replace it).
var stdin io.Reader = os.Stdin

// stdinIsTerminal reports whether purge may ask on stdin.
var stdinIsTerminal = func() bool { return term.IsTerminal(int(os.Stdin.Fd())) }

func purgeQueue(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("queue purge", "rediq queue purge QUEUE --state STATE [--state STATE…] [flags]\n\n"+
		"Deletes the queue's tasks in the given states, for good, and prints how many:\n"+
		"pending (with those taken back from dead workers), scheduled, retry, dead, and\n"+
		"the records kept of succeeded, cancelled and expired tasks. Active tasks are\n"+
		"never purged (cancel them). On a terminal it asks first; elsewhere it needs --yes.")
	var rf redisFlags
	rf.register(fs)
	stateFlags := fs.StringArrayP("state", "s", nil, "a state to purge (repeatable): pending, scheduled, retry, dead, succeeded, cancelled, expired")
	yes := fs.Bool("yes", false, "do not ask: purge")
	out := registerOutput(fs, `{"queue": Q, "purged": N}`)
	pos, err := fs.parseArgs(args, stdout, "QUEUE")
	if err != nil {
		return err
	}
	queue := pos[0]
	if err := rediq.CheckQueueName(queue); err != nil {
		return usageErrorf("queue purge: %v", libError(err))
	}
	if len(*stateFlags) == 0 {
		return usageErrorf("queue purge: name the states to purge with --state")
	}
	states := make([]rediq.TaskState, len(*stateFlags))
	for i, s := range *stateFlags {
		st, err := rediq.ParseTaskState(s)
		if err != nil || st == rediq.StateActive {
			return usageErrorf("queue purge: --state %q: want one of pending, scheduled, retry, dead, succeeded, cancelled, expired", s)
		}
		states[i] = st
	}
	if !*yes {
		if !stdinIsTerminal() {
			return usageErrorf("queue purge: it deletes tasks for good: pass --yes")
		}
		fmt.Fprintf(stdout, "Delete every %s task of queue %q for good? Type yes to go on: ", strings.Join(*stateFlags, ", "), queue)
		line, _ := bufio.NewReader(stdin).ReadString('\n')
		if strings.TrimSpace(line) != "yes" {
			return fmt.Errorf("queue purge: not confirmed: nothing deleted")
		}
	}
	return withAppUntimed(ctx, "queue purge", &rf, func(ctx context.Context, app *rediq.App) error {
		n, err := app.PurgeQueue(ctx, queue, states...)
		if err != nil {
			return err
		}
		if *out == outputJSON {
			return printJSON(stdout, struct {
				Queue  string `json:"queue"`
				Purged int    `json:"purged"`
			}{queue, n})
		}
		_, err = fmt.Fprintf(stdout, "purged %d %s of queue %q\n", n, plural(n, "task", "tasks"), queue)
		return err
	})
}

func queueWindow(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("queue window", "rediq queue window QUEUE [SPEC | --clear] [flags]\n\n"+
		"Sets when the queue's tasks may start, on every worker: outside the window they\n"+
		"wait (prefetched ones go back unstarted); running ones finish. SPEC: optional\n"+
		"weekday ranges, a time-of-day range (HH:MM or HH:MM:SS; it may wrap past\n"+
		"midnight), an optional IANA zone (UTC by default), \"not\" in front for the\n"+
		"inverse: \"Mon-Fri 09:00-17:30 Europe/Berlin\", \"not 01:00-06:00 Asia/Shanghai\".\n"+
		"Without SPEC or --clear it shows the window.")
	var rf redisFlags
	rf.register(fs)
	clear := fs.Bool("clear", false, "remove the window: tasks start any time")
	out := registerOutput(fs, `{"queue": Q, "window": SPEC}`)
	pos, err := fs.parseLeadingArgs(args, stdout, "QUEUE")
	if err != nil {
		return err
	}
	queue, spec := pos[0], strings.Join(pos[1:], " ")
	if err := rediq.CheckQueueName(queue); err != nil {
		return usageErrorf("queue window: %v", libError(err))
	}
	if *clear && spec != "" {
		return usageErrorf("queue window: give SPEC or --clear, not both")
	}
	return withApp(ctx, "queue window", &rf, func(ctx context.Context, app *rediq.App) error {
		if spec != "" || *clear {
			if err := app.SetQueueWindow(ctx, queue, spec); err != nil {
				return err
			}
		}
		ws, err := app.QueueWindows(ctx, queue)
		if err != nil {
			return err
		}
		if *out == outputJSON {
			return printJSON(stdout, map[string]string{"queue": queue, "window": ws[queue]})
		}
		if ws[queue] == "" {
			_, err = fmt.Fprintf(stdout, "queue %q: no window (tasks start any time)\n", queue)
			return err
		}
		_, err = fmt.Fprintf(stdout, "queue %q: tasks start only in %s\n", queue, ws[queue])
		return err
	})
}
