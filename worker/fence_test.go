package worker_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// fenceMessage is what the worker logs when its lease runs out unrenewed.
const fenceMessage = "could not renew the lease in time: starting nothing and cancelling running tasks until Redis answers"

// proxiedApp is an App on e's namespace whose client goes through a proxy of
// its own, with query appended to the proxy's URL.
func proxiedApp(t *testing.T, e *env, query string) (*rediq.App, *testredis.Proxy) {
	t.Helper()
	proxy := testredis.NewProxy(t, strings.TrimPrefix(testredis.URL(), "redis://"))
	app, err := rediq.New(rediq.Config{RedisURL: proxy.URL() + query, Namespace: e.ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	return app, proxy
}

// The fence cancels a running handler when the worker's lease runs out, even
// while a heartbeat hangs on a connection that stopped answering. It used to
// be checked between heartbeats only, so it waited for the heartbeat's read
// timeout (2s here) while the lease (900ms) was long gone.
func TestFenceActsWhileAHeartbeatHangs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	app, proxy := proxiedApp(t, e, "?read_timeout=5s")
	const ttl = 900 * time.Millisecond
	type cancellation struct {
		at    time.Time
		cause error
	}
	var runs atomic.Int32
	started := make(chan struct{})
	cancelled := make(chan cancellation, 1)
	rediq.Register(app, "long", func(ctx context.Context, _ int) (int, error) {
		if runs.Add(1) > 1 {
			return 0, nil // run again once Redis answers
		}
		close(started)
		select {
		case <-ctx.Done():
			cancelled <- cancellation{time.Now(), context.Cause(ctx)}
			return 0, ctx.Err()
		case <-time.After(10 * time.Second):
			return 0, errors.New("never cancelled")
		}
	})
	producer := rediq.Register(e.app, "long", func(context.Context, int) (int, error) { return 0, nil })
	e.start(app, worker.Config{LeaseTTL: ttl, ShutdownTimeout: 5 * time.Second})
	t.Cleanup(func() { proxy.Blackhole(false) }) // before the worker stops
	if _, err := producer.Enqueue(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the handler did not start")
	}

	began := time.Now()
	proxy.Blackhole(true)
	select {
	case c := <-cancelled:
		took := c.at.Sub(began)
		t.Logf("cancelled %s after the black hole began (lease TTL %s): %v", took.Round(time.Millisecond), ttl, c.cause)
		if took >= 2*ttl {
			t.Errorf("the handler was cancelled %s after Redis stopped answering; want within the lease (%s), not after the heartbeat's read timeout", took, ttl)
		}
		if c.cause == nil || !strings.Contains(c.cause.Error(), "could not renew its lease") {
			t.Errorf("cancelled by %v; want the fence", c.cause)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler was not cancelled within 5s of Redis going silent")
	}
	proxy.Blackhole(false)

	// Once Redis answers again, the task runs again and nothing stays leased.
	testredis.WaitFor(t, 10*time.Second, "the task to run again", func() bool { return runs.Load() >= 2 })
	testredis.WaitFor(t, 5*time.Second, "nothing left leased", func() bool { return e.active("default") == 0 })
}

// A handler that starts just after the fence fired (its BeforeTaskStart hook
// ran past the lease while Redis refused connections) is cancelled at once: it
// used to miss the fence, which had cancelled only what was running, and run
// with no lease beside the worker that may take its task over.
func TestHandlerStartingAfterTheFenceIsCancelled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	app, proxy := proxiedApp(t, e, "")
	const ttl = 600 * time.Millisecond
	logs, records := observer.New(zap.InfoLevel)
	var faulted atomic.Bool
	app.On(rediq.BeforeTaskStart, func(context.Context) error {
		if !faulted.CompareAndSwap(false, true) {
			return nil
		}
		// Redis goes away while this hook runs, until the fence has fired.
		proxy.Refuse(true)
		proxy.CutAll()
		deadline := time.Now().Add(10 * time.Second)
		for records.FilterMessage(fenceMessage).Len() == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	})
	var runs atomic.Int32
	result := make(chan error, 1)
	rediq.Register(app, "x", func(ctx context.Context, _ int) (int, error) {
		if runs.Add(1) > 1 {
			return 0, nil // run again once Redis answers
		}
		select {
		case <-ctx.Done():
			result <- context.Cause(ctx)
			return 0, ctx.Err()
		case <-time.After(2 * time.Second):
			result <- nil
			return 0, nil
		}
	})
	producer := rediq.Register(e.app, "x", func(context.Context, int) (int, error) { return 0, nil })
	e.start(app, worker.Config{LeaseTTL: ttl, ShutdownTimeout: 5 * time.Second, Logger: zap.New(logs)})
	t.Cleanup(func() { proxy.Refuse(false) }) // before the worker stops
	if _, err := producer.Enqueue(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	select {
	case cause := <-result:
		if records.FilterMessage(fenceMessage).Len() == 0 {
			t.Fatal("the fence never fired: the fault did not happen")
		}
		if cause == nil {
			t.Fatal("the handler started after the fence and ran 2s, never cancelled, with no lease")
		}
		if !strings.Contains(cause.Error(), "could not renew its lease") {
			t.Fatalf("cancelled by %v; want the fence", cause)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the handler never ran")
	}
	proxy.Refuse(false)

	testredis.WaitFor(t, 10*time.Second, "the task to run again", func() bool { return runs.Load() >= 2 })
	testredis.WaitFor(t, 5*time.Second, "nothing left leased", func() bool { return e.active("default") == 0 })
}
