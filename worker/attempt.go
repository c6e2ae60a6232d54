package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/backoff"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
	"github.com/rediq/rediq/internal/core"
	"github.com/vmihailenco/msgpack/v5"
	"go.uber.org/zap"
)

// settlement is j's outcome o, as the settler sends it.
func (w *Worker) settlement(j *job, o broker.Outcome) broker.Settlement {
	return broker.Settlement{Queue: j.q.Queue, Session: w.session, Token: j.token, ID: j.id, Outcome: o}
}

// setAside keeps j, which a stop kept from running, to be given back.
func (w *Worker) setAside(j *job) {
	w.pool.leftMu.Lock()
	w.pool.leftover = append(w.pool.leftover, j)
	w.pool.leftMu.Unlock()
}

// settle hands j's outcome to the settler and frees its prefetch slot, so the
// fetcher refills it while the outcome travels. The settler's backlog is
// bounded: when it is full (Redis slow or away) settle waits, the runners stop,
// and the fetcher, with no free slot, fetches nothing.
func (w *Worker) settle(j *job, o broker.Outcome, body []byte, delay time.Duration) {
	w.settleAttempt(j, o, body, delay, nil)
}

// settleAttempt is settle with what the attempt left for a task whose record
// is kept when it finishes.
func (w *Worker) settleAttempt(j *job, o broker.Outcome, body []byte, delay time.Duration, a *broker.Attempt) {
	s := w.settlement(j, o)
	s.Body, s.Delay, s.Attempt = body, delay, a
	w.settler.add(j, s)
	w.free(j)
}

// encodeResult encodes a handler's result for its record (msgpack); a result
// that cannot be encoded is logged and kept as nil.
func (w *Worker) encodeResult(st *core.State, result any) []byte {
	b, err := msgpack.Marshal(result)
	if err != nil {
		st.Logger().Error("cannot encode the task's result: it is kept as nil", zap.Error(err))
		b, _ = msgpack.Marshal(nil)
	}
	return b
}

// settleNow is settle for the fetcher and the heartbeater, which must not
// wait for room: they give back tasks no runner will take (rarely: a record
// gone, a pause), and must stay stoppable.
func (w *Worker) settleNow(j *job, o broker.Outcome) {
	w.settler.push(settleItem{s: w.settlement(j, o), j: j})
	w.free(j)
}

// execute calls r's handler in slot sl, under its timeout and the lease
// clock. ok is false when the outcome is not this attempt's to settle: the
// watchdog settled it already, or the lease ran out and was not renewed.
func (w *Worker) execute(sl *slot, r *run) (result any, err, cause error, ok bool) {
	j := r.j
	tctx, cancel := context.WithCancelCause(r.ctx())
	r.started = w.clock.Now()
	timesOut := r.started.Add(r.state.Timeout) // the real clock, as context.WithTimeout's
	if w.cfg.skewed {
		timesOut = time.Now().Add(r.state.Timeout)
	}
	sl.mu.Lock()
	sl.cancel, sl.gen, sl.timesOut = cancel, j.gen, timesOut
	sl.deadline = r.started.Add(r.state.Timeout + w.cfg.TimeoutGrace)
	sl.running = attempt{j: j, env: &r.env.Envelope, def: r.def, maxRetries: r.state.MaxRetries, timeout: r.state.Timeout}
	if r.state.Timeout > 0 {
		sl.armLocked(r.state.Timeout, timesOut)
	}
	sl.mu.Unlock()
	// A cancel may have passed this slot just before it was set.
	switch {
	case w.aborted():
		cancel(errStopping)
	case j.gen.lost.Load():
		cancel(rediq.ErrLeaseLost)
	case !w.lease.valid():
		cancel(errFenced)
	case w.cancelRequested(j.id):
		cancel(rediq.ErrCancelled)
	case r.state.Timeout <= 0:
		cancel(context.DeadlineExceeded)
	}
	w.entered(j)
	r.hctx = leaseContext{Context: tctx, lease: &w.lease, cancel: cancel, deadline: timesOut}
	result, err = handler()(&r.hctx, r.def, r.env.Args)
	// Decided past the lease clock (the handler returned after a freeze, or
	// while Redis was away): the task may run elsewhere already.
	late := !w.lease.valid()
	defer w.forgetCancel(j.id)
	sl.mu.Lock()
	abandoned := sl.abandoned
	sl.cancel, sl.gen, sl.running = nil, nil, attempt{}
	sl.mu.Unlock()
	cause = context.Cause(tctx) // DeadlineExceeded: timed out; else why it was cancelled
	cancel(nil)
	if abandoned { // the watchdog settled it as failed already
		w.pool.slotMu.Lock()
		w.pool.abandoned--
		w.pool.slotMu.Unlock()
		w.log.Warn("abandoned handler returned at last", zap.String("task_id", r.env.ID), zap.Error(err))
		return nil, nil, nil, false
	}
	if late {
		w.log.Warn("handler returned after the worker's lease clock ran out: its outcome waits for a renewal (dropped if the task was taken over)",
			zap.String("task_id", r.env.ID), zap.Error(err))
		if !w.awaitLease(j) {
			return nil, nil, nil, false
		}
	}
	return result, err, cause, true
}

