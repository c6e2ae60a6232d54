package rediq

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/rediq/rediq/internal/broker"
)

// Batch defaults.
const (
	DefaultKeepAliveTimeout = 5 * time.Second
	DefaultBatchRetention   = 7 * 24 * time.Hour
)

var (
	// ErrBatchStopped is the cause of a handler's ctx when its batch is
	// stopped (its producer went away, Close, StopBatch), and what Wait
	// returns for a stopped batch.
	ErrBatchStopped = errors.New("rediq: batch stopped")
	// ErrBatchNotFound is matched by the error for a batch id that does not
	// exist (any more: its retention ran out).
	ErrBatchNotFound = errors.New("rediq: batch not found")
)

// BatchStoppedError is what Wait returns for a stopped batch; it matches
// ErrBatchStopped.
type BatchStoppedError struct {
	Batch  int64
	Reason string // "stopped by StopBatch", "its producer closed it", …
}

func (e *BatchStoppedError) Error() string {
	return fmt.Sprintf("rediq: batch %d stopped: %s", e.Batch, e.Reason)
}

// Is makes errors.Is(err, ErrBatchStopped) true.
func (e *BatchStoppedError) Is(target error) bool { return target == ErrBatchStopped }

// BatchOptions configures NewBatch.
type BatchOptions struct {
	// Detached batches run to their end whatever their producer does
	// ("submit and go"): one completes when every task
	// enqueued in it has ended and no more can be added — after Wait or
	// Close, after its App's Close, once nothing refers to its Batch any more,
	// or once its producer's keep-alives stopped for KeepAliveTimeout (the
	// process exited or was killed). By default a batch is kept alive by its
	// producer: if its keep-alives stop for KeepAliveTimeout (the process was
	// killed, the laptop closed) the batch is stopped — no task of it starts
	// any more, and running ones have their ctx cancelled with cause
	// ErrBatchStopped.
	Detached bool
	// KeepAliveTimeout: default DefaultKeepAliveTimeout (5 s). A producer
	// that cannot reach Redis for this long counts as gone.
	KeepAliveTimeout time.Duration
	// Retention is how long the batch's output, tables and counts stay after it
	// completes or stops: default DefaultBatchRetention (7 days).
	Retention time.Duration
	// OnComplete is enqueued exactly once when every task of the batch has
	// finished and no more can be added (see Detached): a fan-in. Made by
	// Task.With.
	OnComplete Call
}

// Call is a task with its arguments and options, enqueued later (Task.With).
type Call interface {
	message(now time.Time) (broker.Message, string, error)
	// messageAs is message with the task id set (WithID).
	messageAs(now time.Time, id string) (broker.Message, string, error)
	taskName() string
}

type call[A, R any] struct {
	t    *Task[A, R]
	args A
	opts []EnqueueOption
}

// With binds args and options to the task, for BatchOptions.OnComplete.
func (t *Task[A, R]) With(args A, opts ...EnqueueOption) Call {
	return &call[A, R]{t: t, args: args, opts: opts}
}

func (c *call[A, R]) messageAs(now time.Time, id string) (broker.Message, string, error) {
	return (&call[A, R]{t: c.t, args: c.args, opts: append(slices.Clip(c.opts), WithID(id))}).message(now)
}

func (c *call[A, R]) taskName() string { return c.t.def.Name }

func (c *call[A, R]) message(now time.Time) (broker.Message, string, error) {
	o, err := c.t.enqueueOptions(c.opts)
	if err != nil {
		return broker.Message{}, "", err
	}
	m, err := c.t.encode(c.args, &o, now)
	return m, o.queue, err
}

// Batch groups the tasks one producer run enqueues: their output comes back
// to it (Follow, Lines), their results go to its tables, and it can be waited
// for, stopped and counted as one.
type Batch struct {
	app       *App
	keys      *broker.BatchKeys
	opts      BatchOptions
	hold      *batchHold
	closeOnce sync.Once
	closed    atomic.Bool // Close was called: no task may be added
}

