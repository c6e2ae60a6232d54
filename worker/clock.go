package worker

import "time"

// clock is the worker's time. Its services read the time and set their
// timers through it, so that a test can run the worker on a clock of its own:
// today Config.now skews Now (a machine whose clock is off); a clock that
// also drives the timers makes leases, expiry and backoff testable without
// sleeping.
type clock interface {
	Now() time.Time
	NewTimer(d time.Duration) timer
	NewTicker(d time.Duration) ticker
	After(d time.Duration) <-chan time.Time
}

// timer is what the services use of a *time.Timer.
type timer interface {
	C() <-chan time.Time
	Stop() bool
	Reset(d time.Duration) bool
}

// ticker is what the services use of a *time.Ticker.
type ticker interface {
	C() <-chan time.Time
	Stop()
}

// realClock is the default clock: now (Config.now, time.Now unless a test
// skews it) for the time, the runtime's timers for the waits — a skew moves
// the time read, not the length of a wait.
type realClock struct{ now func() time.Time }

func (c realClock) Now() time.Time                       { return c.now() }
func (realClock) NewTimer(d time.Duration) timer         { return realTimer{time.NewTimer(d)} }
func (realClock) NewTicker(d time.Duration) ticker       { return realTicker{time.NewTicker(d)} }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time        { return t.t.C }
func (t realTimer) Stop() bool                 { return t.t.Stop() }
func (t realTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }

type realTicker struct{ t *time.Ticker }

func (t realTicker) C() <-chan time.Time { return t.t.C }
func (t realTicker) Stop()               { t.t.Stop() }

// stoppedTimer is a timer that has not been set: Reset arms it.
func stoppedTimer(c clock) timer {
	t := c.NewTimer(time.Hour)
	t.Stop()
	return t
}
