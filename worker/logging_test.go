package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// Failed attempts are logged — a retry at Warn, a death at Error,
// with the task's id and the error; a worker death holding nothing is no WARN.
func TestFailedAttemptsAreLogged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	task := rediq.Register(e.app, "fails", func(context.Context, int) (int, error) {
		return 0, errors.New("boom")
	}, rediq.Retries(1), rediq.Backoff(func(int) time.Duration { return time.Millisecond }))
	id, err := task.Enqueue(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	e.start(e.app, worker.Config{Logger: zap.New(core)})
	testredis.WaitFor(t, 10*time.Second, "the death to be logged", func() bool {
		return logs.FilterMessage("task failed for good: moved to dead").Len() == 1
	})
	retry := logs.FilterMessage("task failed; will retry").All()
	if len(retry) != 1 || retry[0].Level != zapcore.WarnLevel || retry[0].ContextMap()["task_id"] != string(id) ||
		retry[0].ContextMap()["error"] != "boom" {
		t.Fatalf("retry log %+v", retry)
	}
	if d := logs.FilterMessage("task failed for good: moved to dead").All()[0]; d.Level != zapcore.ErrorLevel {
		t.Fatalf("death logged at %v", d.Level)
	}
}

// A dead worker that held nothing is removed quietly (Debug), not with a WARN.
func TestReclaimingNothingIsNoWarning(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	q := e.queue("default")
	e.must(e.rdb.ZAdd(ctx, q.Workers, redisZ(1, "ghost/1"))) // expired long ago, no leases
	core, logs := observer.New(zap.DebugLevel)
	e.start(e.app, worker.Config{LeaseTTL: 300 * time.Millisecond, Logger: zap.New(core)})
	testredis.WaitFor(t, 10*time.Second, "the ghost session to go", func() bool {
		return e.rdb.ZScore(ctx, q.Workers, "ghost/1").Err() != nil
	})
	// The reclaim's reply is logged after Redis has removed the session.
	testredis.WaitFor(t, 5*time.Second, "a debug line for the removed session", func() bool {
		return logs.FilterMessageSnippet("holding nothing").Len() > 0
	})
	if n := logs.FilterMessage("took back the tasks of a worker whose lease expired").Len(); n != 0 {
		t.Fatalf("%d warnings for a session that held nothing", n)
	}
	if n := logs.FilterMessageSnippet("holding nothing").Len(); n != 1 {
		t.Fatalf("%d debug lines for the removed session, want 1", n)
	}
}
