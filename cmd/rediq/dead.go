package main

import (
	"context"
	"fmt"
	"io"

	"github.com/rediq/rediq"
)

func runDead(ctx context.Context, args []string, stdout, _ io.Writer) error {
	help := func() {
		fmt.Fprint(stdout, "Usage: rediq dead <action> [flags]\n\n"+
			"Acts on the dead tasks of a queue: those out of retries, or failed for good.\n\nActions:\n"+
			"  requeue  put every dead task of --queue back in it, due now\n\n"+
			"Run \"rediq dead requeue --help\" for the flags. \"rediq tasks --state dead\" lists them.\n")
	}
	return runAction("dead", "dead requeue", []string{"requeue"}, args, help,
		func(_ string, rest []string) error { return requeueDead(ctx, rest, stdout) })
}

func requeueDead(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("dead requeue", "rediq dead requeue --queue Q [flags]\n\n"+
		"Puts every dead task of the queue back in it, due now, and prints how many.")
	var rf redisFlags
	rf.register(fs)
	queue := fs.StringP("queue", "q", "", "the queue (required)")
	out := registerOutput(fs, `{"queue": Q, "requeued": N}`)
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	if *queue == "" {
		return usageErrorf("dead requeue: --queue is required")
	}
	if err := rediq.CheckQueueName(*queue); err != nil {
		return usageErrorf("dead requeue: --queue: %v", libError(err))
	}
	return withApp(ctx, "dead requeue", &rf, func(ctx context.Context, app *rediq.App) error {
		n, err := app.RequeueDead(ctx, *queue)
		if err != nil {
			return err
		}
		if *out == outputJSON {
			return printJSON(stdout, struct {
				Queue    string `json:"queue"`
				Requeued int    `json:"requeued"`
			}{*queue, n})
		}
		_, err = fmt.Fprintf(stdout, "requeued %d dead %s of queue %q\n", n, plural(n, "task", "tasks"), *queue)
		return err
	})
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
