package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is a retry loop's pacing: the n-th pause (from 0) is First·2^n,
// capped at Max, jittered over its upper half (0.5x–1x) so that many loops
// that failed together do not retry in step.
type Policy struct {
	First, Max time.Duration
}

// Delay is the pause before retry n (0 for the first retry).
func (p Policy) Delay(n int) time.Duration {
	d := p.Max
	if n < 30 && p.First<<n > 0 {
		d = min(p.First<<n, p.Max)
	}
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// Retrier counts a loop's failures in a row and paces its retries.
// The zero value is not usable: give it a Policy.
type Retrier struct {
	Policy
	failures int
}

// Failures is how many failures in a row came since the last Reset.
func (r *Retrier) Failures() int { return r.failures }

// Reset forgets the failures: the work succeeded.
func (r *Retrier) Reset() { r.failures = 0 }

// Next counts a failure and returns the pause before its retry.
func (r *Retrier) Next() time.Duration {
	d := r.Delay(r.failures)
	r.failures++
	return d
}

// Pause counts a failure and sleeps its pause. It returns false, early, when
// ctx ends or stop (which may be nil) is closed or receives; wake (which may be
// nil) ends the pause early but returns true.
func (r *Retrier) Pause(ctx context.Context, stop, wake <-chan struct{}) bool {
	t := time.NewTimer(r.Next())
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-wake:
		return true
	case <-stop:
		return false
	case <-ctx.Done():
		return false
	}
}

// Retry calls f until it returns nil or an error retryable says is final
// (retryable nil: every error is retried), pausing per p between calls. It
// returns f's last error, or ctx's cause if ctx ends first.
func Retry(ctx context.Context, p Policy, retryable func(error) bool, f func(context.Context) error) error {
	r := Retrier{Policy: p}
	for {
		err := f(ctx)
		if err == nil || (retryable != nil && !retryable(err)) {
			return err
		}
		if !r.Pause(ctx, nil, nil) {
			return context.Cause(ctx)
		}
	}
}
