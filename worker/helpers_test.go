package worker_test

import (
	"context"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv("REDIQ_TEST_CHILD"); mode != "" {
		os.Exit(childMain(mode))
	}
	testredis.Main(m)
}

// env is one test's app on its own namespace, with a raw client to inspect keys.
type env struct {
	t   *testing.T
	app *rediq.App
	rdb *redis.Client
	ns  string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ns := testredis.Namespace(t)
	app, err := rediq.New(rediq.Config{RedisURL: testredis.URL(), Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	return &env{t: t, app: app, rdb: testredis.Client(t), ns: ns}
}

// sibling is another App on the same namespace (another process, in effect).
func (e *env) sibling() *rediq.App {
	app, err := rediq.New(rediq.Config{RedisURL: testredis.URL(), Namespace: e.ns})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { app.Close() })
	return app
}

func (e *env) queue(name string) *broker.Queue { return broker.New(e.rdb, e.ns).Queue(name) }

// start runs a worker until the test ends (or stop is called) and checks that
// Run returned nil.
func (e *env) start(app *rediq.App, cfg worker.Config) (w *worker.Worker, stop func()) {
	e.t.Helper()
	if cfg.Name == "" {
		cfg.Name = "w-" + e.t.Name()
	}
	w, err := worker.New(app, cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					e.t.Errorf("worker Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				e.t.Errorf("worker did not stop within 30s")
			}
		})
	}
	e.t.Cleanup(stop)
	return w, stop
}

func (e *env) count(key string) int64 {
	n, err := e.rdb.ZCard(context.Background(), key).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// pendingIDs lists what waits in a queue's pending (not recovering), in the
// order fetch takes it.
func (e *env) pendingIDs(queue string) []string {
	e.t.Helper()
	ids, err := broker.New(e.rdb, e.ns).PendingIDs(context.Background(), e.queue(queue))
	if err != nil {
		e.t.Fatal(err)
	}
	return ids
}

// pendingLen counts what waits in a queue's pending (not recovering).
func (e *env) pendingLen(queue string) int64 { return int64(len(e.pendingIDs(queue))) }

// dead decodes the dead set of a queue, oldest first.
func (e *env) dead(queue string) []*codec.Envelope {
	e.t.Helper()
	q := e.queue(queue)
	ids, err := e.rdb.ZRange(context.Background(), q.Dead, 0, -1).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	var out []*codec.Envelope
	for _, id := range ids {
		v, err := e.rdb.HGet(context.Background(), q.Records, id).Result()
		if err != nil {
			e.t.Fatalf("dead task %s has no record: %v", id, err)
		}
		env, err := codec.Decode([]byte(v))
		if err != nil {
			e.t.Fatalf("dead message does not decode: %v", err)
		}
		if env.ID == "" {
			env.ID = id
		}
		out = append(out, env)
	}
	return out
}

func (e *env) active(queue string) int64 {
	st, err := broker.New(e.rdb, e.ns).Stats(context.Background(), []string{queue})
	if err != nil {
		e.t.Fatal(err)
	}
	return st[0].Active
}

// recorder collects values from handlers and hooks, and lets a test wait for a
// number of them.
type recorder[T any] struct {
	mu     sync.Mutex
	vals   []T
	change chan struct{}
}

func newRecorder[T any]() *recorder[T] { return &recorder[T]{change: make(chan struct{})} }

func (r *recorder[T]) add(v T) {
	r.mu.Lock()
	r.vals = append(r.vals, v)
	close(r.change)
	r.change = make(chan struct{})
	r.mu.Unlock()
}

func (r *recorder[T]) get() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.vals)
}

// wait blocks until at least n values are recorded, failing t after timeout.
func (r *recorder[T]) wait(t testing.TB, n int, timeout time.Duration) []T {
	t.Helper()
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		if len(r.vals) >= n {
			v := slices.Clone(r.vals)
			r.mu.Unlock()
			return v
		}
		ch := r.change
		r.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out after %s: %d of %d recorded: %v", timeout, len(r.get()), n, r.get())
		}
	}
}

func redisZ(score float64, member string) redis.Z { return redis.Z{Score: score, Member: member} }

// must fails the test if a setup command failed.
func (e *env) must(c interface{ Err() error }) {
	e.t.Helper()
	if err := c.Err(); err != nil {
		e.t.Fatal(err)
	}
}
