package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/worker"
)

// The handler's timeout is its runner's timer, not a context.WithTimeout per
// attempt; contexts the handler derives (a call's own timeout, errgroup,
// http.Client) must still end with DeadlineExceeded when it fires, as they
// did with context.WithTimeout (a review found they ended with Canceled).
func TestDerivedContextSeesDeadlineExceeded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	type seen struct{ own, derived, value error }
	rec := newRecorder[seen]()
	task := rediq.Register(e.app, "slow", func(ctx context.Context, _ int) (int, error) {
		sub, cancel := context.WithTimeout(ctx, time.Minute) // a call's own, longer timeout
		defer cancel()
		type key struct{}
		val := context.WithValue(ctx, key{}, 1)
		<-sub.Done()
		rec.add(seen{own: ctx.Err(), derived: sub.Err(), value: val.Err()})
		return 0, sub.Err()
	}, rediq.Timeout(50*time.Millisecond), rediq.Retries(0))
	if _, err := task.Enqueue(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	_, stop := e.start(e.app, worker.Config{Concurrency: 1})
	defer stop()
	got := rec.wait(t, 1, 10*time.Second)[0]
	if !errors.Is(got.own, context.DeadlineExceeded) {
		t.Fatalf("handler's context: %v, want DeadlineExceeded", got.own)
	}
	if !errors.Is(got.value, context.DeadlineExceeded) {
		t.Fatalf("WithValue of it: %v, want DeadlineExceeded", got.value)
	}
	if !errors.Is(got.derived, context.DeadlineExceeded) {
		t.Fatalf("a context derived with WithTimeout(ctx, 1m) ended by the handler's 50ms timeout: Err() = %v, want DeadlineExceeded (as context.WithTimeout gave)", got.derived)
	}
}

// A runner's timer, set again per attempt, never ends a
// later attempt early: short attempts whose handlers return right at their
// 3ms timeout (the timer firing as the next attempt starts) alternate on
// two runners with long-timeout attempts, none of which may see its context
// end.
func TestStaleTimerNeverEndsALaterAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	longs := newRecorder[error]()
	shorts := newRecorder[struct{}]()
	short := rediq.Register(e.app, "short", func(ctx context.Context, i int) (int, error) {
		time.Sleep(time.Duration(2500+i%7*100) * time.Microsecond)
		shorts.add(struct{}{})
		return 0, nil
	}, rediq.Timeout(3*time.Millisecond), rediq.Retries(0))
	long := rediq.Register(e.app, "long", func(ctx context.Context, _ int) (int, error) {
		select {
		case <-ctx.Done():
			longs.add(context.Cause(ctx))
		case <-time.After(8 * time.Millisecond):
			longs.add(nil)
		}
		return 0, nil
	}, rediq.Timeout(10*time.Second), rediq.Retries(0))
	ctx := context.Background()
	const n = 150
	for i := range n {
		if _, err := short.Enqueue(ctx, i); err != nil {
			t.Fatal(err)
		}
		if _, err := long.Enqueue(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	_, stop := e.start(e.app, worker.Config{Concurrency: 2})
	defer stop()
	for _, err := range longs.wait(t, n, 60*time.Second) {
		if err != nil {
			t.Fatalf("a long attempt's context ended early: %v", err)
		}
	}
	shorts.wait(t, 1, time.Second)
}

// A runner's timer is left set when an attempt ends and set again only for
// an attempt due earlier: an attempt after one with a longer timeout, and one
// after a shorter one whose timer fires while it runs, must each still time
// out on time.
func TestTimerLeftSetStillTimesOutLaterAttempts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	type seen struct {
		name   string
		waited time.Duration
		err    error
	}
	rec := newRecorder[seen]()
	quick := func(timeout time.Duration) *rediq.Task[string, int] {
		return rediq.Register(e.app, "quick"+timeout.String(), func(context.Context, string) (int, error) {
			return 0, nil
		}, rediq.Timeout(timeout), rediq.Retries(0))
	}
	long, short := quick(time.Minute), quick(20*time.Millisecond)
	blocked := rediq.Register(e.app, "blocked", func(ctx context.Context, name string) (int, error) {
		start := time.Now()
		<-ctx.Done()
		rec.add(seen{name: name, waited: time.Since(start), err: ctx.Err()})
		return 0, ctx.Err()
	}, rediq.Timeout(150*time.Millisecond), rediq.Retries(0))
	ctx := context.Background()
	for _, step := range []struct {
		t    *rediq.Task[string, int]
		name string
	}{{long, "-"}, {blocked, "after a longer timeout"}, {short, "-"}, {blocked, "after a shorter timeout"}} {
		if _, err := step.t.Enqueue(ctx, step.name); err != nil {
			t.Fatal(err)
		}
	}
	_, stop := e.start(e.app, worker.Config{Concurrency: 1})
	defer stop()
	for _, got := range rec.wait(t, 2, 10*time.Second) {
		if !errors.Is(got.err, context.DeadlineExceeded) || got.waited < 100*time.Millisecond || got.waited > 2*time.Second {
			t.Errorf("attempt %s: ended after %v with %v; want DeadlineExceeded after about 150ms", got.name, got.waited, got.err)
		}
	}
}
