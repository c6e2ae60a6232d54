package rediq

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
)

// GetTask returns the record of the task with the id, from whichever queue of
// the namespace holds it (one round trip probes them all). An id that no queue
// holds — it never existed, or it finished and its Retention (default 0) has
// run out — gives an error matching ErrTaskNotFound.
func (a *App) GetTask(ctx context.Context, id TaskID) (*TaskRecord, error) {
	rec, err := a.find(ctx, id, nil)
	if err != nil {
		return nil, err
	}
	r := a.taskRecord(string(id), rec.Queue, rec.State, rec.Body, rec.Session, rec.Recovered, rec.Due, rec.Died, rec.Meta, rec.Done)
	if r.State == StateActive {
		b := a.core.Broker()
		if r.Running, _, err = b.AttemptStarted(ctx, b.Queue(rec.Queue), string(id)); err != nil {
			return nil, fmt.Errorf("rediq: %w", err)
		}
	}
	return r, nil
}

// find looks the task up in queues (nil: all).
func (a *App) find(ctx context.Context, id TaskID, queues []string) (*broker.Record, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: empty id", ErrTaskNotFound)
	}
	rec, err := a.core.Broker().Find(ctx, string(id), queues)
	switch {
	case errors.Is(err, broker.ErrNotFound):
		return nil, fmt.Errorf("%w: %q", ErrTaskNotFound, id)
	case err != nil:
		return nil, fmt.Errorf("rediq: %w", err)
	}
	return rec, nil
}

// taskRecord builds a TaskRecord from what Redis holds.
func (a *App) taskRecord(id, queue string, state broker.State, body []byte, session string, recovered int,
	due, died int64, meta broker.Meta, done *broker.Done) *TaskRecord {
	r := &TaskRecord{ID: TaskID(id), Queue: queue, Recovered: recovered, MaxRetries: -1,
		Retention: meta.Retention}
	if meta.ExpireAt > 0 {
		r.ExpiresAt = time.UnixMilli(meta.ExpireAt)
	}
	var env codec.Envelope
	if err := codec.DecodeInto(body, &env); err == nil {
		_ = codec.Complete(&env, id) // a record without a time shows none
		r.Name, r.Priority, r.Args, r.Retried, r.LastError = env.Name, env.Priority, env.Args, env.Retried, env.Error
		if env.EnqueuedAt > 0 {
			r.EnqueuedAt = time.UnixMilli(env.EnqueuedAt)
		}
		r.MaxRetries = env.MaxRetries
		if def, ok := a.core.Task(env.Name); ok && r.MaxRetries < 0 {
			r.MaxRetries = def.Retries
		}
		if r.Retention == 0 {
			r.Retention = time.Duration(env.RetentionMs) * time.Millisecond
		}
		if env.Unknown > 0 && r.LastError == "" {
			r.LastError = "unknown task name"
		}
		defer func() {
			if r.State == StateScheduled && (env.Retried > 0 || env.Unknown > 0) {
				r.State = StateRetry
			}
		}()
	} else {
		r.LastError = "undecodable record: " + err.Error()
	}
	switch state {
	case broker.StateActive:
		r.State, r.Worker = StateActive, session
	case broker.StateScheduled:
		r.State, r.DueAt = StateScheduled, time.UnixMilli(due)
	case broker.StateDead:
		r.State, r.FinishedAt = StateDead, time.UnixMilli(died)
	case broker.StateFinished:
		switch done.State {
		case broker.DoneSucceeded:
			r.State = StateSucceeded
		case broker.DoneCancelled:
			r.State = StateCancelled
		default:
			r.State = StateExpired
		}
		r.FinishedAt, r.Worker, r.Result, r.Retention = time.UnixMilli(done.Finished), done.Worker, done.Result, done.Retention
		if done.Started > 0 {
			r.StartedAt = time.UnixMilli(done.Started)
		}
		if done.Reason != "" {
			r.LastError = done.Reason
		}
	default: // pending, recovering, or mid-script
		r.State = StatePending
	}
	return r
}

