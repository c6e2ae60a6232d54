package rediq_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// Limits as the public API sees them: options checked at Register and
// Enqueue, a worker declaring its code's defaults, SetLimit standing over
// them, Limits reporting both, and the handler seeing its limit key.
func TestLimitsThroughTheAPI(t *testing.T) {
	t.Parallel()
	app, rdb := newApp(t)
	ctx := context.Background()
	fn := func(context.Context, int) (int, error) { return 0, nil }
	for name, f := range map[string]func(){
		"rate 0":          func() { rediq.Register(app, "r0", fn, rediq.RateLimit(0, time.Second)) },
		"per 0":           func() { rediq.Register(app, "p0", fn, rediq.RateLimit(1, 0)) },
		"concurrency 0":   func() { rediq.Register(app, "c0", fn, rediq.Concurrency(0)) },
		"'|' in the name": func() { rediq.Register(app, "a|b", fn, rediq.Concurrency(1)) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Register did not panic", name)
				}
			}()
			f()
		}()
	}
	keys := make(chan string, 10)
	limited := rediq.Register(app, "api.limited", func(ctx context.Context, _ int) (int, error) {
		info, _ := rediq.CurrentTask(ctx)
		keys <- info.LimitKey
		return 0, nil
	}, rediq.RateLimit(100, time.Second), rediq.Concurrency(3))
	other := rediq.Register(app, "api.other", fn)
	if _, err := limited.Enqueue(ctx, 1, rediq.LimitKey("")); !errors.Is(err, rediq.ErrInvalidOption) {
		t.Errorf("LimitKey(\"\") = %v, want ErrInvalidOption", err)
	}
	if err := app.SetLimit(ctx, "api.limited", rediq.Limit{Rate: 5}); !errors.Is(err, rediq.ErrInvalidOption) {
		t.Errorf("a rate without a period = %v, want ErrInvalidOption", err)
	}
	if err := app.SetLimit(ctx, "nobody.runs.this", rediq.Limit{Concurrency: 1}); err == nil || !strings.Contains(err.Error(), "unknown in namespace") {
		t.Errorf("SetLimit of an unknown task = %v", err)
	}
	// A worker declares the code's limits at start.
	w, err := worker.New(app, worker.Config{Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
	want := rediq.LimitInfo{Task: "api.limited", Queue: rediq.DefaultQueue, Limit: rediq.Limit{Rate: 100, Per: time.Second, Concurrency: 3},
		Code: true, Running: map[string]int{}}
	var got []rediq.LimitInfo
	testredis.WaitFor(t, 10*time.Second, "the worker's declaration", func() bool {
		got, err = app.Limits(ctx)
		return err == nil && len(got) == 1
	})
	if got[0].Task != want.Task || got[0].Queue != want.Queue || got[0].Limit != want.Limit || !got[0].Code {
		t.Fatalf("Limits = %+v, want %+v", got, want)
	}
	if s := got[0].Limit.String(); s != "100/s, 3 at once" {
		t.Errorf("String = %q", s)
	}
	// Another process (a sibling App, as the CLI) sets it by name alone.
	cli, err := rediq.New(rediq.Config{RedisURL: testredis.URL(), Namespace: app.Namespace()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if err := cli.SetLimit(ctx, "api.limited", rediq.Limit{Concurrency: 1}); err != nil {
		t.Fatal(err)
	}
	if got, err = app.Limits(ctx); err != nil || got[0].Limit != (rediq.Limit{Concurrency: 1}) || got[0].Code {
		t.Fatalf("after SetLimit: %+v, %v", got, err)
	}
	// The handler sees its key; both kinds of task run.
	if _, err := limited.Enqueue(ctx, 1, rediq.LimitKey("tenant-7")); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Enqueue(ctx, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case k := <-keys:
		if k != "tenant-7" {
			t.Errorf("TaskInfo.LimitKey = %q", k)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the limited task did not run")
	}
	// A zero limit set at run time removes the code's default too.
	if err := cli.SetLimit(ctx, "api.limited", rediq.Limit{}); err != nil {
		t.Fatal(err)
	}
	if got, err = app.Limits(ctx); err != nil || got[0].Limit != (rediq.Limit{}) || got[0].Limit.String() != "none" {
		t.Fatalf("after a zero SetLimit: %+v, %v", got, err)
	}
	_ = rdb
}

// A task keeps its flow wherever it waits: enqueued with a delay, failed and
// waiting to retry, dead and requeued, it comes back to its key's lane.
func TestAFlowFollowsTheTask(t *testing.T) {
	t.Parallel()
	app, rdb := newApp(t)
	ctx := context.Background()
	var mu sync.Mutex
	var runs []string
	task := rediq.Register(app, "flow.task", func(ctx context.Context, _ int) (int, error) {
		info, _ := rediq.CurrentTask(ctx)
		mu.Lock()
		runs = append(runs, info.LimitKey)
		mu.Unlock()
		return 0, errors.New("no")
	}, rediq.Retries(1), rediq.Backoff(func(int) time.Duration { return 10 * time.Millisecond }), rediq.Concurrency(1))
	q := app.Broker().Queue(rediq.DefaultQueue)
	lanes := func() []string {
		return append(rdb.ZRange(ctx, q.PendingLanes, 0, -1).Val(), rdb.ZRange(ctx, q.PendingBlocked, 0, -1).Val()...)
	}
	id, err := task.Enqueue(ctx, 1, rediq.LimitKey("k"), rediq.Delay(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if f := rdb.HGet(ctx, q.Prefix+"flow", string(id)).Val(); f != "flow.task|k" {
		t.Fatalf("a delayed task's flow = %q", f)
	}
	w, err := worker.New(app, worker.Config{Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	testredis.WaitFor(t, 10*time.Second, "the task to die", func() bool { return rdb.ZCard(ctx, q.Dead).Val() == 1 })
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n, err := app.RequeueDead(ctx, rediq.DefaultQueue); n != 1 || err != nil {
		t.Fatalf("RequeueDead = %d, %v", n, err)
	}
	mu.Lock()
	if !slices.Equal(runs, []string{"k", "k"}) {
		t.Errorf("runs %v; want the first attempt and its retry, both of key k", runs)
	}
	mu.Unlock()
	if l := lanes(); !slices.Equal(l, []string{"2048|flow.task|k"}) {
		t.Fatalf("requeued into lanes %v", l)
	}
	if n := rdb.HLen(ctx, q.Prefix+"flow").Val(); n != 0 {
		t.Fatalf("%d flows left in the hash", n)
	}
	if r := rdb.Exists(ctx, q.Prefix+"lim:run").Val(); r != 0 {
		t.Fatal("a concurrency slot is still held")
	}
}
