package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// A clean drain logs no warning. The worker closed its
// wake-up subscription when the drain began while its heartbeats went on
// probing it, and warned at each that the subscription did not hear its probe.
func TestCleanDrainLogsNoWarning(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const (
		leaseTTL = 600 * time.Millisecond // a heartbeat and a probe every 200 ms
		jobTime  = 8 * leaseTTL / 3       // the drain outlasts several heartbeats
		n        = 4
	)
	started := newRecorder[rediq.TaskID]()
	finished := newRecorder[rediq.TaskID]()
	task := rediq.Register(e.app, "slow", func(ctx context.Context, _ int) (int, error) {
		info, _ := rediq.CurrentTask(ctx)
		started.add(info.ID)
		select {
		case <-time.After(jobTime):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		finished.add(info.ID)
		return 0, nil
	})
	core, logs := observer.New(zap.WarnLevel)
	w, err := worker.New(e.app, worker.Config{Concurrency: n, LeaseTTL: leaseTTL, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	if _, err := task.EnqueueMany(context.Background(), make([]int, n)); err != nil {
		t.Fatal(err)
	}
	started.wait(t, n, 10*time.Second)
	stopped := time.Now()
	stop()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("worker Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not stop within 30s")
	}
	if got := len(finished.get()); got != n {
		t.Fatalf("%d of %d running tasks finished in the drain", got, n)
	}
	if d := time.Since(stopped); d < 2*leaseTTL/3 {
		t.Fatalf("the drain took %v: too short to span heartbeats", d)
	}
	for _, l := range logs.All() {
		t.Errorf("logged during a clean run and drain: %s %q %v", l.Level, l.Message, l.ContextMap())
	}
	testredis.WaitFor(t, 5*time.Second, "the queue to be empty", func() bool {
		return e.pendingLen("default") == 0 && e.active("default") == 0
	})
}

// The wake-up subscription stays up through a drain: a task cancelled while
// its worker drains is cancelled at once, not at the next heartbeat.
func TestCancelDuringDrainArrivesAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const leaseTTL = 30 * time.Second // a heartbeat every 10 s
	started := make(chan rediq.TaskID, 1)
	cause := make(chan error, 1)
	task := rediq.Register(e.app, "long", func(ctx context.Context, _ int) (int, error) {
		info, _ := rediq.CurrentTask(ctx)
		started <- info.ID
		select {
		case <-time.After(leaseTTL):
			cause <- nil
		case <-ctx.Done():
			cause <- context.Cause(ctx)
		}
		return 0, ctx.Err()
	})
	core, logs := observer.New(zap.InfoLevel)
	_, stop := e.start(e.app, worker.Config{Concurrency: 1, LeaseTTL: leaseTTL, Logger: zap.New(core)})
	id, err := task.Enqueue(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the task did not start")
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		stop()
	}()
	testredis.WaitFor(t, 10*time.Second, "the worker to start draining", func() bool {
		return logs.FilterMessageSnippet("draining").Len() > 0
	})
	// A worker that closes its subscription for the drain does so at once;
	// give it the chance to (this one keeps it: the wait runs out).
	wake := e.queue("default").Channel
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) && e.rdb.PubSubNumSub(context.Background(), wake).Val()[wake] > 0 {
		time.Sleep(10 * time.Millisecond)
	}
	asked := time.Now()
	if err := e.app.CancelTask(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-cause:
		if !errors.Is(err, rediq.ErrCancelled) {
			t.Fatalf("the handler's context ended with %v, want ErrCancelled", err)
		}
		if d := time.Since(asked); d > leaseTTL/6 {
			t.Fatalf("the cancel reached the draining handler after %v: it waited for a heartbeat", d)
		}
	case <-time.After(leaseTTL / 2):
		t.Fatal("the cancel did not reach the draining handler")
	}
	<-stopped
}