// ListTasks returns a page of queue's tasks in state, in the state's natural
// order, and how many the state holds in all:
//
//   - pending: the order they will run (tasks taken back from dead workers
//     first, then by priority and enqueue order);
//   - scheduled and retry: by due time (both live in the same index, so the
//     total of either counts a scan of it);
//   - active: in no particular order;
//   - dead: most recent death first;
//   - succeeded, cancelled, expired (kept only with Retention): latest
//     retention end first.
func (a *App) ListTasks(ctx context.Context, queue string, state TaskState, opt ListOptions) ([]*TaskRecord, int, error) {
	if err := broker.ValidateQueueName(queue); err != nil {
		return nil, 0, fmt.Errorf("rediq: %w", err)
	}
	if opt.Offset < 0 || opt.Limit < 0 {
		return nil, 0, fmt.Errorf("%w: offset %d and limit %d must not be negative", ErrInvalidOption, opt.Offset, opt.Limit)
	}
	if opt.Limit == 0 {
		opt.Limit = 100
	}
	b := a.core.Broker()
	q := b.Queue(queue)
	if state == StateScheduled || state == StateRetry {
		return a.listScheduled(ctx, q, state, opt)
	}
	idx, bstate := map[TaskState]broker.ListIndex{
		StatePending: broker.ListPending, StateActive: broker.ListActive, StateDead: broker.ListDead,
		StateSucceeded: broker.ListSucceeded, StateCancelled: broker.ListCancelled, StateExpired: broker.ListExpired,
	}[state], map[TaskState]broker.State{
		StatePending: broker.StatePending, StateActive: broker.StateActive, StateDead: broker.StateDead,
		StateSucceeded: broker.StateFinished, StateCancelled: broker.StateFinished, StateExpired: broker.StateFinished,
	}[state]
	if bstate == "" {
		_, err := ParseTaskState(string(state))
		return nil, 0, err
	}
	page, total, err := b.List(ctx, q, idx, opt.Offset, opt.Limit)
	if err != nil {
		return nil, 0, fmt.Errorf("rediq: list %s tasks of %q: %w", state, queue, err)
	}
	var sessions map[string]string
	if state == StateActive {
		if sessions, err = b.Holders(ctx, q, ids(page)); err != nil {
			return nil, 0, fmt.Errorf("rediq: list active tasks of %q: %w", queue, err)
		}
	}
	out := make([]*TaskRecord, 0, len(page))
	for _, l := range page {
		if l.Body == nil { // finished or expired while the page was read
			continue
		}
		var died int64
		if state == StateDead {
			died = l.DiedAt()
		}
		out = append(out, a.taskRecord(l.ID, queue, bstate, l.Body, sessions[l.ID], 0, 0, died, l.Meta, l.Done))
	}
	return out, total, nil
}

func ids(ls []broker.Listed) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.ID
	}
	return out
}

