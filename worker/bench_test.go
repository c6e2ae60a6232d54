package worker_test

import (
	"context"
	"sync/atomic"
	"testing"

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
	w, err := worker.New(app, worker.Config{Concurrency: 50})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	go func() { errc <- w.Run(runCtx) }()
	<-all
	b.StopTimer()
	stop()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
}
