package rediq_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
)

// An enqueue whose first attempt ran in Redis but lost its reply, and whose
// retries then cannot reach Redis at all, reports ErrOutcomeUnknown with the
// id: the task is in Redis. The last error (a refused dial) used to decide,
// and said that nothing was written.
func TestEnqueueWrittenThenUnreachableIsOutcomeUnknown(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		timeout time.Duration // 0: context.Background()
		enqueue func(context.Context, *rediq.Task[int, int]) (rediq.TaskID, error)
	}{
		{"Enqueue", 15 * time.Second, func(ctx context.Context, task *rediq.Task[int, int]) (rediq.TaskID, error) {
			return task.Enqueue(ctx, 1)
		}},
		{"Enqueue without a deadline", 0, func(ctx context.Context, task *rediq.Task[int, int]) (rediq.TaskID, error) {
			return task.Enqueue(ctx, 1)
		}},
		{"EnqueueMany", 15 * time.Second, func(ctx context.Context, task *rediq.Task[int, int]) (rediq.TaskID, error) {
			ids, err := task.EnqueueMany(ctx, []int{1})
			if len(ids) == 1 {
				return ids[0], err
			}
			return "", err
		}},
	}
	for _, c := range cases {
		for _, own := range []bool{false, true} {
			name := c.name
			if own {
				// rediq's own client knows when a call never reached Redis
				// (ErrUnreachable): it must not take this call for one.
				name += " on the App's own client"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				proxy := testredis.NewProxy(t, strings.TrimPrefix(testredis.URL(), "redis://"))
				ns := testredis.Namespace(t)
				// go-redis's own retries as they are, but one dial per try, so that
				// an unreachable Redis fails fast. Once PoolSize dials have failed,
				// go-redis starts a prober goroutine that outlives Close by up to a
				// second (goleak would see it): the pool is larger than the dials
				// that fail here.
				cfg := rediq.Config{RedisURL: proxy.URL() + "?pool_size=100", Namespace: ns}
				if !own {
					rc := redis.NewClient(&redis.Options{Addr: proxy.Addr(), DialerRetries: 1, PoolSize: 100})
					t.Cleanup(func() { rc.Close() })
					cfg = rediq.Config{Redis: rc, Namespace: ns}
				}
				app, err := rediq.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer app.Close()
				rdb := testredis.Client(t)
				records := ns + ":{default}:t"
				task := rediq.Register(app, "t", func(context.Context, int) (int, error) { return 0, nil })
				if _, err := task.Enqueue(context.Background(), 0); err != nil { // warm: the queue indexed, the script loaded
					t.Fatal(err)
				}

				// The enqueue script (the only command with a call guard among its
				// keys) runs, its reply is held; once its task is written, Redis
				// becomes unreachable: the proxy closes, cutting the held reply
				// and refusing every dial after it.
				proxy.HoldRepliesTo(func(req []byte) bool { return bytes.Contains(req, []byte("}:call:")) }, 1, 30*time.Second)
				stop, cut := make(chan struct{}), make(chan bool, 1)
				go func() {
					deadline := time.Now().Add(10 * time.Second)
					for time.Now().Before(deadline) {
						select {
						case <-stop:
							cut <- false
							return
						case <-time.After(time.Millisecond):
						}
						if n, _ := rdb.HLen(context.Background(), records).Result(); n == 2 {
							proxy.Close()
							cut <- true
							return
						}
					}
					cut <- false
				}()
				ctx := context.Background()
				if c.timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, c.timeout)
					defer cancel()
				}
				began := time.Now()
				id, err := c.enqueue(ctx, task)
				took := time.Since(began)
				close(stop)
				if !<-cut {
					t.Fatalf("the enqueue never reached Redis (returned %q, %v)", id, err)
				}
				t.Logf("returned after %s: %q, %v", took.Round(time.Millisecond), id, err)
				if err == nil {
					t.Fatal("the enqueue succeeded through a closed proxy: the fault did not happen")
				}
				if ctx.Err() != nil {
					t.Fatalf("ctx ended first (%v): the test says nothing", ctx.Err())
				}
				if !errors.Is(err, rediq.ErrOutcomeUnknown) {
					t.Fatalf("%v; want ErrOutcomeUnknown: the task was written", err)
				}
				if id == "" || !rdb.HExists(context.Background(), records, string(id)).Val() {
					t.Fatalf("returned id %q, which is not the task written", id)
				}
			})
		}
	}
}

// An enqueue WithID returns when its ctx ends while Redis stalls, like one
// without: the check that no other queue holds the id is bounded by ctx too.
// It used to run on go-redis's timeouts alone (3s a read, and its retries).
func TestWithIDEnqueueHonoursItsDeadline(t *testing.T) {
	t.Parallel()
	proxy := testredis.NewProxy(t, strings.TrimPrefix(testredis.URL(), "redis://"))
	app, err := rediq.New(rediq.Config{RedisURL: proxy.URL(), Namespace: testredis.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	task := rediq.Register(app, "t", func(context.Context, int) (int, error) { return 0, nil })
	audit := rediq.Register(app, "audit", func(context.Context, int) (int, error) { return 0, nil }, rediq.Queue("audit"))
	// Two queues, so that the id check has another one to look in.
	if _, err := task.Enqueue(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.Enqueue(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	proxy.Blackhole(true)
	defer proxy.Blackhole(false)
	for _, c := range []struct {
		name string
		opts []rediq.EnqueueOption
	}{
		{"generated id", nil},
		{"WithID", []rediq.EnqueueOption{rediq.WithID("order-1")}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		began := time.Now()
		id, err := task.Enqueue(ctx, 1, c.opts...)
		took := time.Since(began)
		cancel()
		t.Logf("%s: returned after %s: %q, %v", c.name, took.Round(time.Millisecond), id, err)
		if took > time.Second {
			t.Errorf("%s: returned after %s with a 200ms ctx", c.name, took.Round(time.Millisecond))
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: %v; want the ctx's error", c.name, err)
		}
		if errors.Is(err, rediq.ErrOutcomeUnknown) && id == "" {
			t.Errorf("%s: outcome unknown without the id to retry with", c.name)
		}
	}
}
