package rediq_test

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
)

type benchPayload struct {
	UserID int64  `msgpack:"user_id"`
	Action string `msgpack:"action"`
	Ts     int64  `msgpack:"ts"`
}

var payload = benchPayload{UserID: 12345, Action: "send_welcome_email", Ts: 1700000000}

func benchTask(b *testing.B) (*rediq.Task[benchPayload, struct{}], func()) {
	app, err := rediq.New(rediq.Config{RedisURL: testredis.URL(), Namespace: testredis.Namespace(b)})
	if err != nil {
		b.Fatal(err)
	}
	task := rediq.Register(app, "noop", func(context.Context, benchPayload) (struct{}, error) { return struct{}{}, nil })
	if _, err := task.Enqueue(context.Background(), payload); err != nil { // load the script
		b.Fatal(err)
	}
	return task, func() {
		_, _ = app.DeleteNamespace(context.Background())
		app.Close()
	}
}

// BenchmarkEnqueue is single Enqueue calls from 16 goroutines per CPU... as the
// standard workload's producers do.
func BenchmarkEnqueue(b *testing.B) {
	task, done := benchTask(b)
	defer done()
	b.ReportAllocs()
	b.SetParallelism(benchPar) // 16 goroutines on 2 CPUs by default
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := task.Enqueue(ctx, payload); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkEnqueueSerial is one goroutine: a full round trip per call.
func BenchmarkEnqueueSerial(b *testing.B) {
	task, done := benchTask(b)
	defer done()
	b.ReportAllocs()
	ctx := context.Background()
	for b.Loop() {
		if _, err := task.Enqueue(ctx, payload); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEnqueueMany reports the cost per task of batches of 1,000.
func BenchmarkEnqueueMany(b *testing.B) {
	task, done := benchTask(b)
	defer done()
	batch := make([]benchPayload, 1000)
	for i := range batch {
		batch[i] = payload
	}
	b.ReportAllocs()
	ctx := context.Background()
	for b.Loop() {
		if _, err := task.EnqueueMany(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/task")
}

var benchPar = func() int {
	if n, err := strconv.Atoi(os.Getenv("REDIQ_BENCH_PARALLELISM")); err == nil && n > 0 {
		return n
	}
	return 8
}()
