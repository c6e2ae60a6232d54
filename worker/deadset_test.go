package worker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// Kills that find the dead set far over DeadMaxLen (9,000 for 500) settle,
// each trimming a bounded step, until the dead set is down to the limit. The
// trim used to pass every excess id to unpack at once, which fails past ~8,000:
// the settle failed after its writes, and the dead set was never trimmed.
func TestLargeDeadSetExcessIsTrimmedInSteps(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t) // unpack's limit is real Redis's Lua
	e := newEnv(t)
	ctx := context.Background()
	q := e.queue("default")
	const filler, limit = 9000, 500
	since := time.Now().Add(-time.Minute).UnixMilli()
	zs := make([]redis.Z, filler)
	for i := range zs {
		zs[i] = redisZ(float64(since+int64(i)), fmt.Sprintf("old%05d", i))
	}
	if err := e.rdb.ZAdd(ctx, q.Dead, zs...).Err(); err != nil {
		t.Fatal(err)
	}
	task := rediq.Register(e.app, "t", func(ctx context.Context, n int) (int, error) {
		if n < 0 {
			return 0, rediq.SkipRetry(errors.New("doomed"))
		}
		return n, nil
	})
	logs, records := observer.New(zap.WarnLevel)
	e.start(e.app, worker.Config{Concurrency: 1, DeadMaxLen: limit, Logger: zap.New(logs)})
	// One kill at a time, so that each is a settle call of its own.
	prev := e.count(q.Dead)
	for kills := 1; prev > limit; kills++ {
		if kills > 20 {
			t.Fatalf("dead set still holds %d after %d kills, limit %d", prev, kills-1, limit)
		}
		id, err := task.Enqueue(ctx, -kills)
		if err != nil {
			t.Fatal(err)
		}
		testredis.WaitFor(t, 5*time.Second, fmt.Sprintf("kill %d in the dead set", kills), func() bool {
			return e.rdb.ZScore(ctx, q.Dead, string(id)).Err() == nil
		})
		n := e.count(q.Dead)
		if n >= prev {
			t.Fatalf("kill %d: dead set holds %d, %d before it (limit %d): not trimmed", kills, n, prev, limit)
		}
		prev = n
	}
	if prev != limit {
		t.Fatalf("dead set holds %d, want the limit %d", prev, limit)
	}
	if _, err := task.EnqueueMany(ctx, []int{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	testredis.WaitFor(t, 5*time.Second, "every task settled", func() bool {
		return e.active("default") == 0 && e.pendingLen(q.Name) == 0
	})
	if n := records.FilterMessage("settle failed; will retry").Len(); n > 0 {
		t.Fatalf("settling failed %d times: %v", n, records.FilterMessage("settle failed; will retry").All()[0].ContextMap())
	}
}
