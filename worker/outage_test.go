package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// Redis runs a fetch but its reply is lost (held past the client's
// read timeout). Whether go-redis sends the fetch again or the worker does, the
// second run answers what the first leased: every task runs, once.
func TestLostFetchReplyLosesNothing(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t)
	for name, query := range map[string]string{
		"go-redis re-sends":   "?read_timeout=200ms",
		"the worker re-sends": "?read_timeout=200ms&max_retries=-1",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			proxy := testredis.NewProxy(t, testredis.URL()[len("redis://"):])
			app, err := rediq.New(rediq.Config{RedisURL: proxy.URL() + query, Namespace: e.ns})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { app.Close() })
			var mu sync.Mutex
			ran := newRecorder[string]()
			rediq.Register(app, "job", func(ctx context.Context, _ int) (int, error) {
				info, _ := rediq.CurrentTask(ctx)
				mu.Lock()
				r := ran
				mu.Unlock()
				r.add(string(info.ID))
				return 0, nil
			})
			core, logs := observer.New(zap.WarnLevel)
			// A long lease keeps heartbeats out of the way: while the worker is
			// idle, the only replies from Redis are the wake-up and the fetch.
			e.start(app, worker.Config{LeaseTTL: time.Minute, Logger: zap.New(core)})
			// A first task shows the worker subscribed and idle, its ack done.
			producer := rediq.Register(e.app, "job", func(context.Context, int) (int, error) { return 0, nil })
			if _, err := producer.Enqueue(context.Background(), 0); err != nil {
				t.Fatal(err)
			}
			ran.wait(t, 1, 10*time.Second)
			testredis.WaitFor(t, 5*time.Second, "the first ack", func() bool { return e.active("default") == 0 })
			mu.Lock()
			ran = newRecorder[string]()
			mu.Unlock()
			// The next fetch's reply (the only command with both the sessions
			// zset and the sequence among its keys) comes after the timeout.
			proxy.HoldRepliesTo(func(req []byte) bool {
				return bytes.Contains(req, []byte("}:sessions")) && bytes.Contains(req, []byte("}:seq"))
			}, 1, 600*time.Millisecond)
			ids, err := producer.EnqueueMany(context.Background(), []int{1, 2, 3, 4, 5})
			if err != nil {
				t.Fatal(err)
			}
			got := ran.wait(t, len(ids), 10*time.Second)
			slices.Sort(got)
			want := make([]string, len(ids))
			for i, id := range ids {
				want[i] = string(id)
			}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("ran %v, want each of %v once", got, want)
			}
			testredis.WaitFor(t, 5*time.Second, "nothing left leased", func() bool { return e.active("default") == 0 })
			if proxy.HoldsLeft() != 0 {
				t.Fatal("no fetch reply was held: the fault did not happen")
			}
			if strings.HasSuffix(query, "max_retries=-1") && logs.FilterMessage("fetch failed; will send it again").Len() == 0 {
				t.Fatal("the fetch never failed: the fault did not happen")
			}
		})
	}
}

