package worker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// countingFetches counts the fetch script calls a client sends.
type countingFetches struct{ n atomic.Int64 }

func (h *countingFetches) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countingFetches) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.count([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}
func (h *countingFetches) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.count(cmds)
		return next(ctx, cmds)
	}
}
func (h *countingFetches) count(cmds []redis.Cmder) {
	for _, c := range cmds {
		if a := c.Args(); len(a) > 3 && (c.Name() == "evalsha" || c.Name() == "eval") && a[2] == 9 { // fetch has 9 keys
			h.n.Add(1)
		}
	}
}

// A worker whose clock runs 2s ahead of Redis's arms its timers from
// the relative due times the scripts return: it neither spins nor runs late.
func TestSkewedClockNeitherSpinsNorDelays(t *testing.T) {
	t.Parallel()
	for _, skew := range []time.Duration{2 * time.Second, -2 * time.Second} {
		t.Run(skew.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			opt, _ := redis.ParseURL(testredis.URL())
			rdb := redis.NewClient(opt)
			t.Cleanup(func() { rdb.Close() }) // after the worker stops
			hook := &countingFetches{}
			rdb.AddHook(hook)
			app, err := rediq.New(rediq.Config{Redis: rdb, Namespace: e.ns})
			if err != nil {
				t.Fatal(err)
			}
			started := make(chan time.Time, 1)
			task := rediq.Register(app, "later", func(context.Context, int) (int, error) {
				started <- time.Now()
				return 0, nil
			})
			e.start(app, worker.WithClockSkew(worker.Config{LeaseTTL: time.Minute}, skew))
			before := hook.n.Load()
			due := time.Now().Add(time.Second)
			if _, err := task.Enqueue(context.Background(), 1, rediq.Delay(time.Second)); err != nil {
				t.Fatal(err)
			}
			select {
			case at := <-started:
				if late := at.Sub(due); late > time.Second || late < -50*time.Millisecond {
					t.Errorf("ran %v after its due time", late)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the delayed task did not run")
			}
			if n := hook.n.Load() - before; n > 10 {
				t.Fatalf("%d fetch round trips for one delayed task: the fetcher spins", n)
			}
		})
	}
}

func count(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}
