package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPolicyDelay(t *testing.T) {
	t.Parallel()
	p := Policy{First: 10 * time.Millisecond, Max: time.Second}
	cases := []struct {
		n        int
		min, max time.Duration
	}{
		{0, 5 * time.Millisecond, 10 * time.Millisecond},
		{3, 40 * time.Millisecond, 80 * time.Millisecond},
		{7, 500 * time.Millisecond, time.Second},
		{64, 500 * time.Millisecond, time.Second},
	}
	for _, c := range cases {
		for range 100 {
			if d := p.Delay(c.n); d < c.min || d > c.max {
				t.Fatalf("Delay(%d) = %v, want within [%v, %v]", c.n, d, c.min, c.max)
			}
		}
	}
}

func TestRetrierCountsAndResets(t *testing.T) {
	t.Parallel()
	r := Retrier{Policy: Policy{First: time.Millisecond, Max: 4 * time.Millisecond}}
	for range 3 {
		r.Next()
	}
	if r.Failures() != 3 {
		t.Fatalf("Failures = %d after 3, want 3", r.Failures())
	}
	r.Reset()
	if r.Failures() != 0 {
		t.Fatalf("Failures = %d after Reset", r.Failures())
	}
}

func TestRetrierPauseEndsOnStopAndWake(t *testing.T) {
	t.Parallel()
	r := Retrier{Policy: Policy{First: time.Hour, Max: time.Hour}}
	stop, wake := make(chan struct{}), make(chan struct{}, 1)
	wake <- struct{}{}
	if !r.Pause(context.Background(), stop, wake) {
		t.Fatal("Pause woken early returned false, want true")
	}
	close(stop)
	if r.Pause(context.Background(), stop, nil) {
		t.Fatal("Pause stopped returned true, want false")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r.Pause(ctx, nil, nil) {
		t.Fatal("Pause with ctx done returned true, want false")
	}
}

func TestRetryStopsOnSuccessFinalErrorOrCtx(t *testing.T) {
	t.Parallel()
	p := Policy{First: time.Millisecond, Max: 2 * time.Millisecond}
	calls := 0
	err := Retry(context.Background(), p, nil, func(context.Context) error {
		if calls++; calls < 3 {
			return errors.New("flaky")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Retry = %v after %d calls, want nil after 3", err, calls)
	}
	final := errors.New("final")
	calls = 0
	err = Retry(context.Background(), p, func(e error) bool { return e != final }, func(context.Context) error {
		calls++
		return final
	})
	if !errors.Is(err, final) || calls != 1 {
		t.Fatalf("Retry = %v after %d calls, want final after 1", err, calls)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err = Retry(ctx, p, nil, func(context.Context) error { return errors.New("down") })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Retry with ctx ending = %v, want DeadlineExceeded", err)
	}
}
