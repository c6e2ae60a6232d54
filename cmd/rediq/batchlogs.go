package main

import (
	"context"
	"encoding/json"
	"io"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/core"
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
// one retained: up to the last one there is now (follow false), or on, as
// they come, until the batch completes or stops or ctx ends (follow true).
//
// It reads the batch's stream itself: rediq's Lines is a method of the
// producer's *Batch, and FollowBatch, the one call by number, writes text
// only, while --output json needs the fields and "up to the last line there
// is now" needs the stream's entry ids.
func batchOutput(ctx context.Context, app *rediq.App, id int64, follow bool, fn func(rediq.OutputLine) error) error {
	br := core.Unwrap(app).Broker()
	k := br.Batch(id)
	last := ""
	block := time.Second // a blocking read at a time, so that ctx is honoured
	if !follow {
		xs, err := app.Redis().XRevRangeN(ctx, k.Out, "+", "-", 1).Result()
		if err != nil || len(xs) == 0 {
			return err
		}
		last, block = xs[0].ID, 0
	}
	from := "0"
	for {
		ls, err := br.ReadOutput(ctx, k, from, 1000, block)
		if err != nil {
			return err
		}
		if !follow && len(ls) == 0 {
			return nil // trimmed meanwhile
		}
		for _, l := range ls {
			from = l.ID
			if l.Kind == "e" {
				return nil // the batch completed or stopped
			}
			err := fn(rediq.OutputLine{Batch: id, Task: rediq.TaskID(l.Task), Name: l.Name, Worker: l.Worker, Text: l.Line, At: l.At})
			if err != nil {
				return err
			}
			if l.ID == last {
				return nil
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}
