package worker_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/worker"
)

// Review findings: each of these once lost or hung something.
func TestCancelEdges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	release := make(chan struct{})
	started := newRecorder[string]()
	runs := newRecorder[string]()
	stubborn := rediq.Register(e.app, "stubborn", func(ctx context.Context, n int) (int, error) {
		info, _ := rediq.CurrentTask(ctx)
		started.add(string(info.ID))
		if n == 1 {
			<-release // ignores its ctx
		}
		runs.add(string(info.ID))
		return n, nil
	})
	e.start(e.app, worker.Config{LeaseTTL: 900 * time.Millisecond})
	q := e.queue("default")

	// A cancel that comes too late (the handler returns nil anyway): the task
	// succeeded, and the request does not outlive it to cancel a new task
	// enqueued under the same id.
	if _, err := stubborn.Enqueue(ctx, 1, rediq.WithID("job-1")); err != nil {
		t.Fatal(err)
	}
	started.wait(t, 1, 10*time.Second)
	if err := e.app.CancelTask(ctx, "job-1"); err != nil {
		t.Fatal(err)
	}
	close(release)
	runs.wait(t, 1, 10*time.Second)
	waitFor(t, 5*time.Second, "the request to be cleared", func() bool { return e.rdb.Exists(ctx, q.Prefix+"cancels").Val() == 0 })
	if _, err := stubborn.Enqueue(ctx, 2, rediq.WithID("job-1")); err != nil {
		t.Fatal(err)
	}
	runs.wait(t, 2, 10*time.Second)

	// A cancel request whose wake message never came (the subscription was
	// away): the worker finds it after its next heartbeat.
	block, _ := registerTaskByID(e.app, e.ns, 0)
	e.start(e.app, worker.Config{Queues: []string{"block"}, SkipDefaultQueue: true, LeaseTTL: 900 * time.Millisecond})
	id, _ := block.Enqueue(ctx, 1)
	waitFor(t, 10*time.Second, "the handler to start", func() bool { return e.rdb.LLen(ctx, e.ns+":starts").Val() == 1 })
	bq := e.queue("block")
	e.must(e.rdb.HSet(ctx, bq.Prefix+"cancels", string(id), time.Now().UnixMilli())) // as cancel.lua, without the PUBLISH
	waitFor(t, 5*time.Second, "the handler to be cancelled", func() bool { return e.rdb.LLen(ctx, e.ns+":ended").Val() == 1 })
	waitFor(t, 5*time.Second, "the task to end cancelled", func() bool { return e.state(id) == rediq.StateCancelled })
}

func TestRequeueEdges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	task, runs, mend := breakable(e)
	// A dead task past its ExpireIn deadline runs when requeued.
	late, err := task.Enqueue(ctx, 1, rediq.ExpireIn(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := task.EnqueueMany(ctx, []int{2, 3}); err != nil {
		t.Fatal(err)
	}
	_, stop := e.start(e.app, worker.Config{})
	runs.wait(t, 3, 10*time.Second)
	q := e.queue("default")
	waitFor(t, 5*time.Second, "three dead", func() bool { return e.count(q.Dead) == 3 })
	stop()
	// An undecodable message in dead, oldest of all.
	e.must(e.rdb.HSet(ctx, q.Records, "garbage", "\xc1"))
	e.must(e.rdb.ZAdd(ctx, q.Dead, redisZ(1, "garbage")))
	// A meta written by hand that means nothing must not stop the queue.
	ids, _ := e.rdb.ZRange(ctx, q.Dead, 0, -1).Result()
	for _, id := range ids {
		if id != string(late) && id != "garbage" {
			e.must(e.rdb.HSet(ctx, q.Prefix+"meta", id, "junk"))
			break
		}
	}
	time.Sleep(350 * time.Millisecond) // past the deadline of the first task
	n, err := e.app.RequeueDead(ctx, "default")
	if n != 3 || err == nil || !strings.Contains(err.Error(), "garbage") {
		t.Fatalf("RequeueDead = %d, %v; want 3 and an error naming the undecodable one", n, err)
	}
	mend()
	e.start(e.app, worker.Config{})
	got := runs.wait(t, 6, 10*time.Second)
	slices.Sort(got[3:])
	if !slices.Equal(got[3:], []int{1, 2, 3}) {
		t.Fatalf("runs %v", got)
	}
	// The handler has returned; its settle may still be on its way.
	waitFor(t, 5*time.Second, "the requeued late task to settle", func() bool {
		r, err := e.app.GetTask(ctx, late)
		return err != nil || r.State != rediq.StateActive
	})
	if r, err := e.app.GetTask(ctx, late); !errors.Is(err, rediq.ErrTaskNotFound) {
		t.Fatalf("the requeued late task did not run to success: %+v, %v", r, err)
	}
}

// breakable registers task "t" (no retries): it records each run and fails
// until mend is called.
func breakable(e *env, opts ...rediq.TaskOption) (task *rediq.Task[int, int], runs *recorder[int], mend func()) {
	var broken atomic.Bool
	broken.Store(true)
	runs = newRecorder[int]()
	task = rediq.Register(e.app, "t", func(ctx context.Context, n int) (int, error) {
		runs.add(n)
		if broken.Load() {
			return 0, errors.New("broken")
		}
		return n, nil
	}, append([]rediq.TaskOption{rediq.Retries(0)}, opts...)...)
	return task, runs, func() { broken.Store(false) }
}
