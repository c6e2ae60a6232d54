// The slot's timeout timer (armLocked, timedOut, stopTimer) through the orders
// a runner can produce, a firing that waits on sl.mu while the next attempt
// starts included: every attempt ends with DeadlineExceeded, never before its
// timeout (found sound by a review of 6725b95; kept as a guard).
package worker

import (
	"context"
	"testing"
	"time"

	"github.com/rediq/rediq/internal/testredis"
)

// start is execute's part: an attempt of timeout d begins in sl.
func (sl *slot) timerTestStart(d time.Duration) (context.Context, time.Time) {
	ctx, cancel := context.WithCancelCause(context.Background())
	now := time.Now()
	sl.mu.Lock()
	sl.cancel, sl.timesOut = cancel, now.Add(d)
	if d > 0 {
		sl.armLocked(d, sl.timesOut)
	}
	sl.mu.Unlock()
	return ctx, now
}

func (sl *slot) timerTestEnd() {
	sl.mu.Lock()
	sl.cancel = nil
	sl.mu.Unlock()
}

func timerTestWait(t *testing.T, what string, ctx context.Context, from time.Time, want time.Duration) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(want + 2*time.Second):
		t.Fatalf("%s: never timed out (want %v)", what, want)
	}
	got := time.Since(from)
	if context.Cause(ctx) != context.DeadlineExceeded || got < want {
		t.Fatalf("%s: ended after %v with %v; want DeadlineExceeded after %v", what, got, context.Cause(ctx), want)
	}
}

func TestSlotTimerOrders(t *testing.T) {
	t.Parallel()
	sl := &slot{}
	defer sl.stopTimer()
	// A long attempt, then a short one.
	_, _ = sl.timerTestStart(time.Minute)
	sl.timerTestEnd()
	ctx, at := sl.timerTestStart(80 * time.Millisecond)
	timerTestWait(t, "short after long", ctx, at, 80*time.Millisecond)
	sl.timerTestEnd()
	// A short attempt that ends at once, then a longer one: the timer fires
	// for the first while the second runs, and must set itself for the rest.
	_, _ = sl.timerTestStart(30 * time.Millisecond)
	sl.timerTestEnd()
	ctx, at = sl.timerTestStart(200 * time.Millisecond)
	timerTestWait(t, "long after short", ctx, at, 200*time.Millisecond)
	sl.timerTestEnd()
	// The timer fires while the slot is idle; the next attempt arms it again.
	_, _ = sl.timerTestStart(20 * time.Millisecond)
	sl.timerTestEnd()
	testredis.WaitFor(t, 5*time.Second, "the timer to fire on the idle slot", func() bool {
		sl.mu.Lock()
		defer sl.mu.Unlock()
		return sl.timerAt.IsZero() // timedOut clears it
	})
	ctx, at = sl.timerTestStart(100 * time.Millisecond)
	timerTestWait(t, "after an idle firing", ctx, at, 100*time.Millisecond)
	sl.timerTestEnd()
	// The firing for a finished attempt waits on sl.mu while the next starts.
	_, _ = sl.timerTestStart(20 * time.Millisecond)
	sl.mu.Lock()
	sl.cancel = nil
	time.Sleep(60 * time.Millisecond) // it fired, timedOut waits for the lock
	c2, cancel2 := context.WithCancelCause(context.Background())
	at = time.Now()
	sl.cancel, sl.timesOut = cancel2, at.Add(150*time.Millisecond)
	sl.armLocked(150*time.Millisecond, sl.timesOut)
	sl.mu.Unlock()
	timerTestWait(t, "next attempt behind a waiting firing", c2, at, 150*time.Millisecond)
	sl.timerTestEnd()
	// A timeout of 0 arms nothing (execute cancels at once); a later attempt
	// still times out.
	_, _ = sl.timerTestStart(0)
	sl.timerTestEnd()
	ctx, at = sl.timerTestStart(50 * time.Millisecond)
	timerTestWait(t, "after a zero timeout", ctx, at, 50*time.Millisecond)
	sl.timerTestEnd()
	// An attempt that must not be cut short by the previous attempt's timer.
	_, _ = sl.timerTestStart(40 * time.Millisecond)
	sl.timerTestEnd()
	ctx, at = sl.timerTestStart(300 * time.Millisecond)
	time.Sleep(150 * time.Millisecond)
	if ctx.Err() != nil {
		t.Fatalf("an attempt of 300ms ended after %v: %v", time.Since(at), context.Cause(ctx))
	}
	timerTestWait(t, "not cut short", ctx, at, 300*time.Millisecond)
}
