package worker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
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
	app, err := rediq.New(rediq.Config{RedisURL: testredis.URL(), Namespace: testredis.Namespace(b)})
	if err != nil {
		b.Fatal(err)
	}
	defer app.Close()
	var done atomic.Int64
	all := make(chan struct{})
	n := int64(b.N)
	task := rediq.Register(app, "noop", func(context.Context, benchPayload) (struct{}, error) {
		if done.Add(1) == n {
			close(all)
		}
		return struct{}{}, nil
	})
	held := rediq.Register(app, "held", func(context.Context, benchPayload) (struct{}, error) { return struct{}{}, nil },
		rediq.RateLimit(100, time.Second), rediq.Concurrency(5))
	ctx := context.Background()
	batch := make([]benchPayload, 1000)
	for left := b.N; left > 0; left -= len(batch) {
		if beside {
			if _, err := held.EnqueueMany(ctx, batch[:min(left, len(batch))]); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := task.EnqueueMany(ctx, batch[:min(left, len(batch))]); err != nil {
			b.Fatal(err)
		}
	}
	w, err := worker.New(app, worker.Config{Concurrency: 50})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() { errc <- w.Run(runCtx) }()
	<-all
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tasks/s")
	stop()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	_, _ = app.DeleteNamespace(context.Background())
}