// Redis dies (SIGKILL) and comes back from its AOF after longer
// than the lease TTL. The workers fence themselves meanwhile, then renew their
// own sessions instead of taking each other's tasks: every task runs, none is
// dead, none counts as recovered.
func TestRedisRestartLongerThanTheLease(t *testing.T) {
	t.Parallel()
	srv := testredis.StartServer(t, testredis.WithAOF())
	ns := testredis.Namespace(t)
	rdb := testredis.ClientFor(t, srv.URL())
	var mu sync.Mutex
	recovered := map[string]int{}
	newApp := func() (*rediq.App, *rediq.Task[int, int]) {
		app, err := rediq.New(rediq.Config{RedisURL: srv.URL(), Namespace: ns})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { app.Close() })
		task := rediq.Register(app, "job", func(ctx context.Context, _ int) (int, error) {
			info, _ := rediq.CurrentTask(ctx)
			mu.Lock()
			recovered[string(info.ID)] = max(recovered[string(info.ID)], info.Recovered)
			mu.Unlock()
			select {
			case <-time.After(300 * time.Millisecond):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			return 0, app.Redis().HIncrBy(ctx, ns+":done", string(info.ID), 1).Err()
		})
		return app, task
	}
	_, job := newApp()
	a, _ := newApp()
	b, _ := newApp()
	var stops []func()
	for i, app := range []*rediq.App{a, b} {
		w, err := worker.New(app, worker.Config{Name: fmt.Sprint("w", i), Concurrency: 4, LeaseTTL: 2 * time.Second, Logger: zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		stops = append(stops, func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Error("worker did not stop")
			}
		})
	}
	t.Cleanup(func() {
		for _, s := range stops {
			s()
		}
	})
	ids, err := job.EnqueueMany(context.Background(), make([]int, 60))
	if err != nil {
		t.Fatal(err)
	}
	done := func() map[string]string {
		m, err := rdb.HGetAll(context.Background(), ns+":done").Result()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	testredis.WaitFor(t, 10*time.Second, "some tasks done", func() bool { return len(done()) >= 10 })
	if n := len(done()); n == len(ids) {
		t.Fatal("every task finished before the outage: it tests nothing")
	}
	srv.Kill()
	// The outage: 1.5 lease periods. (The lease is 2s, not less: after an
	// outage go-redis's pool retries dialing once a second, so a worker may
	// take a second longer than another to get through again.)
	time.Sleep(3 * time.Second)
	srv.Restart(t)
	testredis.WaitFor(t, 30*time.Second, "every task done", func() bool { return len(done()) == len(ids) })
	if n, err := rdb.ZCard(context.Background(), broker.New(rdb, ns).Queue("default").Dead).Result(); err != nil || n != 0 {
		t.Fatalf("%d tasks in dead (%v)", n, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, n := range recovered {
		if n > 0 {
			t.Errorf("task %s ran as recovered (%d): a worker took over a live worker's task", id, n)
		}
	}
	t.Logf("%d tasks, %d ran more than once (interrupted by the outage)", len(ids), countOver(done(), 1))
}

func countOver(m map[string]string, n int) int {
	c := 0
	for _, v := range m {
		if k, _ := strconv.Atoi(v); k > n {
			c++
		}
	}
	return c
}

// A busy worker settles with its fetches, one round trip for both. When that
// round trip fails — its reply lost (held past the client's read timeout,
// without go-redis's retries: the settlements ran), or its connection cut as
// the settlements went out (they never ran) — both parts are sent again: the
// settlements apply once, the fetch answers what it leased. Every task runs
// once, none is dead, nothing stays leased.
func TestFailedSettleAndFetchLosesNothing(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t)
	// settle.lua is the one call with both the dead set and the orphaned
	// counts among its keys.
	settles := func(req []byte) bool {
		return bytes.Contains(req, []byte("}:dead")) && bytes.Contains(req, []byte("}:orphaned"))
	}
	for name, fault := range map[string]func(*testredis.Proxy) (left func() int){
		"reply lost": func(p *testredis.Proxy) func() int {
			p.HoldRepliesTo(settles, 1, 400*time.Millisecond)
			return p.HoldsLeft
		},
		"never ran": func(p *testredis.Proxy) func() int {
			p.CutAtRequests(settles, 1)
			return p.CutsLeft
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			proxy := testredis.NewProxy(t, testredis.URL()[len("redis://"):])
			app, err := rediq.New(rediq.Config{RedisURL: proxy.URL() + "?read_timeout=200ms&max_retries=-1", Namespace: e.ns})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { app.Close() })
			ran := newRecorder[string]()
			rediq.Register(app, "job", func(ctx context.Context, _ int) (int, error) {
				info, _ := rediq.CurrentTask(ctx)
				ran.add(string(info.ID))
				time.Sleep(time.Millisecond) // the worker stays busy: it fetches while tasks end
				return 0, nil
			})
			core, logs := observer.New(zap.WarnLevel)
			e.start(app, worker.Config{Concurrency: 4, LeaseTTL: time.Minute, Logger: zap.New(core)})
			producer := rediq.Register(e.app, "job", func(context.Context, int) (int, error) { return 0, nil })
			// Whether the settlements hit went alone or with a fetch depends
			// on timing: rounds go on until some went with a fetch (the
			// failure is then the fetch's).
			var want []string
			deadline := time.Now().Add(60 * time.Second)
			for round := 0; logs.FilterMessage("fetch failed; will send it again").Len() == 0; round++ {
				if time.Now().After(deadline) {
					t.Fatalf("after %d rounds no settlement hit had gone with a fetch", round)
				}
				left := fault(proxy)
				ids, err := producer.EnqueueMany(context.Background(), make([]int, 200))
				if err != nil {
					t.Fatal(err)
				}
				for _, id := range ids {
					want = append(want, string(id))
				}
				ran.wait(t, len(want), 20*time.Second)
				testredis.WaitFor(t, 10*time.Second, "nothing left leased", func() bool { return e.active("default") == 0 })
				if left() != 0 {
					t.Fatal("no settlement was hit: the fault did not happen")
				}
			}
			t.Logf("%d rounds of 200 tasks until the settlements hit had gone with a fetch", len(want)/200)
			got := ran.get()
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("ran %d tasks (%d distinct), want each of %d once", len(got), len(slices.Compact(slices.Clone(got))), len(want))
			}
			if d := e.dead("default"); len(d) != 0 {
				t.Fatalf("%d tasks dead, want none", len(d))
			}
		})
	}
}

