package worker_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// PurgeQueue tells retry from scheduled (they share an index) and purges dead
// tasks; a purge of a state a task is not in leaves it alone.
func TestPurgeTellsRetryFromScheduled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	var runs atomic.Int64
	task := rediq.Register(e.app, "flaky", func(ctx context.Context, n int) (int, error) {
		runs.Add(1)
		if n == 1 {
			return 0, rediq.SkipRetry(errors.New("dead on arrival"))
		}
		return 0, errors.New("fails, to be retried in an hour")
	}, rediq.Queue("pq"), rediq.Retries(3), rediq.Backoff(func(int) time.Duration { return time.Hour }))
	for n := range 2 {
		if _, err := task.Enqueue(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	later, err := task.Enqueue(ctx, 2, rediq.Delay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, stop := e.start(e.app, worker.Config{Queues: []string{"pq"}, SkipDefaultQueue: true, Concurrency: 2})
	testredis.WaitFor(t, 30*time.Second, "one task dead and one waiting to retry", func() bool {
		st, err := e.app.QueueStats(ctx, "pq")
		return err == nil && st[0].Dead == 1 && st[0].Scheduled == 2 && st[0].Active == 0
	})
	stop()
	purge := func(want int, states ...rediq.TaskState) {
		t.Helper()
		if n, err := e.app.PurgeQueue(ctx, "pq", states...); n != want || err != nil {
			t.Fatalf("purge %v = %d, %v; want %d", states, n, err, want)
		}
	}
	purge(1, rediq.StateRetry)
	if st, _ := e.app.QueueStats(ctx, "pq"); st[0].Scheduled != 1 || st[0].Dead != 1 {
		t.Fatalf("after purging retry: %+v", st[0])
	}
	if r, err := e.app.GetTask(ctx, later); err != nil || r.State != rediq.StateScheduled {
		t.Fatalf("the delayed task: %+v, %v; want it scheduled still", r, err)
	}
	purge(1, rediq.StateDead, rediq.StatePending)
	purge(1, rediq.StateScheduled)
	if st, _ := e.app.QueueStats(ctx, "pq"); st[0].Scheduled != 0 || st[0].Dead != 0 || st[0].Pending != 0 {
		t.Fatalf("after purging all: %+v", st[0])
	}
}
