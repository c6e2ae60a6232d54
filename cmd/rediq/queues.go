package main

import (
	"context"
	"fmt"
	"io"

	"github.com/jedib0t/go-pretty/v6/table"

	"github.com/rediq/rediq"
)

// queueRow is one queue as --output json prints it.
type queueRow struct {
	Queue     string `json:"queue"`
	Pending   int64  `json:"pending"`
	Scheduled int64  `json:"scheduled"`
	Active    int64  `json:"active"`
	Dead      int64  `json:"dead"`
	Workers   int64  `json:"workers"`
	Cancelled int64  `json:"cancelled"`
	Expired   int64  `json:"expired"`
	Paused    bool   `json:"paused"`
}

func runQueues(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("queues", "rediq queues [flags]\n\n"+
		"Lists every queue recorded in the namespace, by name, with its tasks by state:\n"+
		"pending (due, waiting for a worker), scheduled (due later, or waiting to be\n"+
		"retried), active (leased to a worker), dead (out of retries), the number\n"+
		"of worker sessions serving it, and how many tasks were ever cancelled and\n"+
		"how many expired (ExpireIn/ExpireAt) without running, and whether it is paused\n"+
		"(rediq queue pause).")
	var rf redisFlags
	rf.register(fs)
	out := registerOutput(fs, "an array of {queue, pending, scheduled, active, dead, workers, cancelled, expired, paused}")
	// --json was --output json before the other commands came.
	asJSON := fs.Bool("json", false, "")
	_ = fs.MarkDeprecated("json", "use --output json")
	fs.SetOutput(stderr) // for pflag's notice of a deprecated flag, all it prints
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	if *asJSON {
		*out = outputJSON
	}
	return withApp(ctx, "queues", &rf, func(ctx context.Context, app *rediq.App) error {
		stats, err := app.QueueStats(ctx)
		if err != nil {
			return err
		}
		rows := make([]queueRow, len(stats))
		for i, s := range stats {
			rows[i] = queueRow{s.Name, s.Pending, s.Scheduled, s.Active, s.Dead, s.Workers, s.Cancelled, s.Expired, s.Paused}
		}
		if *out == outputJSON {
			return printJSON(stdout, rows)
		}
		if len(rows) == 0 {
			_, err := fmt.Fprintf(stdout, "No queues in %s.\n", where(app))
			return err
		}
		t := newTable("QUEUE", "PENDING", "SCHEDULED", "ACTIVE", "DEAD", "WORKERS", "CANCELLED", "EXPIRED", "PAUSED")
		for _, r := range rows {
			t.AppendRow(table.Row{r.Queue, r.Pending, r.Scheduled, r.Active, r.Dead, r.Workers, r.Cancelled, r.Expired, yesNo(r.Paused)})
		}
		return printTable(stdout, t)
	})
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
