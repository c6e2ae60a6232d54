package worker_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// A worker whose fetches and settlements wait for a replica that does not
// answer (the package's server has none) goes on: an unconfirmed write costs
// a task a second run after a failover, never its loss, so the worker does
// not stall on it. It says so, once per interval rather than per round trip.
func TestWorkerGoesOnWhenReplicasDoNotConfirm(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t) // miniredis has no WAIT
	e := newEnv(t)
	ran := newRecorder[int]()
	rediq.Register(e.app, "unconfirmed", func(_ context.Context, n int) (int, error) {
		ran.add(n)
		return n, nil
	})
	core, logs := observer.New(zap.WarnLevel)
	e.start(e.app, worker.Config{WaitReplicas: 1, WaitReplicasTimeout: 10 * time.Millisecond, Logger: zap.New(core)})
	task := rediq.Register(e.sibling(), "unconfirmed", func(context.Context, int) (int, error) { return 0, nil })
	const n = 5
	for i := range n {
		if _, err := task.Enqueue(context.Background(), i); err != nil {
			t.Fatal(err)
		}
	}
	ran.wait(t, n, 10*time.Second)
	testredis.WaitFor(t, 5*time.Second, "the queue to empty", func() bool {
		return e.count(e.queue(rediq.DefaultQueue).Pending) == 0 && e.active(rediq.DefaultQueue) == 0
	})
	warned := logs.FilterMessageSnippet("replicas did not confirm").Len()
	if warned != 1 {
		t.Errorf("%d warnings of unconfirmed writes, want 1 (at most one per 10s): %v", warned, logs.All())
	}
}
