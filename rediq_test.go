package rediq_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

func TestMain(m *testing.M) { testredis.Main(m) }

func newApp(t *testing.T) (*rediq.App, *redis.Client) {
	t.Helper()
	app, err := rediq.New(rediq.Config{RedisURL: testredis.URL(), Namespace: testredis.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	return app, testredis.Client(t)
}

// keys lists the app's keys.
func keys(t *testing.T, app *rediq.App, rdb *redis.Client) []string {
	t.Helper()
	ks, err := rdb.Keys(context.Background(), app.Namespace()+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

func TestEnqueueRefusesBadInputWithoutWriting(t *testing.T) {
	t.Parallel()
	app, rdb := newApp(t)
	plain := rediq.Register(app, "plain", func(context.Context, int) (int, error) { return 0, nil })
	// A channel has no msgpack encoding.
	chans := rediq.Register(app, "chans", func(context.Context, chan int) (int, error) { return 0, nil })
	done, cancel := context.WithCancel(context.Background())
	cancel()
	ctx := context.Background()

	if _, err := plain.Enqueue(done, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("Enqueue with a done ctx = %v, want context.Canceled", err)
	}
	if _, err := plain.EnqueueMany(done, []int{1, 2}); !errors.Is(err, context.Canceled) {
		t.Errorf("EnqueueMany with a done ctx = %v, want context.Canceled", err)
	}
	var ee *rediq.EncodeError
	if _, err := chans.Enqueue(ctx, make(chan int)); !errors.As(err, &ee) || ee.Task != "chans" {
		t.Errorf("Enqueue of a channel = %v, want *EncodeError", err)
	}
	if _, err := chans.EnqueueMany(ctx, []chan int{nil, make(chan int)}); !errors.As(err, &ee) {
		t.Errorf("EnqueueMany with a bad element = %v, want *EncodeError", err)
	}
	for name, opt := range map[string]rediq.EnqueueOption{
		"priority": rediq.Priority(rediq.MaxPriority + 1), "queue": rediq.Queue("a:b"),
		"retries": rediq.Retries(-1), "timeout": rediq.Timeout(0),
	} {
		if _, err := plain.Enqueue(ctx, 1, opt); !errors.Is(err, rediq.ErrInvalidOption) {
			t.Errorf("%s: Enqueue = %v, want ErrInvalidOption", name, err)
		}
	}
	if ks := keys(t, app, rdb); len(ks) != 0 {
		t.Fatalf("refused enqueues wrote %v", ks)
	}
}

func TestRegisterPanicsOnProgrammingErrors(t *testing.T) {
	t.Parallel()
	app, _ := newApp(t)
	fn := func(context.Context, int) (int, error) { return 0, nil }
	rediq.Register(app, "taken", fn)
	cases := map[string]func(){
		"duplicate":   func() { rediq.Register(app, "taken", fn) },
		"empty name":  func() { rediq.Register(app, "", fn) },
		"nil func":    func() { rediq.Register[int, int](app, "nil", nil) },
		"bad option":  func() { rediq.Register(app, "bad", fn, rediq.Priority(99999)) },
		"bad queue":   func() { rediq.Register(app, "badq", fn, rediq.Queue("")) },
		"bad event":   func() { app.On(rediq.Event(99), func(context.Context) error { return nil }) },
		"nil backoff": func() { rediq.Register(app, "nb", fn, rediq.Backoff(nil)) },
	}
	for name, f := range cases {
		func() {
			defer func() {
				if r := recover(); r == nil {
					t.Errorf("%s: no panic", name)
				} else if !strings.HasPrefix(r.(string), "rediq: ") {
					t.Errorf("%s: panic %q lacks the rediq: prefix", name, r)
				}
			}()
			f()
		}()
	}
}

// countingHook counts the round trips a client makes.
type countingHook struct{ trips atomic.Int64 }

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.trips.Add(1)
		return next(ctx, cmd)
	}
}
func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.trips.Add(1)
		return next(ctx, cmds)
	}
}