// listScheduled pages the scheduled index filtered to state (scheduled: first
// attempt ahead; retry: waiting after a failure), scanning it whole.
func (a *App) listScheduled(ctx context.Context, q *broker.Queue, state TaskState, opt ListOptions) ([]*TaskRecord, int, error) {
	var out []*TaskRecord
	total := 0
	err := a.core.Broker().Scan(ctx, q, func(page []broker.Listed) error {
		for _, l := range page {
			if l.Body == nil {
				continue
			}
			r := a.taskRecord(l.ID, q.Name, broker.StateScheduled, l.Body, "", 0, l.DueAt(), 0, l.Meta, nil)
			if r.State != state {
				continue
			}
			if total >= opt.Offset && len(out) < opt.Limit {
				out = append(out, r)
			}
			total++
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("rediq: list %s tasks of %q: %w", state, q.Name, err)
	}
	return out, total, nil
}

// CancelTask cancels a task that has not finished. A scheduled, pending or
// retry-waiting task is cancelled at once and never runs. An active one — on
// whichever worker, in whichever process — has its handler's ctx cancelled
// with cause ErrCancelled (within a few ms: the worker hears it by pub/sub),
// is not retried, and ends StateCancelled; CancelTask returns once the request
// is recorded, before the handler returns. A handler that ignores its ctx and
// returns nil anyway ends succeeded: the work was done. A task a worker has
// fetched but not started never starts. Without Retention nothing is kept of a cancelled task
// (it is counted per queue). A finished task: an error matching
// ErrTaskFinished; an unknown one: ErrTaskNotFound.
func (a *App) CancelTask(ctx context.Context, id TaskID) error {
	rec, err := a.find(ctx, id, nil)
	if err != nil {
		return err
	}
	if rec.State == broker.StateDead || rec.State == broker.StateFinished {
		return fmt.Errorf("%w: %q", ErrTaskFinished, id)
	}
	b := a.core.Broker()
	now, err := b.Cancel(ctx, b.Queue(rec.Queue), string(id))
	if err == nil && now {
		err = a.endInBatch(ctx, rec.Body, id)
	}
	switch {
	case errors.Is(err, broker.ErrFinished):
		return fmt.Errorf("%w: %q", ErrTaskFinished, id)
	case errors.Is(err, broker.ErrNotFound): // finished meanwhile, without retention
		return fmt.Errorf("%w: %q (it finished meanwhile)", ErrTaskFinished, id)
	case err != nil:
		return fmt.Errorf("rediq: %w", err)
	}
	return nil
}

// DeleteTask removes a task that is not active, in whatever state: waiting,
// dead, or a finished task's retained record. Its Unique or Memoize lock is
// released. An active task: an error matching ErrTaskActive (cancel it first).
func (a *App) DeleteTask(ctx context.Context, id TaskID) error {
	rec, err := a.find(ctx, id, nil)
	if err != nil {
		return err
	}
	b := a.core.Broker()
	err = b.Delete(ctx, b.Queue(rec.Queue), string(id))
	if err == nil && rec.State != broker.StateDead && rec.State != broker.StateFinished {
		err = a.endInBatch(ctx, rec.Body, id) // it had not ended: its batch counts it now
	}
	switch {
	case errors.Is(err, broker.ErrActive):
		return fmt.Errorf("%w: %q: cancel it instead", ErrTaskActive, id)
	case errors.Is(err, broker.ErrNotFound):
		return fmt.Errorf("%w: %q", ErrTaskNotFound, id)
	case err != nil:
		return fmt.Errorf("rediq: %w", err)
	}
	return nil
}

// RequeueTask makes a dead or retry-waiting task run again now, at the back
// of its priority, with its retry count (and unknown-task count) reset and
// its last error cleared. Any other state is an error saying which it is.
func (a *App) RequeueTask(ctx context.Context, id TaskID) error {
	rec, err := a.find(ctx, id, nil)
	if err != nil {
		return err
	}
	r := a.taskRecord(string(id), rec.Queue, rec.State, rec.Body, rec.Session, rec.Recovered, rec.Due, rec.Died, rec.Meta, rec.Done)
	if r.State != StateDead && r.State != StateRetry {
		if r.State == StateActive {
			return fmt.Errorf("%w: %q: only dead or retry-waiting tasks can be requeued", ErrTaskActive, id)
		}
		return fmt.Errorf("rediq: task %q is %s: only dead or retry-waiting tasks can be requeued", id, r.State)
	}
	n, err := a.requeue(ctx, rec.Queue, []broker.Listed{{ID: string(id), Body: rec.Body}})
	if err != nil {
		return err
	}
	if n == 0 {
		// Moved meanwhile — or this very call ran twice (a reply lost and the
		// script re-sent): pending again is what was asked.
		if now, err := a.GetTask(ctx, id); err == nil && now.State == StatePending {
			return nil
		}
		return fmt.Errorf("rediq: task %q changed state while being requeued; look again", id)
	}
	return nil
}

// RequeueDead requeues every dead task of queue (as RequeueTask does) and
// returns how many.
func (a *App) RequeueDead(ctx context.Context, queue string) (int, error) {
	if err := broker.ValidateQueueName(queue); err != nil {
		return 0, fmt.Errorf("rediq: %w", err)
	}
	b := a.core.Broker()
	q := b.Queue(queue)
	// Those dead now, at most: tasks that die again meanwhile are not
	// requeued twice by one call. Records that cannot be requeued (undecodable
	// messages) are stepped over and said.
	limit, err := b.DeadCount(ctx, q)
	if err != nil {
		return 0, fmt.Errorf("rediq: requeue dead of %q: %w", queue, err)
	}
	total, skipped, seen := 0, 0, 0
	var firstErr error
	for int64(seen) < limit {
		page, err := b.DeadIDs(ctx, q, skipped, int(min(500, limit-int64(seen))))
		if err != nil {
			return total, fmt.Errorf("rediq: requeue dead of %q: %w", queue, err)
		}
		if len(page) == 0 {
			break
		}
		seen += len(page)
		var ok []broker.Listed
		for _, l := range page {
			if _, err := requeued(l); err != nil {
				skipped++
				firstErr = cmp.Or(firstErr, err)
				continue
			}
			ok = append(ok, l)
		}
		n, err := a.requeue(ctx, queue, ok)
		total += n
		if err != nil {
			return total, err
		}
	}
	if firstErr != nil {
		return total, fmt.Errorf("rediq: requeued %d dead tasks of %q, left %d that cannot be requeued (delete them): first: %w",
			total, queue, skipped, firstErr)
	}
	return total, nil
}

// requeued is t's record reset for a requeue.
func requeued(t broker.Listed) (broker.Requeued, error) {
	var env codec.Envelope
	if err := codec.DecodeInto(t.Body, &env); err != nil {
		return broker.Requeued{}, fmt.Errorf("rediq: requeue %q: its record cannot be read (%v); delete it instead", t.ID, err)
	}
	if strings.HasPrefix(env.Name, "(") { // the wrapper of an undecodable message
		return broker.Requeued{}, fmt.Errorf("rediq: requeue %q: it is an undecodable message (%s); delete it instead", t.ID, env.Error)
	}
	env.Retried, env.Unknown, env.Error, env.Stack = 0, 0, "", ""
	return broker.Requeued{ID: t.ID, Slot: broker.Slot(env.Priority), Flow: env.Flow(), Body: codec.Encode(&env)}, nil
}

// requeue resets and requeues tasks of queue, returning how many moved.
func (a *App) requeue(ctx context.Context, queue string, ts []broker.Listed) (int, error) {
	rs := make([]broker.Requeued, 0, len(ts))
	for _, t := range ts {
		r, err := requeued(t)
		if err != nil {
			return 0, err
		}
		rs = append(rs, r)
	}
	b := a.core.Broker()
	ok, err := b.Requeue(ctx, b.Queue(queue), rs)
	if err != nil {
		return 0, fmt.Errorf("rediq: %w", err)
	}
	n := 0
	for _, k := range ok {
		if k {
			n++
		}
	}
	return n, nil
}

// endInBatch counts a task that ended without a worker (cancelled or deleted
// while it waited) in its batch, if it has one, so that the batch can complete.
func (a *App) endInBatch(ctx context.Context, body []byte, id TaskID) error {
	var env codec.Envelope
	if codec.DecodeInto(body, &env) != nil || env.Batch == 0 {
		return nil
	}
	b := a.core.Broker()
	k := b.Batch(env.Batch)
	completed, err := b.BatchNote(ctx, k, broker.BatchNoteParams{Task: string(id), End: broker.EndDropped})
	if err != nil {
		return fmt.Errorf("batch %d: count the task's end: %w", env.Batch, err)
	}
	if completed {
		return a.onComplete(ctx, k)
	}
	return nil
}
