package worker

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rediq/rediq/internal/broker"
)

// leaseClock is the worker's own view of its lease: the lease runs until
// LeaseTTL after the last heartbeat that succeeded was *sent* (Redis set the
// deadline later than that, so this view is never behind Redis's). Past it the
// worker may already have been reclaimed, so it starts nothing, cancels what
// runs and sends no outcome decided past it until a renewal shows the session
// still holds its leases: a frozen or cut-off worker never runs a task beside
// the one that took it over. valid is lock-free: every handler's context asks
// it (see leaseContext).
type leaseClock struct {
	now     func() time.Time
	real    bool         // now is time.Now: time.Since(base) reads one clock, not two
	base    time.Time    // the clock's origin (monotonic): until is kept from it
	until   atomic.Int64 // ns after base
	mu      sync.Mutex
	renewed chan struct{} // closed and replaced at each renewal
}

func (l *leaseClock) init(now func() time.Time, real bool) {
	l.now, l.real = now, real
	l.base = now()
	l.renewed = make(chan struct{})
}

func (l *leaseClock) renew(sent time.Time, ttl time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// A tenth early: cancelling handlers takes a moment, and they should be
	// stopped before another worker may take their tasks.
	if u := int64(sent.Add(ttl - ttl/10).Sub(l.base)); u > l.until.Load() {
		l.until.Store(u)
	}
	close(l.renewed)
	l.renewed = make(chan struct{})
}

func (l *leaseClock) valid() bool { return l.left() > 0 }

// left is how long the lease has to run (<= 0: expired).
func (l *leaseClock) left() time.Duration {
	if l.real {
		return time.Duration(l.until.Load() - int64(time.Since(l.base)))
	}
	return time.Duration(l.until.Load() - int64(l.now().Sub(l.base)))
}

// changed is closed at the next renewal.
func (l *leaseClock) changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.renewed
}

// leaseContext is a handler's context. Besides the fencer's timer, which
// cancels every handler when the lease clock runs out, Done and Err look at
// the clock themselves and cancel the handler at once if it ran out: after a
// freeze (SIGSTOP, a paused VM) the goroutines resume in any order, and a
// handler whose own timer fired during the freeze may resume before the
// fencer; the first time it consults its context it finds it cancelled, so a
// handler that checks its context before acting never acts past the lease.
//
// It is also the handler's timeout, as context.WithTimeout would be, without
// a timer and a context per attempt: Deadline answers it, and once its slot's
// timer cancelled the context with cause DeadlineExceeded, Err answers
// DeadlineExceeded. So do the contexts derived from it: Done is a channel of
// its own (made when first asked for, closed when the context ends), so the
// context package does not take it for the cancelCtx inside, and derives
// through AfterFunc, which hands a child this context's Err and Cause.
type leaseContext struct {
	context.Context
	lease    *leaseClock
	cancel   context.CancelCauseFunc // cancels the handler's context with a cause
	deadline time.Time
	mu       sync.Mutex
	done     chan struct{}
}

func (c *leaseContext) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *leaseContext) check() {
	if !c.lease.valid() {
		c.cancel(errFenced)
	}
}

func (c *leaseContext) Done() <-chan struct{} {
	c.check()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		done := make(chan struct{})
		c.done = done
		context.AfterFunc(c.Context, func() { close(done) })
	}
	return c.done
}

func (c *leaseContext) Err() error {
	c.check()
	err := c.Context.Err()
	if err != nil && context.Cause(c.Context) == context.DeadlineExceeded {
		return context.DeadlineExceeded
	}
	return err
}

// AfterFunc makes a context derived from c end as c does (the context
// package's afterFuncer).
func (c *leaseContext) AfterFunc(f func()) (stop func() bool) {
	return context.AfterFunc(c.Context, f)
}

// awaitLease holds an outcome of j decided while the worker's lease clock had
// run out (its handler returned past it, after a freeze or while cut off from
// Redis): the task may have been taken over, so the outcome may not be sent
// until a renewal shows the session still holds its lease on j's queue. It
// reports whether to send it; if not, j is dropped (its lease was lost: the
// task runs elsewhere) or, when the worker stops first, given back unrun (a
// no-op if the lease is gone).
func (w *Worker) awaitLease(j *job) bool {
	for {
		if j.gen.lost.Load() {
			w.release(j)
			return false
		}
		if w.lease.valid() {
			return true
		}
		select {
		case <-w.lease.changed():
		case <-j.gen.lostCh:
		case <-w.pool.abort:
			w.settle(j, broker.Requeue, nil, 0)
			return false
		}
	}
}
