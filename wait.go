package rediq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rediq/rediq/internal/backoff"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
)

// RunRetention is the retention Run gives its task when the task has none
// longer: long enough for Run to read the result, short enough to cost nothing.
const RunRetention = time.Minute

// Wait waits for the task with the id to finish and returns its result,
// within a few ms of the worker settling it: the worker publishes the end of
// every task with a retention, and Wait listens on one shared subscription per
// App (no polling). Errors:
//
//   - a task that died: a *TaskFailedError (its id, retries and last error);
//   - cancelled, expired: errors matching ErrCancelled, ErrExpired;
//   - enqueued without Retention (and not finished with one): an error matching
//     ErrNotRetained at once — its result is gone the moment it finishes;
//   - unknown, or its retention over: ErrTaskNotFound;
//   - the id of a task of another name: a *WrongTaskError matching
//     ErrWrongTask, at once (another task's result is never decoded as this
//     one's);
//   - ctx ending first: ctx's error (matching it with errors.Is; if Redis
//     could not be reached meanwhile, the error says why).
//
// A cut connection, a failover or a Redis that is away for a while does not end
// Wait: it subscribes and looks again, pausing between tries (from 10 ms,
// doubling to 1 s), until ctx ends — give ctx a deadline to bound it. Errors
// that Redis answers (a refused command, a wrong password) end it at once.
func (t *Task[A, R]) Wait(ctx context.Context, id TaskID) (R, error) {
	var zero R
	raw, err := t.app.wait(ctx, id, t.def.Name)
	if err != nil {
		return zero, err
	}
	var r R
	if len(raw) > 0 {
		if err := decodeArgs(raw, &r); err != nil {
			return zero, fmt.Errorf("rediq: decode the result of task %q: %w", id, err)
		}
	}
	return r, nil
}

// Run enqueues the task and waits for its result: a remote call, from any
// process, to whichever worker takes it. The task gets a retention of at least RunRetention so that its
// result can be read. For a task registered with Memoize, a result cached
// within its ttl is returned without enqueueing, and if the same arguments are
// running already (from any process) Run waits for that run instead of
// starting another. An error matching ErrOutcomeUnknown means the enqueue's
// fate is unknown; the others are Wait's.
func (t *Task[A, R]) Run(ctx context.Context, args A, opts ...EnqueueOption) (R, error) {
	var zero R
	opts = append(opts, enqueueOnly(func(o *enqueueOptions) {
		o.retention = max(o.retention, RunRetention)
		o.memoRun = o.memo > 0
	}))
	for {
		id, err := t.Enqueue(ctx, args, opts...)
		var dup *DuplicateError
		switch {
		case errors.Is(err, errMemoized):
			r, found, err := t.memoized(ctx, args)
			if err != nil || found {
				return r, err
			}
			continue // the cached result expired meanwhile: enqueue again
		case errors.As(err, &dup) && dup.Unique && t.def.Memo > 0:
			id = dup.ExistingID // the same arguments are running: share that run
		case err != nil:
			return zero, err
		}
		r, err := t.Wait(ctx, id)
		if errors.Is(err, ErrTaskNotFound) && t.def.Memo > 0 && dup != nil {
			continue // the shared run ended and its record went first: try again
		}
		return r, err
	}
}

// memoized reads the cached result of a Memoize task for args.
func (t *Task[A, R]) memoized(ctx context.Context, args A) (R, bool, error) {
	var zero R
	e := encoders.Get().(*argsEncoder)
	e.buf.Reset()
	err := e.enc.Encode(args)
	digest := lockDigest(t.def.Name, "a", e.buf.Bytes())
	encoders.Put(e)
	if err != nil {
		return zero, false, &EncodeError{Task: t.def.Name, Err: err}
	}
	b := t.app.core.Broker()
	q := b.Queue(t.def.Queue)
	raw, found, err := b.Memoized(ctx, q, digest)
	switch {
	case err != nil:
		return zero, false, fmt.Errorf("rediq: read the memoized result of %q: %w", t.def.Name, err)
	case !found:
		return zero, false, nil
	}
	var r R
	if err := decodeArgs(raw, &r); err != nil {
		return zero, false, fmt.Errorf("rediq: decode the memoized result of %q: %w", t.def.Name, err)
	}
	return r, true, nil
}

