package rediq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
	"github.com/vmihailenco/msgpack/v5"
)

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
	stored, ok, err := b.OnCompleteCall(ctx, k)
	if err != nil {
		return fmt.Errorf("rediq: batch %d: read OnComplete: %w", k.ID, err)
	}
	if !ok {
		return nil // none
	}
	var c storedCall
	if err := msgpack.Unmarshal(stored.Call, &c); err != nil {
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
	// The batch's retention was written by NewBatch; absent: the minimum.
	m := broker.Message{ID: "rediq-batch-" + strconv.FormatInt(k.ID, 10) + "-complete", Slot: c.Slot, Flow: env.Flow(), Body: codec.Encode(&env),
		Retention: max(stored.Retention, time.Minute, ms(c.RetainMs)), Delay: ms(c.DelayMs), ExpireIn: ms(c.ExpireMs),
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

// countMissedEnds counts the ends a batch missed: members whose end was never
// counted (their worker died between settling and counting, or they ended
// where no worker saw them: expired at fetch) and that have ended, or that do
// not exist (never written, or gone: counted as succeeded if they started,
// else dropped). It also enqueues a pending OnComplete. At most 1,000 tasks
// per call. stopped says the batch was stopped: then only its started tasks
// are looked at (those count as running), and any of them waiting for a retry
// is cancelled at once — it would never start again, and the batch's Wait
// would otherwise count it running until it fell due.
func (a *App) countMissedEnds(ctx context.Context, k *broker.BatchKeys, stopped bool) error {
	br := a.core.Broker()
	pending, err := br.OnCompletePending(ctx, k)
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
		note, err := a.missedEnd(ctx, k, id, queues, stopped)
		if err != nil {
			return fmt.Errorf("rediq: batch %d: %w", k.ID, err)
		}
		if note.End == broker.EndNone {
			continue // still waiting or running
		}
		completed, err := br.BatchNote(ctx, k, note)
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

// missedEnd is the end to count for the batch's task id, whose end was not
// counted: EndNone while it waits or runs (see countMissedEnds for stopped).
func (a *App) missedEnd(ctx context.Context, k *broker.BatchKeys, id string, queues []string, stopped bool) (broker.BatchNoteParams, error) {
	br := a.core.Broker()
	note := broker.BatchNoteParams{Task: id}
	rec, err := br.Find(ctx, id, queues)
	switch {
	case errors.Is(err, broker.ErrNotFound):
		started, err := br.BatchStarted(ctx, k, id)
		if err != nil {
			return note, err
		}
		note.End = broker.EndDropped
		if started {
			note.End = broker.EndSucceeded // started, and left nothing: a success without retention
		}
	case err != nil:
		return note, err
	case rec.State == broker.StateDead:
		note.End = broker.EndFailed
		var env codec.Envelope
		if codec.DecodeInto(rec.Body, &env) == nil {
			note.LastError = env.Error
		}
	case rec.State == broker.StateFinished:
		note.End = map[broker.DoneState]broker.BatchEnd{broker.DoneSucceeded: broker.EndSucceeded,
			broker.DoneCancelled: broker.EndCancelled, broker.DoneExpired: broker.EndDropped}[rec.Done.State]
	case stopped && (rec.State == broker.StateScheduled || rec.State == broker.StatePending):
		now, err := br.Cancel(ctx, br.Queue(rec.Queue), id)
		switch {
		case err == nil && now:
			note.End = broker.EndCancelled
		case err == nil, errors.Is(err, broker.ErrFinished), errors.Is(err, broker.ErrNotFound):
			// A worker took it meanwhile (it drops it: the batch
			// stopped), or it ended: counted by its worker or a later pass.
		default:
			return note, err
		}
	}
	return note, nil
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
	if err := a.countMissedEnds(ctx, k, false); err != nil {
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
		out := a.core.Broker().OutputReader(k)
		if err := out.SkipToEnd(ctx); err != nil {
			return st, fmt.Errorf("rediq: batch %d: %w", k.ID, err)
		}
		if st2, err := a.BatchStat(ctx, k.ID); err != nil || st2.Stopped || !st2.Finished.IsZero() {
			continue // it ended meanwhile: the top of the loop says how
		}
		idle := 0
		for {
			if err := ctx.Err(); err != nil {
				return st, context.Cause(ctx)
			}
			ls, err := out.Read(ctx, time.Second)
			if err != nil {
				return st, fmt.Errorf("rediq: batch %d: %w", k.ID, err)
			}
			ended := false
			for _, l := range ls {
				ended = ended || l.Kind == broker.OutEnd
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
				if err := a.countMissedEnds(ctx, k, false); err != nil {
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
// from every 50 ms to every second, and counts missed ends every five seconds (a
// worker that died after settling, or a task recovered and dropped).
func (a *App) awaitStopped(ctx context.Context, k *broker.BatchKeys) error {
	every := 50 * time.Millisecond
	t := time.NewTimer(every)
	defer t.Stop()
	// Started tasks waiting for a retry are cancelled at once: only running
	// handlers are waited for.
	if err := a.countMissedEnds(ctx, k, true); err != nil {
		return err
	}
	counted := time.Now()
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
		if time.Since(counted) >= 5*time.Second {
			counted = time.Now()
			if err := a.countMissedEnds(ctx, k, true); err != nil {
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
	return a.countMissedEnds(ctx, k, true)
}
