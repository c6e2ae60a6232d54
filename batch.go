package rediq

import (
	"context"
	"errors"
	"fmt"
	"go.uber.org/zap"
	"io"
	"iter"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
	"github.com/rediq/rediq/internal/core"
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
	if strings.HasPrefix(m.Lock, "u:") {
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

// onComplete enqueues a completed batch's OnComplete call. Its id is fixed
// per batch and kept for the batch's retention, so however many parties get
// here, it is enqueued once.
func (a *App) onComplete(ctx context.Context, k *broker.BatchKeys) error {
	return enqueueOnComplete(ctx, a.core.Broker(), k)
}

// enqueueOnComplete enqueues a completed batch's stored OnComplete call, if it
// has one, and clears its pending flag. Package worker calls it too, as
// core.EnqueueOnComplete.
func enqueueOnComplete(ctx context.Context, b *broker.Broker, k *broker.BatchKeys) error {
	vals, err := b.Client().HMGet(ctx, k.Info, "oncomplete", "retention").Result()
	if err != nil {
		return fmt.Errorf("rediq: batch %d: read OnComplete: %w", k.ID, err)
	}
	raw, ok := vals[0].(string)
	if !ok {
		return nil // none
	}
	ret, _ := strconv.ParseInt(fmt.Sprint(vals[1]), 10, 64) // written by NewBatch; absent: the minimum below
	var c storedCall
	if err := msgpack.Unmarshal([]byte(raw), &c); err != nil {
		return fmt.Errorf("rediq: batch %d: OnComplete call unreadable: %w", k.ID, err)
	}
	// The stored message was encoded under a generated id, which holds its
	// enqueue time; under the fixed id it needs "t".
	var env codec.Envelope
	if err := codec.DecodeInto(c.Body, &env); err != nil {
		return fmt.Errorf("rediq: batch %d: OnComplete message unreadable: %w", k.ID, err)
	}
	env.EnqueuedAt = time.Now().UnixMilli()
	ms := func(n int64) time.Duration { return time.Duration(n) * time.Millisecond }
	m := broker.Message{ID: "rediq-batch-" + strconv.FormatInt(k.ID, 10) + "-complete", Slot: c.Slot, Body: codec.Encode(&env),
		Retention: ms(max(ret, 60000, c.RetainMs)), Delay: ms(c.DelayMs), ExpireIn: ms(c.ExpireMs),
		Lock: c.UniqueKey, LockTTL: ms(c.UniqueMs)}
	if _, err := b.Enqueue(ctx, b.Queue(c.Queue), []broker.Message{m}); err != nil {
		return fmt.Errorf("rediq: batch %d: enqueue OnComplete: %w", k.ID, err)
	}
	// Written, or its id exists (enqueued before): nothing is pending.
	if err := b.OnCompleteDone(ctx, k); err != nil {
		return fmt.Errorf("rediq: batch %d: %w", k.ID, err)
	}
	return nil
}

// reconcile counts the ends a batch missed: members whose end was never
// counted (their worker died between settling and counting, or they ended
// where no worker saw them: expired at fetch) and that have ended, or that do
// not exist (never written, or gone: counted as succeeded if they started,
// else dropped). It also enqueues a pending OnComplete. At most 1,000 tasks
// per call.
func (a *App) reconcile(ctx context.Context, k *broker.BatchKeys) error {
	return a.reconcileIDs(ctx, k, false)
}

// reconcileIDs is reconcile; stopped says the batch was stopped: then only its
// started tasks are looked at (those count as running), and any of them
// waiting for a retry is cancelled at once — it would never start again, and
// the batch's Wait would otherwise count it running until it fell due.
func (a *App) reconcileIDs(ctx context.Context, k *broker.BatchKeys, stopped bool) error {
	br := a.core.Broker()
	pending, err := br.Client().HExists(ctx, k.Info, "oncomplete_pending").Result()
	if err != nil {
		return fmt.Errorf("rediq: batch %d: %w", k.ID, err)
	}
	if pending {
		if err := a.onComplete(ctx, k); err != nil {
			return err
		}
	}
	// A detached batch whose producer let go of it after its last task
	// ended completes here (and in the workers' sweep).
	if completed, err := br.CompleteBatch(ctx, k); err != nil {
		return fmt.Errorf("rediq: batch %d: %w", k.ID, err)
	} else if completed {
		if err := a.onComplete(ctx, k); err != nil {
			return err
		}
	}
	unended := br.Unended
	if stopped {
		unended = br.Running
	}
	ids, err := unended(ctx, k)
	if err != nil {
		return fmt.Errorf("rediq: batch %d: %w", k.ID, err)
	}
	if len(ids) > 1000 {
		ids = ids[:1000]
	}
	queues, err := br.Queues(ctx)
	if err != nil {
		return fmt.Errorf("rediq: batch %d: %w", k.ID, err)
	}
	for _, id := range ids {
		rec, err := br.Find(ctx, id, queues)
		end, lastErr := "", ""
		switch {
		case errors.Is(err, broker.ErrNotFound):
			started, err := br.Client().SIsMember(ctx, k.Started, id).Result()
			if err != nil {
				return fmt.Errorf("rediq: batch %d: %w", k.ID, err)
			}
			end = "dropped"
			if started {
				end = "succeeded" // started, and left nothing: a success without retention
			}
		case err != nil:
			return fmt.Errorf("rediq: batch %d: %w", k.ID, err)
		case rec.State == broker.StateDead:
			end = "failed"
			var env codec.Envelope
			if codec.DecodeInto(rec.Body, &env) == nil {
				lastErr = env.Error
			}
		case rec.State == broker.StateFinished:
			end = map[byte]string{'s': "succeeded", 'c': "cancelled", 'x': "dropped"}[rec.Done.State]
		case stopped && (rec.State == broker.StateScheduled || rec.State == broker.StatePending):
			now, err := br.Cancel(ctx, br.Queue(rec.Queue), id)
			switch {
			case err == nil && now:
				end = "cancelled"
			case err == nil, errors.Is(err, broker.ErrFinished), errors.Is(err, broker.ErrNotFound):
				// A worker took it meanwhile (it drops it: the batch
				// stopped), or it ended: counted by its worker or a later pass.
			default:
				return fmt.Errorf("rediq: batch %d: %w", k.ID, err)
			}
		}
		if end == "" {
			continue // still waiting or running
		}
		completed, err := br.BatchNote(ctx, k, id, "", "", end, lastErr)
		if err != nil {
			return fmt.Errorf("rediq: batch %d: %w", k.ID, err)
		}
		if completed {
			if err := a.onComplete(ctx, k); err != nil {
				return err
			}
		}
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

// OutputLine is one line of a batch's output.
type OutputLine struct {
	Batch  int64
	Task   TaskID
	Name   string
	Worker string
	Text   string
	At     time.Time // when Redis received it
}

// String formats the line as Follow writes it: "[batch:task worker] text".
func (l OutputLine) String() string {
	return fmt.Sprintf("[%d:%s %s] %s", l.Batch, l.Task, l.Worker, l.Text)
}

// Lines yields the batch's output lines from the start (what is retained),
// as they arrive, until the batch completes or stops (then the sequence ends)
// or ctx ends (then it yields ctx's error). Reading is a blocking read of the
// batch's stream: no polling.
func (b *Batch) Lines(ctx context.Context) iter.Seq2[OutputLine, error] {
	return b.app.batchLines(ctx, b.keys)
}

func (a *App) batchLines(ctx context.Context, k *broker.BatchKeys) iter.Seq2[OutputLine, error] {
	return func(yield func(OutputLine, error) bool) {
		br := a.core.Broker()
		if n, err := br.Client().Exists(ctx, k.Info).Result(); err != nil || n == 0 {
			if err == nil {
				err = fmt.Errorf("%w: %d", ErrBatchNotFound, k.ID)
			}
			yield(OutputLine{}, err)
			return
		}
		from := "0"
		var stoppedAt time.Time // a stopped batch's handlers may still print as they stop
		for {
			if !stoppedAt.IsZero() {
				st, err := a.BatchStat(ctx, k.ID)
				if err != nil || st.Running == 0 || time.Since(stoppedAt) > 5*time.Second {
					// A last read for lines sent just before the handlers ended.
					ls, err := br.ReadOutput(ctx, k, from, 1000, 0)
					if err != nil {
						yield(OutputLine{}, fmt.Errorf("rediq: batch %d output: %w", k.ID, err))
						return
					}
					for _, l := range ls {
						if l.Kind != "e" && !yield(OutputLine{Batch: k.ID, Task: TaskID(l.Task), Name: l.Name, Worker: l.Worker, Text: l.Line, At: l.At}, nil) {
							return
						}
					}
					return
				}
			}
			if err := ctx.Err(); err != nil {
				yield(OutputLine{}, context.Cause(ctx))
				return
			}
			// Blocks at most a second at a time, so that ctx is honoured.
			block := time.Second
			if !stoppedAt.IsZero() {
				block = 100 * time.Millisecond
			}
			ls, err := br.ReadOutput(ctx, k, from, 1000, block)
			if err != nil {
				if ctx.Err() != nil {
					err = context.Cause(ctx)
				}
				yield(OutputLine{}, fmt.Errorf("rediq: batch %d output: %w", k.ID, err))
				return
			}
			for _, l := range ls {
				from = l.ID
				if l.Kind == "e" {
					if !strings.HasPrefix(l.Line, "stopped") {
						return
					}
					stoppedAt = time.Now()
					continue
				}
				if !yield(OutputLine{Batch: k.ID, Task: TaskID(l.Task), Name: l.Name, Worker: l.Worker, Text: l.Line, At: l.At}, nil) {
					return
				}
			}
		}
	}
}

// Follow writes the batch's lines to w, each prefixed "[batch:task worker]",
// from the start, as they arrive, until the batch completes or stops (nil) or
// ctx ends (ctx's error).
func (b *Batch) Follow(ctx context.Context, w io.Writer) error {
	return FollowBatch(ctx, b.app, b.keys.ID, w)
}

// FollowBatch is Follow for a batch by id (another terminal, after a reconnect).
func FollowBatch(ctx context.Context, app *App, id int64, w io.Writer) error {
	for l, err := range app.batchLines(ctx, app.core.Broker().Batch(id)) {
		if err != nil {
			return err
		}
		if _, err := io.WriteString(w, l.String()+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// Wait seals the batch (no task will be added) and waits for every task of
// it to finish — a blocking read of its output stream, no polling — then
// returns its stat. A stopped batch returns, once its running handlers have
// ended (they are cancelled within a quarter of a second), its stat — what
// BatchStat says from then on — and a *BatchStoppedError (ErrBatchStopped).
func (b *Batch) Wait(ctx context.Context) (BatchStat, error) {
	if err := b.seal(ctx); err != nil {
		return BatchStat{}, fmt.Errorf("rediq: batch %d: %w", b.keys.ID, err)
	}
	return b.app.waitBatch(ctx, b.keys)
}

// WaitBatch waits, from any process, for batch id to complete, or to stop and
// its running handlers to end, and returns what Batch.Wait would (a stopped
// batch: its stat and a *BatchStoppedError). Unlike Batch.Wait it does not
// seal the batch: a batch whose producer still holds it completes only once
// the producer lets go. Unknown: ErrBatchNotFound.
func (a *App) WaitBatch(ctx context.Context, id int64) (BatchStat, error) {
	if _, err := a.BatchStat(ctx, id); err != nil {
		return BatchStat{}, err
	}
	return a.waitBatch(ctx, a.core.Broker().Batch(id))
}

func (a *App) waitBatch(ctx context.Context, k *broker.BatchKeys) (BatchStat, error) {
	br := a.core.Broker()
	if err := a.reconcile(ctx, k); err != nil {
		return BatchStat{}, err
	}
	for {
		st, err := a.BatchStat(ctx, k.ID)
		if err != nil {
			return st, err
		}
		if st.Stopped {
			if st.Running == 0 {
				return st, &BatchStoppedError{Batch: k.ID, Reason: st.StopReason}
			}
			// Its running handlers are being cancelled: their ends are
			// counted in a moment (no stream entry says so: a short poll).
			if err := a.awaitStopped(ctx, k); err != nil {
				return st, err
			}
			continue
		}
		if !st.Finished.IsZero() {
			return st, nil
		}
		// Wait for the end entry after what is there now.
		last, err := br.Client().XRevRangeN(ctx, k.Out, "+", "-", 1).Result()
		if err != nil {
			return st, fmt.Errorf("rediq: batch %d: %w", k.ID, err)
		}
		from := "0"
		if len(last) == 1 {
			from = last[0].ID
		}
		if st2, err := a.BatchStat(ctx, k.ID); err != nil || st2.Stopped || !st2.Finished.IsZero() {
			continue // it ended meanwhile: the top of the loop says how
		}
		idle := 0
		for {
			if err := ctx.Err(); err != nil {
				return st, context.Cause(ctx)
			}
			ls, err := br.ReadOutput(ctx, k, from, 1000, time.Second)
			if err != nil {
				return st, fmt.Errorf("rediq: batch %d: %w", k.ID, err)
			}
			ended := false
			for _, l := range ls {
				from = l.ID
				ended = ended || l.Kind == "e"
			}
			if ended {
				break
			}
			// Five quiet seconds: look for ends nobody counted (the safety
			// net; the end entry is what Wait normally hears).
			if idle++; len(ls) > 0 {
				idle = 0
			} else if idle >= 5 {
				idle = 0
				if err := a.reconcile(ctx, k); err != nil {
					return st, err
				}
				if st2, err := a.BatchStat(ctx, k.ID); err == nil && (st2.Stopped || !st2.Finished.IsZero()) {
					break
				}
			}
		}
	}
}

// awaitStopped waits for a stopped batch's running tasks to end: it polls,
// from every 50 ms to every second, and reconciles every five seconds (a
// worker that died after settling, or a task recovered and dropped).
func (a *App) awaitStopped(ctx context.Context, k *broker.BatchKeys) error {
	every := 50 * time.Millisecond
	t := time.NewTimer(every)
	defer t.Stop()
	// Started tasks waiting for a retry are cancelled at once: only running
	// handlers are waited for.
	if err := a.reconcileIDs(ctx, k, true); err != nil {
		return err
	}
	reconciled := time.Now()
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
		}
		st, err := a.BatchStat(ctx, k.ID)
		if err != nil || st.Running == 0 {
			return err
		}
		if time.Since(reconciled) >= 5*time.Second {
			reconciled = time.Now()
			if err := a.reconcileIDs(ctx, k, true); err != nil {
				return err
			}
		}
		every = min(2*every, time.Second)
		t.Reset(every)
	}
}

// StopBatch stops batch id: no task of it starts any more (unstarted ones end
// cancelled), and workers cancel its running handlers with cause
// ErrBatchStopped within a few hundred ms.
func (a *App) StopBatch(ctx context.Context, id int64) error {
	k := a.core.Broker().Batch(id)
	_, err := a.core.Broker().StopBatch(ctx, k, "stopped by StopBatch")
	if errors.Is(err, broker.ErrNoBatch) {
		return fmt.Errorf("%w: %d", ErrBatchNotFound, id)
	}
	if err != nil {
		return fmt.Errorf("rediq: %w", err)
	}
	// Its started tasks that wait for a retry will never run again: end them
	// now, so that they do not count as running until they fall due.
	return a.reconcileIDs(ctx, k, true)
}

// WorkerStat is one worker's share of a batch.
type WorkerStat struct {
	Worker    string
	Executed  int // attempts run (retries count again)
	Failed    int // attempts that failed
	Collected int // table rows added
}

// BatchStat counts a batch's tasks.
type BatchStat struct {
	ID        int64
	Detached  bool
	Enqueued  int
	Started   int // tasks that started at least once
	Succeeded int
	Failed    int // dead
	Cancelled int // cancelled, or stopped with the batch (NeverStarted included)
	// NeverStarted counts the tasks that ended without starting: cancelled
	// while they waited, expired, or left unstarted when the batch stopped
	// (those count here from the stop on, before a worker has dropped them).
	NeverStarted int
	Running      int // started and not ended
	Unstarted    int // enqueued, not started yet, and still able to start (0 once the batch stopped)
	Rows         int // table rows collected
	Stopped      bool
	StopReason   string
	Created      time.Time
	Finished     time.Time // completed, or stopped (zero while it runs)
	Rate         float64   // tasks ended per second since Created
	ETA          time.Duration
	Workers      []WorkerStat
}

// BatchStat reads batch id's counts in one round trip.
func (a *App) BatchStat(ctx context.Context, id int64) (BatchStat, error) {
	s, err := a.core.Broker().ReadBatch(ctx, a.core.Broker().Batch(id))
	if errors.Is(err, broker.ErrNoBatch) {
		return BatchStat{}, fmt.Errorf("%w: %d", ErrBatchNotFound, id)
	}
	if err != nil {
		return BatchStat{}, fmt.Errorf("rediq: %w", err)
	}
	n := func(m map[string]string, k string) int { v, _ := strconv.Atoi(m[k]); return v }
	ms := func(k string) time.Time {
		v, _ := strconv.ParseInt(s.Info[k], 10, 64)
		if v == 0 {
			return time.Time{}
		}
		return time.UnixMilli(v)
	}
	st := BatchStat{ID: id, Detached: s.Info["detached"] == "1", Enqueued: int(s.Enqueued), Started: int(s.Started),
		Succeeded: n(s.Stat, "succeeded"), Failed: n(s.Stat, "failed"), Cancelled: n(s.Stat, "cancelled"),
		Rows: n(s.Stat, "rows"), StopReason: s.Info["stopped"], Created: ms("created")}
	st.Stopped = st.StopReason != ""
	st.Finished = ms("completed")
	if st.Stopped {
		st.Finished = ms("stopped_at")
	}
	// "dropped": ended before they started. Of a stopped batch, no task starts
	// any more: every task that had not started is one, whether or not a
	// worker has fetched it and counted it yet.
	st.NeverStarted = n(s.Stat, "dropped")
	if st.Stopped {
		st.NeverStarted = max(st.NeverStarted, st.Enqueued-st.Started)
	}
	st.Running = max(st.Started-st.Succeeded-st.Failed-st.Cancelled, 0)
	st.Unstarted = max(st.Enqueued-st.Started-st.NeverStarted, 0)
	st.Cancelled += st.NeverStarted
	ended := st.Succeeded + st.Failed + st.Cancelled
	end := time.Now()
	if !st.Finished.IsZero() {
		end = st.Finished
	}
	if d := end.Sub(st.Created).Seconds(); d > 0 {
		st.Rate = float64(ended) / d
	}
	if st.Rate > 0 && st.Finished.IsZero() && st.Enqueued > ended {
		st.ETA = time.Duration(float64(st.Enqueued-ended) / st.Rate * float64(time.Second))
	}
	workers := map[string]*WorkerStat{}
	get := func(w string) *WorkerStat {
		if workers[w] == nil {
			workers[w] = &WorkerStat{Worker: w}
		}
		return workers[w]
	}
	for k, v := range s.Stat {
		c, _ := strconv.Atoi(v)
		switch {
		case strings.HasPrefix(k, "x:"):
			get(k[2:]).Executed = c
		case strings.HasPrefix(k, "f:"):
			get(k[2:]).Failed = c
		case strings.HasPrefix(k, "c:"):
			get(k[2:]).Collected = c
		}
	}
	for _, w := range workers {
		st.Workers = append(st.Workers, *w)
	}
	sortWorkers(st.Workers)
	return st, nil
}

// ListBatches returns the stats of the n newest batches that still exist.
func (a *App) ListBatches(ctx context.Context, n int) ([]BatchStat, error) {
	ids, err := a.core.Broker().LatestBatches(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("rediq: list batches: %w", err)
	}
	out := make([]BatchStat, 0, len(ids))
	for _, id := range ids {
		st, err := a.BatchStat(ctx, id)
		if errors.Is(err, ErrBatchNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Print writes a line to the current task's batch output (fmt.Sprint of a);
// outside a batch it goes to the worker's log, outside a task nowhere. Lines
// are sent coalesced, a few ms later, so printing costs the handler little.
func Print(ctx context.Context, a ...any) { printLine(ctx, fmt.Sprint(a...)) }

// Printf is Print with a format.
func Printf(ctx context.Context, format string, a ...any) { printLine(ctx, fmt.Sprintf(format, a...)) }

func printLine(ctx context.Context, text string) {
	s := core.StateFrom(ctx)
	if s == nil || s.ID == "" {
		return
	}
	for line := range strings.SplitSeq(strings.TrimSuffix(text, "\n"), "\n") {
		if s.Print != nil {
			s.Print(line)
		} else {
			s.Logger().Info(line) // a task outside a batch
		}
	}
}

// Output returns a writer whose lines go where Print's do.
func Output(ctx context.Context) io.Writer { return &outputWriter{ctx: ctx} }

type outputWriter struct {
	ctx     context.Context
	mu      sync.Mutex
	partial []byte
}

func (w *outputWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := strings.IndexByte(string(w.partial), '\n')
		if i < 0 {
			break
		}
		printLine(w.ctx, string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

// Collect adds row to the current task's batch table name. Outside a batch it
// returns an error. A lost connection is retried for up to 10 s before its
// error is returned; a row whose reply was lost may be added twice.
func Collect(ctx context.Context, name string, row any) error {
	s := core.StateFrom(ctx)
	if s == nil || s.Collect == nil {
		return errors.New("rediq: Collect outside a batch task")
	}
	b, err := msgpack.Marshal(row)
	if err != nil {
		return fmt.Errorf("rediq: Collect: encode row: %w", err)
	}
	return s.Collect(name, [][]byte{b})
}

// ResultTable makes a batch task's result go to table name of its batch (a
// slice result adds a row per element). Without it, results of batch tasks go
// to table "default".
func ResultTable(name string) TaskOption {
	return taskOnly(func(o *taskOptions) {
		if name == "" {
			o.fail("empty result table name")
		}
		o.resultTable = name
	})
}

// TableOptions says how ReadTable reads: Limit rows (0: 100), newest first;
// Pop removes what it returns.
type TableOptions struct {
	Pop   bool
	Limit int
}

// ReadTable reads rows of a batch's table, newest first, decoded as T.
func ReadTable[T any](ctx context.Context, app *App, batchID int64, name string, opts TableOptions) ([]T, error) {
	if opts.Limit <= 0 {
		opts.Limit = 100
	}
	br := app.core.Broker()
	raws, err := br.ReadRows(ctx, br.Batch(batchID), name, opts.Limit, opts.Pop)
	if err != nil {
		return nil, fmt.Errorf("rediq: read table %q of batch %d: %w", name, batchID, err)
	}
	out := make([]T, 0, len(raws))
	for _, r := range raws {
		var v T
		if err := msgpack.Unmarshal(r, &v); err != nil {
			return out, fmt.Errorf("rediq: read table %q of batch %d: decode a row: %w", name, batchID, err)
		}
		out = append(out, v)
	}
	return out, nil
}

func zapBatch(id int64) zap.Field { return zap.Int64("batch", id) }
func zapErr(err error) zap.Field  { return zap.Error(err) }

func sortWorkers(ws []WorkerStat) {
	slices.SortFunc(ws, func(a, b WorkerStat) int { return strings.Compare(a.Worker, b.Worker) })
}

// BatchError is an error some of a batch's dead tasks died with.
type BatchError struct {
	Error string
	Tasks int
	// TaskIDs are the first of those tasks to die (up to ten), for GetTask;
	// empty for a batch whose errors were counted before ids were kept.
	TaskIDs []TaskID
}

// BatchErrors lists the errors batch id's dead tasks died with, each once with
// how many tasks and the ids of the first of them, most frequent first.
func (a *App) BatchErrors(ctx context.Context, id int64) ([]BatchError, error) {
	br := a.core.Broker()
	if _, err := a.BatchStat(ctx, id); err != nil {
		return nil, err
	}
	m, err := br.BatchErrors(ctx, br.Batch(id))
	if err != nil {
		return nil, fmt.Errorf("rediq: batch %d errors: %w", id, err)
	}
	out := make([]BatchError, 0, len(m))
	for e, c := range m {
		ids := make([]TaskID, len(c.IDs))
		for i, id := range c.IDs {
			ids[i] = TaskID(id)
		}
		out = append(out, BatchError{Error: e, Tasks: c.Tasks, TaskIDs: ids})
	}
	slices.SortFunc(out, func(x, y BatchError) int {
		if x.Tasks != y.Tasks {
			return y.Tasks - x.Tasks
		}
		return strings.Compare(x.Error, y.Error)
	})
	return out, nil
}

// BatchLines is Lines for a batch by id: from another process or terminal,
// or after a reconnect (it replays what is retained).
func (a *App) BatchLines(ctx context.Context, id int64) iter.Seq2[OutputLine, error] {
	return a.batchLines(ctx, a.core.Broker().Batch(id))
}

// BatchTables lists the names of batch id's tables, sorted.
func (a *App) BatchTables(ctx context.Context, id int64) ([]string, error) {
	br := a.core.Broker()
	names, err := br.Client().SMembers(ctx, br.Batch(id).Tables).Result()
	if err != nil {
		return nil, fmt.Errorf("rediq: batch %d tables: %w", id, err)
	}
	slices.Sort(names)
	return names, nil
}