// A fetch whose reply is slow (held 1.5 s here) holds back no outcome: what
// waits for the fetcher's next fetch goes alone after withFetchWait. (Found
// by review: the settler had left everything to the fetcher while it fetched.)
func TestSlowFetchHoldsNoOutcomeBack(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t)
	e := newEnv(t)
	proxy := testredis.NewProxy(t, testredis.URL()[len("redis://"):])
	app, err := rediq.New(rediq.Config{RedisURL: proxy.URL(), Namespace: e.ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	started := make(chan string, 1)
	release := make(chan struct{})
	var quickRan atomic.Bool
	rediq.Register(app, "slow", func(ctx context.Context, _ int) (int, error) {
		info, _ := rediq.CurrentTask(ctx)
		started <- string(info.ID)
		<-release
		return 0, nil
	})
	rediq.Register(app, "quick", func(context.Context, int) (int, error) {
		quickRan.Store(true)
		return 0, nil
	})
	e.start(app, worker.Config{Concurrency: 4, LeaseTTL: time.Minute})
	slowP := rediq.Register(e.app, "slow", func(context.Context, int) (int, error) { return 0, nil })
	quickP := rediq.Register(e.app, "quick", func(context.Context, int) (int, error) { return 0, nil })
	if _, err := slowP.Enqueue(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	var id string
	select {
	case id = <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow task did not start")
	}
	// fetch.lua's keys: the sequence and the session's lease hash
	// (settle.lua's have the dead set). The quick task comes in the held
	// reply: it runs only once that reply is delivered.
	proxy.HoldRepliesTo(func(req []byte) bool {
		return bytes.Contains(req, []byte("}:seq")) && bytes.Contains(req, []byte("}:lease:")) && !bytes.Contains(req, []byte("}:dead"))
	}, 1, 1500*time.Millisecond)
	if _, err := quickP.Enqueue(context.Background(), 0); err != nil { // the fetcher wakes: its reply is held
		t.Fatal(err)
	}
	testredis.WaitFor(t, 10*time.Second, "the fetch held", func() bool { return proxy.HoldsLeft() == 0 })
	close(release)
	q := e.queue("default")
	testredis.WaitFor(t, 10*time.Second, "the slow task's ack in Redis", func() bool {
		return !e.rdb.HExists(context.Background(), q.Records, id).Val()
	})
	if quickRan.Load() {
		t.Fatal("the slow task's ack reached Redis only after the held fetch's reply: it waited for the fetch in flight")
	}
}
