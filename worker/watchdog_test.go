package worker_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// Handlers that ignore their ctx past the timeout grace, and return later, do
// not use up the runners: given up on one after another (more of them than
// Concurrency+1), each is replaced, and healthy tasks still run after each.
// Abandonments used to be counted for the worker's life, and past Concurrency
// no runner was replaced: the worker ran nothing more.
func TestStuckHandlersThatReturnDoNotUseUpRunners(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const stuck = 3 // > Concurrency+1
	var release [stuck]chan struct{}
	for i := range release {
		release[i] = make(chan struct{})
	}
	returned := newRecorder[int]()
	ran := newRecorder[int]()
	task := rediq.Register(e.app, "t", func(ctx context.Context, n int) (int, error) {
		if n < 0 {
			select { // ignores ctx, but returns when let go
			case <-release[-n-1]:
			case <-time.After(20 * time.Second):
			}
			returned.add(n)
			return 0, nil
		}
		ran.add(n)
		return n, nil
	}, rediq.Timeout(20*time.Millisecond), rediq.Retries(0))
	e.start(e.app, worker.Config{Concurrency: 1, TimeoutGrace: 30 * time.Millisecond})
	released := 0
	t.Cleanup(func() { // a failed test still lets them go, before the worker stops
		for _, ch := range release[released:] {
			close(ch)
		}
	})
	ctx := context.Background()
	dead := e.queue("default").Dead
	for i := range stuck {
		id, err := task.Enqueue(ctx, -i-1)
		if err != nil {
			t.Fatal(err)
		}
		testredis.WaitFor(t, 5*time.Second, fmt.Sprintf("stuck handler %d to be given up on (its task in dead)", i+1),
			func() bool { return e.rdb.ZScore(ctx, dead, string(id)).Err() == nil })
		close(release[i])
		released++
		returned.wait(t, i+1, 5*time.Second)
		if _, err := task.Enqueue(ctx, i); err != nil {
			t.Fatal(err)
		}
		testredis.WaitFor(t, 5*time.Second, fmt.Sprintf("a healthy task to run after %d stuck handlers (Concurrency 1)", i+1),
			func() bool { return len(ran.get()) > i })
	}
	testredis.WaitFor(t, 5*time.Second, "nothing left leased", func() bool { return e.active("default") == 0 })
	if n := e.pendingLen("default"); n != 0 {
		t.Fatalf("%d tasks left pending", n)
	}
}

// A handler that ignores its ctx past the timeout does not hold its
// task forever: after the grace its attempt fails and the task is retried, the
// tasks behind it run, and the stuck goroutine is let go.
func TestStuckHandlerIsGivenUpOn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	ran := newRecorder[string]()
	task := rediq.Register(e.app, "stuck", func(ctx context.Context, n int) (int, error) {
		if n == 0 && rediq.Retried(ctx) == 0 {
			ran.add("stuck")
			<-release // ignores ctx
			return 0, nil
		}
		ran.add(map[bool]string{true: "retry", false: "next"}[n == 0])
		return n, nil
	}, rediq.Timeout(50*time.Millisecond))
	ctx := context.Background()
	if _, err := task.EnqueueMany(ctx, []int{0, 1, 2}); err != nil {
		t.Fatal(err)
	}
	e.start(e.app, worker.Config{Concurrency: 1, TimeoutGrace: 100 * time.Millisecond})
	got := ran.wait(t, 4, 10*time.Second)
	if got[0] != "stuck" || !slices.Contains(got, "retry") || count(got, "next") != 2 {
		t.Fatalf("ran %v", got)
	}
	if len(e.dead("default")) != 0 {
		t.Fatal("a task went to dead")
	}
}