// outcome settles what r's handler returned: success, a cancel, a failure
// (retried or dead); then the observers hear of it.
func (w *Worker) outcome(r *run, result any, err, cause error) {
	j, env, st := r.j, r.env, r.st
	var att *broker.Attempt
	if env.RetentionMs > 0 || env.MemoMs > 0 {
		att = &broker.Attempt{Started: r.started, Worker: w.cfg.Name}
	}
	if cancelCause(err, cause) {
		w.cancelled(r, err, cause, att)
		return
	}
	if errors.Is(cause, context.DeadlineExceeded) && err != nil {
		err = fmt.Errorf("%w after %s", rediq.ErrTimeout, r.state.Timeout)
	}
	if err == nil {
		st.Result, st.HasResult = result, true
		w.fireTaskHooks(r.ctx(), st, rediq.AfterTaskSuccess)
		if att != nil {
			att.Result = w.encodeResult(st, result)
		}
		for _, o := range w.observers {
			o.succeeded(r, result)
		}
		w.settleAttempt(j, broker.Ack, nil, 0, att)
		w.observe(j, &env.Envelope, st, ending{attempt: broker.AttemptRan, end: broker.EndSucceeded})
		return
	}
	st.Err = err
	retry := willRetry(err, env.Retried, r.state.MaxRetries)
	if retry {
		w.fireTaskHooks(r.ctx(), st, rediq.BeforeTaskRetry)
	} else {
		w.fireTaskHooks(r.ctx(), st, rediq.AfterTaskFailure)
	}
	w.failed(j, env.Envelope, r.def, r.state.MaxRetries, err)
	w.observe(j, &env.Envelope, st, failedEnding(err, retry))
}

// failedEnding is how a failed attempt ends: a retry follows, or dead.
func failedEnding(err error, retry bool) ending {
	e := ending{attempt: broker.AttemptFailed, end: broker.EndFailed, err: err}
	if retry {
		e.end = broker.EndNone
	}
	return e
}

// cancelled settles an attempt whose handler was cancelled (cause) and
// returned err.
func (w *Worker) cancelled(r *run, err, cause error, att *broker.Attempt) {
	j, st := r.j, r.st
	switch {
	case errors.Is(cause, rediq.ErrBatchStopped) && r.env.Batch > 0:
		st.Err = fmt.Errorf("%w: %w", cause, err)
		w.fireTaskHooks(r.ctx(), st, rediq.AfterTaskFailure)
		reason := strings.TrimPrefix(cause.Error(), rediq.ErrBatchStopped.Error()+": ")
		w.endStopped(w.base, j, &r.env.Envelope, st, broker.EndCancelled, reason, cause)
	case errors.Is(cause, rediq.ErrCancelled):
		// CancelTask: not retried; it ends cancelled.
		st.Err = fmt.Errorf("%w: %w", rediq.ErrCancelled, err)
		w.fireTaskHooks(r.ctx(), st, rediq.AfterTaskFailure)
		if att == nil {
			att = &broker.Attempt{Started: r.started, Worker: w.cfg.Name}
		}
		w.settleAttempt(j, broker.Cancel, nil, 0, att)
		w.observe(j, &r.env.Envelope, st, ending{attempt: broker.AttemptFailed, end: broker.EndCancelled})
	case errors.Is(cause, errStopping), errors.Is(cause, errFenced):
		// Not an attempt: back to the queue (a no-op if the lease is gone).
		w.settle(j, broker.Requeue, nil, 0)
	default: // the lease was lost: another worker has the task
		w.release(j)
	}
}

// unstarted is the batch end of a task dropped after batchStart noted it as
// started: on its first attempt its handler never ran, so it never started.
func unstarted(retried, recovered int) broker.BatchEnd {
	if retried == 0 && recovered == 0 {
		return broker.EndUnstarted
	}
	return broker.EndDropped
}

// expired ends j unrun, as expired, if its ExpireIn/ExpireAt deadline has
// passed by the worker's clock: a task that waited past it in the prefetch
// buffer (or for a renewed lease, or for its batch's check) never starts, and
// ends as one found expired at fetch does — not an attempt, counted per queue,
// and told the observers (env is nil when it could not be decoded) with the
// end: EndDropped, or EndUnstarted once batchStart ran.
func (w *Worker) expired(j *job, env *codec.Envelope, end broker.BatchEnd) bool {
	if j.expireAt.IsZero() {
		return false
	}
	now := w.clock.Now()
	if now.Before(j.expireAt) {
		return false
	}
	w.log.Info("task expired before it could start: not run", zap.String("task_id", j.id),
		zap.String("queue", j.q.Name), zap.Duration("late", now.Sub(j.expireAt)))
	w.settle(j, broker.Expire, nil, 0)
	if env != nil {
		w.observe(j, env, nil, ending{end: end})
	}
	return true
}

