package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/rediq/rediq"
)

// BenchmarkUnlimitedBesideLimited is BenchmarkFetchRunAck's whole path for an
// unlimited task type, alone ("alone") and with a backlog of as many tasks of
// a limited type (100/s and 5 at once) at the same priority in the same queue
// ("beside"): a limited type must not slow the others. It reports the
// unlimited type's tasks per second.
func BenchmarkUnlimitedBesideLimited(b *testing.B) {
	for _, beside := range []bool{false, true} {
		name := "alone"
		if beside {
			name = "beside"
		}
		b.Run(name, func(b *testing.B) { benchBeside(b, beside) })
	}
}

func benchBeside(b *testing.B, beside bool) {
	var held func(*rediq.App)
	if beside {
		held = func(app *rediq.App) {
			task := rediq.Register(app, "held", func(context.Context, benchPayload) (struct{}, error) { return struct{}{}, nil },
				rediq.RateLimit(100, time.Second), rediq.Concurrency(5))
			batch := make([]benchPayload, 1000)
			for left := b.N; left > 0; left -= len(batch) {
				if _, err := task.EnqueueMany(context.Background(), batch[:min(left, len(batch))]); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	took := runNoops(b, held)
	b.ReportMetric(float64(b.N)/took.Seconds(), "tasks/s")
}