func TestEnqueueManyIsOneRoundTrip(t *testing.T) {
	t.Parallel()
	rdb := testredis.Client(t)
	hook := &countingHook{}
	rdb.AddHook(hook)
	app, err := rediq.New(rediq.Config{Redis: rdb, Namespace: testredis.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	task := rediq.Register(app, "bulk", func(context.Context, int) (int, error) { return 0, nil })
	ctx := context.Background()
	// Load the script first, so that the count is not the one-time EVAL fallback.
	if _, err := task.Enqueue(ctx, 0); err != nil {
		t.Fatal(err)
	}
	before := hook.trips.Load()
	ids, err := task.EnqueueMany(ctx, make([]int, 5000))
	if err != nil {
		t.Fatal(err)
	}
	if trips := hook.trips.Load() - before; trips != 1 {
		t.Fatalf("EnqueueMany of 5000 took %d round trips, want 1", trips)
	}
	seen := map[rediq.TaskID]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	if len(ids) != 5000 || len(seen) != 5000 {
		t.Fatalf("%d ids, %d distinct", len(ids), len(seen))
	}
	if n := pendingCount(t, app); n != 5001 {
		t.Fatalf("%d pending, want 5001", n)
	}
	// A client passed in is the caller's: Close leaves it open.
	if err := app.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("the caller's client was closed: %v", err)
	}
}

func TestRedisURL(t *testing.T) { // not parallel: it sets the environment
	t.Setenv("REDIQ_REDIS_URL", "redis://127.0.0.1:7001/3")
	opts := func(cfg rediq.Config) *redis.Options {
		app, err := rediq.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer app.Close()
		return app.Redis().(*redis.Client).Options()
	}
	if o := opts(rediq.Config{}); o.Addr != "127.0.0.1:7001" || o.DB != 3 {
		t.Errorf("from $REDIQ_REDIS_URL: %s db %d", o.Addr, o.DB)
	}
	o := opts(rediq.Config{RedisURL: "rediss://alice:s3cret@cache.internal:6380/2"})
	if o.Addr != "cache.internal:6380" || o.Username != "alice" || o.Password != "s3cret" || o.DB != 2 || o.TLSConfig == nil {
		t.Errorf("rediss URL parsed as %s user %q db %d tls %v", o.Addr, o.Username, o.DB, o.TLSConfig != nil)
	}
	t.Setenv("REDIQ_REDIS_URL", "")
	if o := opts(rediq.Config{}); o.Addr != "127.0.0.1:6379" || o.DB != 0 {
		t.Errorf("default: %s db %d", o.Addr, o.DB)
	}
	if _, err := rediq.New(rediq.Config{RedisURL: "http://nope"}); err == nil {
		t.Error("an http:// URL was accepted")
	}
}

func TestRedisURLForms(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		url, want string
	}{
		{"redis+cluster://127.0.0.1:7000?addr=127.0.0.1:7001", "*redis.ClusterClient"},
		{"redis+sentinel://127.0.0.1:26379?master_name=mymaster", "*redis.Client"},
	} {
		app, err := rediq.New(rediq.Config{RedisURL: c.url})
		if err != nil {
			t.Fatalf("%s: %v", c.url, err)
		}
		if got := fmt.Sprintf("%T", app.Redis()); got != c.want {
			t.Errorf("%s: %s, want %s", c.url, got, c.want)
		}
		app.Close()
	}
}

// A URL that cannot be used is not repeated in the error: it may hold a password.
func TestRedisURLErrorHidesPassword(t *testing.T) {
	t.Parallel()
	for _, url := range []string{"redis://u:hunter2@h:port", "redis://u:hunter2@h?master_name=x", "http://u:hunter2@h"} {
		_, err := rediq.New(rediq.Config{RedisURL: url})
		if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.HasPrefix(err.Error(), "rediq: redis URL: ") {
			t.Errorf("%s: error %v; want one that starts \"rediq: redis URL: \" and hides the password", url, err)
		}
	}
}