// failed settles a failed attempt: a retry after the task's backoff, or dead.
func (w *Worker) failed(j *job, env codec.Envelope, def *core.TaskDef, maxRetries int, err error) {
	id := env.ID
	env.Error = err.Error()
	env.Stack = ""
	var pe *rediq.PanicError
	if errors.As(err, &pe) {
		env.Stack = string(pe.Stack)
	}
	log := w.log.With(zap.String("task_id", id), zap.String("task", env.Name), zap.String("queue", j.q.Name),
		zap.Int("attempt", env.Retried+1), zap.Error(err))
	if willRetry(err, env.Retried, maxRetries) {
		delay := w.backoff(def, env.Retried)
		env.Retried++
		log.Warn("task failed; will retry", zap.Duration("in", delay))
		w.settle(j, broker.Retry, record(env), delay)
		return
	}
	log.Error("task failed for good: moved to dead", zap.Int("max_retries", maxRetries))
	w.settle(j, broker.Kill, record(env), 0)
}

// willRetry decides what follows a failed attempt: a retry, unless the
// handler said SkipRetry or the retries are used up.
func willRetry(err error, retried, maxRetries int) bool {
	return !errors.Is(err, rediq.ErrSkipRetry) && retried < maxRetries
}

// record encodes env as it is stored: under its id, so without "i", and
// without "t" when the id (a generated one) holds the time.
func record(env codec.Envelope) []byte {
	if ms, ok := codec.IDTime(env.ID); ok && ms == env.EnqueuedAt {
		env.EnqueuedAt = 0
	}
	env.ID = ""
	return codec.Encode(&env)
}

// maxBackoff caps a retry delay (what a scheduled score and settle.lua accept).
const maxBackoff = 365 * 24 * time.Hour

// backoff calls the task's Backoff, which is user code: a panic or a negative
// delay falls back to the default backoff instead of killing the worker.
func (w *Worker) backoff(def *core.TaskDef, retried int) (d time.Duration) {
	defer func() {
		if r := recover(); r != nil {
			w.log.Error("task's Backoff panicked; using the default backoff", zap.String("task", def.Name),
				zap.Int("retried", retried), zap.Any("panic", r))
			d = backoff.Exponential(retried)
		}
	}()
	d = def.Backoff(retried)
	return min(max(d, 0), maxBackoff)
}

// unknownTask gives back, after a short delay, a task whose name this worker
// does not know, and buries it only after Config.UnknownTaskRetries: in a
// rolling deploy the new producers' tasks reach the old workers, and a worker
// that knows the task may already serve the queue (programs sharing it), so
// the delay stays short (unknownDelay) for the task to reach it soon.
func (w *Worker) unknownTask(j *job, env *envelope) {
	err := fmt.Errorf("%w %q: no worker serving queue %q has it registered (this one has %v)",
		rediq.ErrUnknownTask, env.Name, j.q.Name, w.app.TaskNames())
	env.Error = err.Error()
	if env.Unknown < w.cfg.UnknownTaskRetries {
		delay := unknownDelay(env.Unknown)
		env.Unknown++
		w.log.Warn("unknown task; will retry (a worker that has it may be deploying)", zap.String("task_id", env.ID),
			zap.String("task", env.Name), zap.String("queue", j.q.Name), zap.Int("attempt", env.Unknown), zap.Duration("in", delay))
		w.settle(j, broker.Retry, record(env.Envelope), delay)
		return
	}
	w.bury(j, record(env.Envelope), "unknown task", err)
	w.observe(j, &env.Envelope, nil, ending{end: broker.EndFailed, err: err})
}

// Delays of unknown-task retries: unknownDelayBase doubling up to
// unknownDelayCap. Short, because the task waits out the whole delay even when a
// worker that knows it is up; capped low, so that it waits at most that long
// once the worker that knows it appears. Config.UnknownTaskRetries, not the
// delay, makes the total a rolling deploy's length.
const (
	unknownDelayBase = 250 * time.Millisecond
	unknownDelayCap  = 3 * time.Second
)

// unknownDelay is the delay before unknown-task retry n+1 (n retries done).
func unknownDelay(n int) time.Duration {
	if n >= 8 { // past the cap already; no shift overflow
		return unknownDelayCap
	}
	return min(unknownDelayBase<<n, unknownDelayCap)
}

// bury sends a task that cannot run to the dead set.
func (w *Worker) bury(j *job, dead []byte, why string, err error) {
	w.log.Error("task moved to dead", zap.String("task_id", j.id), zap.String("queue", j.q.Name),
		zap.String("reason", why), zap.Error(err))
	w.settle(j, broker.Kill, dead, 0)
}

func call(ctx context.Context, def *core.TaskDef, args []byte) (result any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &rediq.PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return def.Run(ctx, args)
}
