package main

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/rediq/rediq"
)

func batchLogsCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("batch logs", "rediq batch logs N [--follow] [flags]\n\n"+
		"Prints the batch's output lines — what its tasks printed with rediq.Print, and each\n"+
		"failed attempt's error — from the first one retained, each prefixed\n"+
		"\"[batch:task worker]\" as the producer's Follow prints them. Without --follow it\n"+
		"prints the lines there are and exits; with it, it goes on printing lines as they\n"+
		"come until the batch completes or stops, or Ctrl-C.")
	var rf redisFlags
	rf.register(fs)
	follow := fs.BoolP("follow", "f", false, "print new lines as they come, until the batch ends")
	out := registerOutput(fs, "JSON lines: one {batch, task, name, worker, text, at} per output line")
	pos, err := fs.parseArgs(args, stdout, "N")
	if err != nil {
		return err
	}
	id, err := parseBatchID("logs", pos[0])
	if err != nil {
		return err
	}
	with := withApp
	if *follow {
		with = withAppUntimed
	}
	return with(ctx, "batch logs", &rf, func(ctx context.Context, app *rediq.App) error {
		sctx, cancel := withTimeout(ctx)
		_, err := app.BatchStat(sctx, id)
		cancel()
		if err != nil {
			return batchNotFound(app, id, redisError(sctx, err))
		}
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		err = batchOutput(ctx, app, id, *follow, func(l rediq.OutputLine) error {
			if *out == outputJSON {
				return enc.Encode(outputLineJSON{l.Batch, l.Task, l.Name, l.Worker, l.Text, l.At.UTC()})
			}
			_, err := io.WriteString(stdout, l.String()+"\n")
			return err
		})
		if *follow && ctx.Err() != nil {
			return nil // Ctrl-C is how one stops following, whatever error the read it cut short gave
		}
		return err
	})
}

// outputLineJSON is an output line as --output json prints it.
type outputLineJSON struct {
	Batch  int64        `json:"batch"`
	Task   rediq.TaskID `json:"task"`
	Name   string       `json:"name"`
	Worker string       `json:"worker"`
	Text   string       `json:"text"`
	At     time.Time    `json:"at"`
}

// batchOutput calls fn with each line of batch id's output from the first
// one retained: up to the last one there is now (follow false: App.BatchOutput),
// or on, as they come, until the batch completes or stops or ctx ends (follow
// true: App.BatchLines).
func batchOutput(ctx context.Context, app *rediq.App, id int64, follow bool, fn func(rediq.OutputLine) error) error {
	lines := app.BatchOutput
	if follow {
		lines = app.BatchLines
	}
	for l, err := range lines(ctx, id) {
		if err != nil {
			return err
		}
		if err := fn(l); err != nil {
			return err
		}
	}
	return nil
}