// batchHold is a producer's hold on its open batch: a goroutine that renews
// the batch's keep-alive key until the hold ends. It refers to the batch's
// keys, not to its Batch, so that a detached Batch nobody refers to any more
// can end it (a cleanup): nothing can be added to that batch any more.
type batchHold struct {
	app      *App
	keys     *broker.BatchKeys
	ttl      time.Duration
	stop     chan struct{} // closed: end the hold
	seal     chan struct{} // closed: seal the batch, then end the hold
	done     chan struct{} // closed when the goroutine has returned
	stopOnce sync.Once
	sealOnce sync.Once
	// lapsed: a renewal found the keep-alive key gone (the producer was cut
	// off or frozen for its timeout): the batch was stopped, or completed,
	// without it, and no task may be added to it any more.
	lapsed atomic.Bool
}

// end ends the hold and waits for its goroutine.
func (h *batchHold) end() {
	h.stopOnce.Do(func() { close(h.stop) })
	<-h.done
}

// release asks the hold to seal its batch and end, without waiting (a
// cleanup of its Batch calls it).
func (h *batchHold) release() { h.sealOnce.Do(func() { close(h.seal) }) }

func (h *batchHold) run() {
	defer close(h.done)
	every := h.ttl / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-h.seal:
			// Should this fail, the keep-alive key lapses: the same end, later.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := h.app.sealBatch(ctx, h.keys); err != nil {
				h.app.core.Log.Warn("could not seal a detached batch its producer let go of; it completes once its keep-alive lapses",
					zapBatch(h.keys.ID), zapErr(err))
			}
			cancel()
			h.app.batchMu.Lock()
			delete(h.app.heldBatches, h)
			h.app.batchMu.Unlock()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), every)
		held, err := h.app.core.Broker().KeepAlive(ctx, h.keys, h.ttl)
		cancel()
		switch {
		case err != nil:
			h.app.core.Log.Warn("batch keep-alive failed; retrying", zapBatch(h.keys.ID), zapErr(err))
		case !held:
			h.lapsed.Store(true)
			h.app.core.Log.Warn("batch keep-alive lapsed (this producer was cut off or frozen past its keep-alive timeout): "+
				"the batch stopped, or completed, without it; tasks can no longer be added to it", zapBatch(h.keys.ID))
			h.app.batchMu.Lock()
			delete(h.app.heldBatches, h)
			h.app.batchMu.Unlock()
			return
		}
	}
}

// NewBatch opens a batch with the next number of the namespace. The producer
// holds it with a goroutine that renews its keep-alive until Close: call
// Close (defer it) when the producer is done. A detached batch's hold also
// ends when the App closes or nothing refers to the Batch any more.
func (a *App) NewBatch(ctx context.Context, opts BatchOptions) (*Batch, error) {
	if opts.KeepAliveTimeout == 0 {
		opts.KeepAliveTimeout = DefaultKeepAliveTimeout
	}
	if opts.Retention == 0 {
		opts.Retention = DefaultBatchRetention
	}
	if opts.KeepAliveTimeout < 100*time.Millisecond || opts.Retention < 0 {
		return nil, fmt.Errorf("%w: keep-alive timeout %s must be at least 100ms, retention %s not negative",
			ErrInvalidOption, opts.KeepAliveTimeout, opts.Retention)
	}
	in := broker.BatchInfo{Detached: opts.Detached, KeepAlive: opts.KeepAliveTimeout, Retention: opts.Retention}
	if opts.OnComplete != nil {
		m, queue, err := opts.OnComplete.message(time.Now())
		if err != nil {
			return nil, fmt.Errorf("rediq: batch OnComplete: %w", err)
		}
		if in.OnComplete, err = encodeCall(m, queue); err != nil {
			return nil, err
		}
	}
	k, err := a.core.Broker().NewBatch(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("rediq: %w", err)
	}
	h := &batchHold{app: a, keys: k, ttl: opts.KeepAliveTimeout,
		stop: make(chan struct{}), seal: make(chan struct{}), done: make(chan struct{})}
	b := &Batch{app: a, keys: k, opts: opts, hold: h}
	a.batchMu.Lock()
	if opts.Detached {
		// The App refers to the hold only: dropping the Batch releases it.
		if a.heldBatches == nil {
			a.heldBatches = map[*batchHold]struct{}{}
		}
		a.heldBatches[h] = struct{}{}
		runtime.AddCleanup(b, (*batchHold).release, h)
	} else {
		if a.openBatches == nil {
			a.openBatches = map[*Batch]struct{}{}
		}
		a.openBatches[b] = struct{}{}
	}
	a.batchMu.Unlock()
	go h.run()
	return b, nil
}

