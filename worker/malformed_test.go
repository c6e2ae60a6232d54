package worker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
	"github.com/vmihailenco/msgpack/v5"
)

// Messages from another producer with out-of-range values go to dead
// with the reason; the worker keeps running.
func TestOutOfRangeMessagesGoToDead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ran := newRecorder[int]()
	good := rediq.Register(e.app, "good", func(_ context.Context, n int) (int, error) {
		ran.add(n)
		return n, errors.New("fail once to exercise the retry path")
	}, rediq.Retries(0))
	ctx := context.Background()
	q := e.queue("default")
	bad := map[string]map[string]any{
		"x-negative":  {"v": 1, "i": "x-negative", "n": "good", "t": 1, "x": -1},
		"p-range":     {"v": 1, "i": "p-range", "n": "good", "t": 1, "p": 5000},
		"o-negative":  {"v": 1, "i": "o-negative", "n": "good", "t": 1, "o": -5},
		"r-huge":      {"v": 1, "i": "r-huge", "n": "good", "t": 1, "r": int64(1) << 40},
		"no-time":     {"v": 1, "i": "no-time", "n": "good"},
		"new-version": {"v": 2, "i": "new-version", "n": "good", "t": 1},
	}
	for id, m := range bad {
		b, err := msgpack.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		e.must(e.rdb.HSet(ctx, q.Records, id, b))
		e.must(e.rdb.ZAdd(ctx, q.Pending, redisZ(2048*(1<<41), id)))
	}
	// No "a": the zero value of the arguments.
	b, _ := msgpack.Marshal(map[string]any{"v": 1, "i": "no-args", "n": "good", "t": 1})
	e.must(e.rdb.HSet(ctx, q.Records, "no-args", b))
	e.must(e.rdb.ZAdd(ctx, q.Pending, redisZ(2048*(1<<41), "no-args")))
	if _, err := good.Enqueue(ctx, 7); err != nil {
		t.Fatal(err)
	}
	e.start(e.app, worker.Config{Concurrency: 2})
	ran.wait(t, 2, 10*time.Second)
	testredis.WaitFor(t, 10*time.Second, "every bad message and the failed good one in dead", func() bool {
		return e.count(q.Dead) == int64(len(bad))+2
	})
	for _, d := range e.dead("default") {
		if _, isBad := bad[d.ID]; isBad && !strings.Contains(d.Error, "malformed") {
			t.Errorf("%s died with %q; want the reason", d.ID, d.Error)
		}
	}
}