// wait returns the raw result of the task id, a task named name, once it has
// finished. Connection errors are retried until ctx ends (see Wait).
func (a *App) wait(ctx context.Context, id TaskID, name string) ([]byte, error) {
	r := newRetrier()
	rec, err := a.find(ctx, id, nil)
	for err != nil {
		if err = r.pause(ctx, err, nil); err != nil {
			return nil, err
		}
		rec, err = a.find(ctx, id, nil)
	}
	if err := sameTask(id, name, rec); err != nil {
		return nil, err
	}
	if raw, done, err := a.outcome(id, rec); done {
		return raw, err
	}
	if rec.Meta.Retention <= 0 {
		return nil, fmt.Errorf("%w: task %q was enqueued without rediq.Retention, so nothing of it is kept when it finishes: nothing to wait for",
			ErrNotRetained, id)
	}
	q := a.core.Broker().Queue(rec.Queue)
	h := a.hub()
	if h == nil {
		return nil, errHubClosed
	}
	w, err := h.add(ctx, q.FinChannel(string(id)), r)
	if err != nil {
		return nil, err
	}
	defer h.remove(w)
	for {
		// Subscribed: whatever finishes from now on is heard; look once more
		// for what finished before.
		rec, err := a.find(ctx, id, []string{rec.Queue})
		if err != nil {
			// Still subscribed: a message or a re-subscription ends the
			// pause early.
			if err := r.pause(ctx, err, w.ch); err != nil {
				return nil, err
			}
			continue
		}
		r.reset()
		if err := sameTask(id, name, rec); err != nil {
			return nil, err // deleted and enqueued again as another task meanwhile
		}
		if raw, done, err := a.outcome(id, rec); done {
			return raw, err
		}
		select {
		case <-w.ch:
			if !h.alive() {
				return nil, errHubClosed
			}
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

// retrier paces Wait's tries after connection errors.
type retrier struct {
	pacer backoff.Retrier
	last  error // the last connection error, said when ctx ends
}

// waitPacing is Wait's pauses between tries: from 10 ms, doubling up to 1 s,
// jittered so that many waiters do not retry in step.
var waitPacing = backoff.Policy{First: 10 * time.Millisecond, Max: time.Second}

func newRetrier() *retrier { return &retrier{pacer: backoff.Retrier{Policy: waitPacing}} }

// pause returns err at once unless it is a connection error (broker.Transient);
// otherwise it pauses before the next try and returns nil, or returns ctx's
// error if ctx ends first. A token on wake ends the pause early.
func (r *retrier) pause(ctx context.Context, err error, wake <-chan struct{}) error {
	if ctx.Err() != nil {
		return r.ctxErr(ctx)
	}
	if !broker.Transient(err) {
		return err
	}
	r.last = err
	if !r.pacer.Pause(ctx, nil, wake) {
		return r.ctxErr(ctx)
	}
	return nil
}

// reset forgets the errors so far: Redis answered.
func (r *retrier) reset() { r.pacer.Reset(); r.last = nil }

// ctxErr is ctx's error, with the last connection error if one came since
// Redis last answered.
func (r *retrier) ctxErr(ctx context.Context) error {
	if r.last == nil {
		return context.Cause(ctx)
	}
	return fmt.Errorf("rediq: wait: %w; Redis could not be reached meanwhile: %v", context.Cause(ctx), r.last)
}

// sameTask fails with a *WrongTaskError if the record of id names a task other
// than name. A message that cannot be read names nothing: its outcome (dead,
// as malformed) says the rest.
func sameTask(id TaskID, name string, rec *broker.Record) error {
	var env codec.Envelope
	if len(rec.Body) == 0 || codec.DecodeInto(rec.Body, &env) != nil || env.Name == name {
		return nil
	}
	return &WrongTaskError{ID: id, Want: name, Found: env.Name}
}

// outcome is the result or error of a finished task; done is false while it
// has not finished.
func (a *App) outcome(id TaskID, rec *broker.Record) (raw []byte, done bool, err error) {
	switch rec.State {
	case broker.StateDead:
		r := a.taskRecord(string(id), rec.Queue, rec.State, rec.Body, "", 0, 0, rec.Died, rec.Meta, nil)
		return nil, true, endError(id, StateDead, r.Retried, r.LastError)
	case broker.StateFinished:
		switch rec.Done.State {
		case broker.DoneSucceeded:
			return rec.Done.Result, true, nil
		case broker.DoneCancelled:
			return nil, true, endError(id, StateCancelled, 0, "")
		default:
			return nil, true, endError(id, StateExpired, 0, "")
		}
	}
	return nil, false, nil
}

// hub returns the App's wait hub, starting it on first use.
func (a *App) hub() *waitHub {
	a.hubOnce.Do(func() { a.waits = newWaitHub(a.core.Broker()) })
	return a.waits
}

// waitHub shares one pub/sub connection among the App's waiters: a channel is
// subscribed while someone waits on it. Every (re)subscription confirmation
// and every message wakes the channel's waiters, which then look at the task:
// a reconnect that lost a message costs a look, never a hang.
type waitHub struct {
	b *broker.Broker
	// wire is held from the decision to SUBSCRIBE or UNSUBSCRIBE a channel
	// until the command is written, so that the two reach Redis in the order
	// they were decided: a Wait that subscribes a channel just dropped by the
	// last waiter of an earlier Wait is never unsubscribed by it.
	wire   sync.Mutex
	mu     sync.Mutex
	ps     *broker.Subscriber
	subs   map[string]*waitChan
	closed bool
	done   chan struct{}
	quit   chan struct{}
}

// waitChan is one subscribed channel. It stays until its SUBSCRIBE is
// confirmed even if its waiters leave, so that a confirmation is never taken
// for a later SUBSCRIBE's.
type waitChan struct {
	waiters   map[*waiter]struct{}
	confirmed bool
	// unsent: its SUBSCRIBE is not known to be written (new, or the last
	// write failed), so the next waiter to look sends one. A SUBSCRIBE sent
	// twice is only confirmed twice.
	unsent bool
}

type waiter struct {
	channel string
	ch      chan struct{} // a token: look at the task
}

var errHubClosed = errors.New("rediq: wait: the App is closed")

func newWaitHub(b *broker.Broker) *waitHub {
	return &waitHub{b: b, subs: map[string]*waitChan{}}
}

// add registers a waiter on channel and returns once Redis has confirmed the
// subscription (so nothing published later is missed). A SUBSCRIBE that fails
// on a connection error is sent again after r's pause, until ctx ends.
func (h *waitHub) add(ctx context.Context, channel string, r *retrier) (*waiter, error) {
	w := &waiter{channel: channel, ch: make(chan struct{}, 1)}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, errHubClosed
	}
	if h.ps == nil {
		h.ps = h.b.Subscriber(context.WithoutCancel(ctx))
		h.done, h.quit = make(chan struct{}), make(chan struct{})
		go h.loop(h.ps, h.done, h.quit)
	}
	c := h.subs[channel]
	if c == nil {
		c = &waitChan{waiters: map[*waiter]struct{}{}, unsent: true}
		h.subs[channel] = c
	}
	c.waiters[w] = struct{}{}
	ps := h.ps
	h.mu.Unlock()
	for {
		h.wire.Lock()
		h.mu.Lock()
		confirmed, closed := c.confirmed, h.closed
		send := c.unsent && !confirmed && !closed
		c.unsent = c.unsent && !send
		h.mu.Unlock()
		if !send {
			h.wire.Unlock()
		}
		switch {
		case closed:
			return nil, errHubClosed
		case confirmed:
			return w, nil
		}
		if send {
			err := ps.Subscribe(ctx, channel)
			h.wire.Unlock()
			if err != nil {
				h.mu.Lock()
				c.unsent = true
				h.mu.Unlock()
				// go-redis may have dropped the connection and made a new
				// one without this channel: send it again after a pause,
				// cut short by a confirmation.
				if err := r.pause(ctx, fmt.Errorf("rediq: wait: subscribe: %w", err), w.ch); err != nil {
					h.remove(w)
					return nil, err
				}
				continue
			}
			r.reset()
		}
		select {
		case <-w.ch:
		case <-ctx.Done():
			h.remove(w)
			return nil, r.ctxErr(ctx)
		}
	}
}

// alive reports whether waiters may go on: false once the hub has closed.
func (h *waitHub) alive() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.closed
}

// remove drops a waiter, unsubscribing its channel if it was the last and its
// subscription is confirmed (else the confirmation does it).
func (h *waitHub) remove(w *waiter) {
	h.wire.Lock()
	defer h.wire.Unlock()
	h.mu.Lock()
	c := h.subs[w.channel]
	if c == nil || h.ps == nil {
		h.mu.Unlock()
		return
	}
	delete(c.waiters, w)
	drop := len(c.waiters) == 0 && c.confirmed
	if drop {
		delete(h.subs, w.channel)
	}
	if !c.confirmed && c.unsent {
		// w may have been the one to send the SUBSCRIBE again: another
		// waiter takes over.
		for o := range c.waiters {
			select {
			case o.ch <- struct{}{}:
			default:
			}
		}
	}
	ps := h.ps
	h.mu.Unlock()
	if drop {
		// Best effort: a failed UNSUBSCRIBE leaves a channel that nobody
		// waits on, whose rare messages are ignored.
		_ = ps.Unsubscribe(context.Background(), w.channel)
	}
}

// loop hands each notice (a message, or a confirmation of the channel's
// SUBSCRIBE: both mean "look") to the channel's waiters.
func (h *waitHub) loop(ps *broker.Subscriber, done, quit chan struct{}) {
	defer close(done)
	for {
		n, ok := ps.Next(quit)
		if !ok {
			return
		}
		channel := n.Channel
		h.wire.Lock()
		h.mu.Lock()
		c := h.subs[channel]
		drop := false
		if c != nil {
			c.confirmed = true
			for w := range c.waiters {
				select {
				case w.ch <- struct{}{}:
				default:
				}
			}
			if drop = len(c.waiters) == 0; drop { // its waiters left before the confirmation
				delete(h.subs, channel)
			}
		}
		h.mu.Unlock()
		if drop {
			_ = ps.Unsubscribe(context.Background(), channel)
		}
		h.wire.Unlock()
	}
}

// close ends the hub's subscription and goroutine; waiters return errHubClosed.
func (h *waitHub) close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	ps, done, quit := h.ps, h.done, h.quit
	for _, c := range h.subs {
		for w := range c.waiters {
			select {
			case w.ch <- struct{}{}:
			default:
			}
		}
	}
	h.mu.Unlock()
	if ps == nil {
		return nil
	}
	close(quit)
	err := ps.Close()
	<-done
	return err
}