// closeBatches ends the App's holds on its open batches (App.Close): a
// keep-alive batch is stopped, a detached one sealed.
func (a *App) closeBatches() {
	a.batchMu.Lock()
	open := make([]*Batch, 0, len(a.openBatches))
	for b := range a.openBatches {
		open = append(open, b)
	}
	held := make([]*batchHold, 0, len(a.heldBatches))
	for h := range a.heldBatches {
		held = append(held, h)
	}
	a.batchMu.Unlock()
	for _, b := range open {
		if err := b.Close(); err != nil {
			a.core.Log.Warn("closing an open batch", zap.Error(err))
		}
	}
	for _, h := range held {
		h.release()
	}
	for _, h := range held {
		<-h.done
	}
}

// storedCall is an OnComplete call as the batch's info holds it.
type storedCall struct {
	Queue     string `msgpack:"q"`
	Slot      int    `msgpack:"s"`
	Body      []byte `msgpack:"b"`
	DelayMs   int64  `msgpack:"d,omitempty"`
	ExpireMs  int64  `msgpack:"x,omitempty"`
	RetainMs  int64  `msgpack:"r,omitempty"`
	UniqueMs  int64  `msgpack:"u,omitempty"`
	UniqueKey string `msgpack:"k,omitempty"`
}

// encodeCall keeps what the call's options put in its message: queue,
// priority, delay, expiry, retention and Unique (its id is the batch's).
func encodeCall(m broker.Message, queue string) ([]byte, error) {
	c := storedCall{Queue: queue, Slot: m.Slot, Body: m.Body, DelayMs: m.Delay.Milliseconds(),
		ExpireMs: m.ExpireIn.Milliseconds(), RetainMs: m.Retention.Milliseconds()}
	if broker.IsUniqueLock(m.Lock) {
		c.UniqueMs, c.UniqueKey = m.LockTTL.Milliseconds(), m.Lock
	}
	return msgpack.Marshal(c)
}

// ID is the batch's number, increasing per namespace.
func (b *Batch) ID() int64 { return b.keys.ID }

// Close ends the producer's hold on the batch: no task will be added. A
// keep-alive batch's unfinished tasks are then stopped (as if the producer
// had gone: unstarted ones never start, running ones are cancelled with cause
// ErrBatchStopped) — Wait first to let them finish. A detached batch runs on,
// and completes when its tasks have ended.
func (b *Batch) Close() error {
	var err error
	b.closeOnce.Do(func() {
		b.closed.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// Sealed before the hold ends: should the seal fail, a detached
		// batch's keep-alive lapses, which seals it too.
		err = b.seal(ctx)
		b.hold.end()
		b.app.batchMu.Lock()
		delete(b.app.openBatches, b)
		delete(b.app.heldBatches, b.hold)
		b.app.batchMu.Unlock()
		if !b.opts.Detached {
			if _, serr := b.app.core.Broker().StopBatch(ctx, b.keys, "its producer closed it"); serr != nil && !errors.Is(serr, broker.ErrNoBatch) {
				err = errors.Join(err, serr)
			}
		}
	})
	if err != nil {
		return fmt.Errorf("rediq: close batch %d: %w", b.keys.ID, err)
	}
	return nil
}

// seal marks that no task will be added, enqueueing OnComplete if that
// completed the batch.
func (b *Batch) seal(ctx context.Context) error { return b.app.sealBatch(ctx, b.keys) }

func (a *App) sealBatch(ctx context.Context, k *broker.BatchKeys) error {
	done, err := a.core.Broker().SealBatch(ctx, k)
	if err != nil {
		return err
	}
	if done {
		return a.onComplete(ctx, k)
	}
	return nil
}

// InBatch enqueues the task in batch b: its output goes to b's output, its
// result to b's tables, and it counts in b's stat.
func InBatch(b *Batch) EnqueueOption {
	return enqueueOnly(func(o *enqueueOptions) {
		switch {
		case b == nil:
			o.fail("nil batch")
			return
		case b.closed.Load():
			o.fail("batch %d is closed: no task can be added to it", b.keys.ID)
			return
		case b.hold.lapsed.Load():
			o.fail("batch %d stopped or completed without its producer (its keep-alive lapsed): no task can be added to it", b.keys.ID)
			return
		}
		o.batch = b
	})
}

func zapBatch(id int64) zap.Field { return zap.Int64("batch", id) }
func zapErr(err error) zap.Field  { return zap.Error(err) }
