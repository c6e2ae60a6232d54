package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/codec"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// A task bounced several times by a worker that does not
// know it runs within a few seconds once a worker that knows it is up, not
// after a retry backoff grown to many seconds.
func TestUnknownTaskRunsSoonOnceAWorkerKnowsIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	producer := e.sibling()
	report := rediq.Register(producer, "report", func(context.Context, int) (int, error) { return 0, nil })
	rediq.Register(e.app, "send_welcome_email", func(context.Context, int) (int, error) { return 0, nil })
	id, err := report.Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, stopOther := e.start(e.app, worker.Config{Name: "other-program"})
	q := e.queue("default")
	const bounces = 4
	testredis.WaitFor(t, 30*time.Second, "the other program's worker to bounce the task 4 times", func() bool {
		v, err := e.rdb.HGet(ctx, q.Records, string(id)).Result()
		if err != nil {
			return false
		}
		env, err := codec.Decode([]byte(v))
		return err == nil && env.Unknown >= bounces
	})
	stopOther()
	ran := newRecorder[rediq.TaskID]()
	knows := e.sibling()
	rediq.Register(knows, "report", func(ctx context.Context, _ int) (int, error) {
		info, _ := rediq.CurrentTask(ctx)
		ran.add(info.ID)
		return 0, nil
	})
	up := time.Now()
	e.start(knows, worker.Config{Name: "reporter"})
	// Its last bounce delayed it 2s (the cap is 3s); the backoff it used to
	// get had grown to 4–8s after 4 bounces.
	if got := ran.wait(t, 1, 10*time.Second); got[0] != id {
		t.Fatalf("ran %v", got)
	}
	if d := time.Since(up); d > 3500*time.Millisecond {
		t.Fatalf("the task ran %s after a worker that knows it was up; want within the 3s cap", d)
	}
}

// During a rolling deploy, a task the old workers do not know is
// retried with backoff, and runs once a worker that has it starts.
func TestUnknownTaskWaitsForAWorkerThatHasIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	producer := e.sibling()
	newTask := rediq.Register(producer, "new-task", func(context.Context, int) (int, error) { return 0, nil })
	id, err := newTask.Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, stopOld := e.start(e.app, worker.Config{Name: "old"}) // e.app has no "new-task"
	q := e.queue("default")
	testredis.WaitFor(t, 10*time.Second, "the old worker to retry the unknown task", func() bool {
		return e.count(q.Scheduled) == 1
	})
	stopOld()
	ran := newRecorder[rediq.TaskID]()
	deployed := e.sibling()
	rediq.Register(deployed, "new-task", func(ctx context.Context, _ int) (int, error) {
		info, _ := rediq.CurrentTask(ctx)
		ran.add(info.ID)
		return 0, nil
	})
	e.start(deployed, worker.Config{Name: "new"})
	if got := ran.wait(t, 1, 10*time.Second); got[0] != id {
		t.Fatalf("ran %v", got)
	}
	if len(e.dead("default")) != 0 {
		t.Fatal("the task went to dead")
	}
}