func TestNamespaceFromEnvironment(t *testing.T) { // not parallel: it sets the environment
	t.Setenv("REDIQ_NAMESPACE", "fromenv")
	for _, c := range []struct {
		cfg  rediq.Config
		want string
	}{
		{rediq.Config{RedisURL: testredis.URL()}, "fromenv"},
		{rediq.Config{RedisURL: testredis.URL(), Namespace: "mine"}, "mine"},
		{rediq.Config{Redis: testredis.Client(t)}, "fromenv"},
	} {
		app, err := rediq.New(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := app.Namespace(); got != c.want {
			t.Errorf("Namespace %q: got %q, want %q", c.cfg.Namespace, got, c.want)
		}
		app.Close()
	}
	t.Setenv("REDIQ_NAMESPACE", "a:b")
	if _, err := rediq.New(rediq.Config{RedisURL: testredis.URL()}); err == nil || !strings.Contains(err.Error(), "namespace") {
		t.Errorf("a bad $REDIQ_NAMESPACE: %v, want a namespace error", err)
	}
}

func TestTLSFiles(t *testing.T) {
	t.Parallel()
	s := testredis.StartTLS(t)
	app, err := rediq.New(rediq.Config{RedisURL: "rediss://" + s.Addr, Namespace: testredis.Namespace(t),
		TLSCAFile: s.CAFile, TLSCertFile: s.CertFile, TLSKeyFile: s.KeyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	task := rediq.Register(app, "t", func(context.Context, int) (int, error) { return 0, nil })
	if _, err := task.Enqueue(context.Background(), 1); err != nil {
		t.Fatalf("enqueue over TLS: %v", err)
	}
	if _, err := rediq.New(rediq.Config{RedisURL: "redis://" + s.Addr, TLSCAFile: s.CAFile}); err == nil ||
		!strings.Contains(err.Error(), "use rediss://") {
		t.Errorf("TLS files with redis://: %v, want an error", err)
	}
}

func TestTLSFilesFromEnvironment(t *testing.T) { // not parallel: it sets the environment
	s := testredis.StartTLS(t)
	t.Setenv("REDIQ_TLS_CA_FILE", s.CAFile)
	t.Setenv("REDIQ_TLS_CERT_FILE", s.CertFile)
	t.Setenv("REDIQ_TLS_KEY_FILE", s.KeyFile)
	app, err := rediq.New(rediq.Config{RedisURL: "rediss://" + s.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	if err := app.Redis().Ping(context.Background()).Err(); err != nil {
		t.Fatalf("ping over TLS with the environment's files: %v", err)
	}
	// A field set in Config wins over its variable.
	app2, err := rediq.New(rediq.Config{RedisURL: "rediss://" + s.Addr, TLSCAFile: s.OtherCAFile})
	if err != nil {
		t.Fatal(err)
	}
	defer app2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := app2.Redis().Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("ping with Config.TLSCAFile naming another CA: %v, want unknown authority", err)
	}
}

func TestRunInExecutorIsBounded(t *testing.T) {
	t.Parallel()
	app, _ := newApp(t)
	var now, peak atomic.Int64
	var wg sync.WaitGroup
	task := rediq.Register(app, "heavy", func(ctx context.Context, _ int) (int, error) {
		defer wg.Done()
		return rediq.RunInExecutor(ctx, func() (int, error) {
			n := now.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(20 * time.Millisecond) // hold the executor slot so that overlap shows
			now.Add(-1)
			return 1, nil
		})
	})
	wg.Add(12)
	if _, err := task.EnqueueMany(context.Background(), make([]int, 12)); err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(app, worker.Config{Concurrency: 12, ExecutorPoolSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	wg.Wait()
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if p := peak.Load(); p > 2 || p < 1 {
		t.Fatalf("peak executor concurrency %d, want 1..2", p)
	}
	// Outside a worker it runs inline.
	if v, err := rediq.RunInExecutor(context.Background(), func() (string, error) { return "inline", nil }); v != "inline" || err != nil {
		t.Fatalf("inline = %q, %v", v, err)
	}
}

func TestLoggerCarriesTaskFields(t *testing.T) {
	t.Parallel()
	app, _ := newApp(t)
	core, logs := observer.New(zap.InfoLevel)
	ids := make(chan rediq.TaskID, 1)
	task := rediq.Register(app, "logs", func(ctx context.Context, _ int) (int, error) {
		rediq.Logger(ctx).Info("hello from the handler")
		info, _ := rediq.CurrentTask(ctx)
		ids <- info.ID
		return 0, nil
	})
	if _, err := task.Enqueue(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(app, worker.Config{Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	id := <-ids
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	entries := logs.FilterMessage("hello from the handler").All()
	if len(entries) != 1 {
		t.Fatalf("%d log entries", len(entries))
	}
	f := entries[0].ContextMap()
	if f["task_id"] != string(id) || f["task"] != "logs" || f["queue"] != "default" || f["worker"] == nil {
		t.Fatalf("log fields %v", f)
	}
	if rediq.Logger(context.Background()) == nil {
		t.Fatal("Logger outside a task is nil")
	}
}

// Concurrent single enqueues are combined into shared round trips; every one
// must still land exactly once and return its own id.
func TestConcurrentEnqueuesAllLand(t *testing.T) {
	t.Parallel()
	app, _ := newApp(t)
	task := rediq.Register(app, "many", func(context.Context, int) (int, error) { return 0, nil })
	const producers, each = 64, 200
	ids := make(chan rediq.TaskID, producers*each)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id, err := task.Enqueue(context.Background(), p*each+i)
				if err != nil {
					t.Error(err)
					return
				}
				ids <- id
			}
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[rediq.TaskID]bool{}
	for id := range ids {
		if seen[id] {
			t.Fatalf("id %s returned twice", id)
		}
		seen[id] = true
	}
	if n := pendingCount(t, app); len(seen) != producers*each || n != producers*each {
		t.Fatalf("%d ids, %d pending; want %d", len(seen), n, producers*each)
	}
}

// pendingCount is how many tasks wait in the default queue.
func pendingCount(t *testing.T, app *rediq.App) int64 {
	t.Helper()
	st, err := app.QueueStats(context.Background(), rediq.DefaultQueue)
	if err != nil {
		t.Fatal(err)
	}
	return st[0].Pending
}
