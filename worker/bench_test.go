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

type benchPayload struct {
	UserID int64  `msgpack:"user_id"`
	Action string `msgpack:"action"`
	Ts     int64  `msgpack:"ts"`
}

// BenchmarkFetchRunAck is the worker's whole path per task — fetch, decode, run
// a no-op handler with its hooks and context, settle — at concurrency 50, as in
// the standard workload's process phase. Allocations are the worker's per task.
func BenchmarkFetchRunAck(b *testing.B) {
	b.ReportAllocs()
	runNoops(b, nil)
}

// runNoops enqueues b.N no-op tasks of the type "noop" in 1,000s, lets beside
// (if not nil) register and enqueue more on the same app, then times one
// worker at concurrency 50 until every no-op task ran: what it answers.
func runNoops(b *testing.B, beside func(*rediq.App)) time.Duration {
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
	ctx := context.Background()
	batch := make([]benchPayload, 1000)
	for left := b.N; left > 0; left -= len(batch) {
		if _, err := task.EnqueueMany(ctx, batch[:min(left, len(batch))]); err != nil {
			b.Fatal(err)
		}
	}
	if beside != nil {
		beside(app)
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
	took := time.Since(start)
	b.StopTimer()
	stop()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	_, _ = app.DeleteNamespace(context.Background())
	return took
}
