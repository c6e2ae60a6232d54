package worker_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// Defect 6: a Backoff that panics does not kill the worker; the task is
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

// Defect 6: messages from another producer with out-of-range values go to dead
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

// Defect 7: during a rolling deploy, a task the old workers do not know is
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

// Defect 8: a worker whose clock runs 2s ahead of Redis's arms its timers from
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

// Defect 14: a handler that ignores its ctx past the timeout does not hold its
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

func count(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

// A handler can tell that it is a re-run after a recovery.
func TestRecoveredCountIsExposed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	seen := newRecorder[int]()
	task := rediq.Register(e.app, "r", func(ctx context.Context, _ int) (int, error) {
		info, _ := rediq.CurrentTask(ctx)
		if info.Recovered != rediq.Recovered(ctx) {
			return 0, errors.New("accessors disagree")
		}
		seen.add(rediq.Recovered(ctx))
		return 0, nil
	})
	ctx := context.Background()
	id, err := task.Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	e.must(e.rdb.HSet(ctx, e.queue("default").Recovered, string(id), 2))
	e.start(e.app, worker.Config{})
	if got := seen.wait(t, 1, 10*time.Second); got[0] != 2 {
		t.Fatalf("Recovered = %d, want 2", got[0])
	}
}
