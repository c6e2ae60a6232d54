package worker_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/worker"
)

// A Backoff that panics does not kill the worker; the task is
// retried with the default backoff.
func TestPanickingBackoffFallsBackToTheDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	delays := []time.Duration{time.Millisecond} // a table one entry short
	var asked atomic.Int64                      // times Backoff was called
	runs := newRecorder[int]()
	task := rediq.Register(e.app, "flaky", func(ctx context.Context, _ int) (int, error) {
		n := rediq.Retried(ctx)
		runs.add(n)
		if n < 2 {
			return 0, errors.New("not yet")
		}
		return n, nil
	}, rediq.Backoff(func(retried int) time.Duration {
		asked.Add(1)
		return delays[retried]
	}))
	if _, err := task.Enqueue(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	e.start(e.app, worker.Config{})
	runs.wait(t, 3, 10*time.Second) // the second retry waits the default 0.5–1s
	if len(e.dead("default")) != 0 {
		t.Fatal("task went to dead")
	}
	if n := asked.Load(); n != 2 {
		t.Fatalf("Backoff called %d times, want 2 (the second panics)", n)
	}
}
