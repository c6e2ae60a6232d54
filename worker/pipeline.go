package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
	"github.com/rediq/rediq/internal/core"
)

// A task's attempt is a pipeline of small steps (process):
//
//	decode → resolve the definition → before-start gates → prepare →
//	call (through the handler middleware) → outcome → settle
//
// Each step that ends the attempt early settles the task itself and tells the
// observers how it ended. Gates are where limits and run windows plug in;
// observers (batch accounting today; statistics, metrics and tracing next)
// see each start and each end without the attempt branching on them.

// run is one attempt on its way through the pipeline.
//
// Its limits, the retries and the timeout (resolve), are state's MaxRetries
// and Timeout, set before the rest of state (prepare): fields of their own
// would make every task's allocation a size class bigger.
type run struct {
	j       *job
	env     *envelope
	def     *core.TaskDef
	st      *core.State  // the handler's view of the task (prepare)
	started time.Time    // when the handler was called
	hctx    leaseContext // the handler's context (execute; one allocation with the run)
	state   core.State   // what st points to (prepare), and its context (sctx): the same
	sctx    core.StateContext
}

// ctx is the handler's context before its timeout and cancel (prepare).
func (r *run) ctx() context.Context { return &r.sctx }

// gate decides whether r may start now. One that says no has settled the
// task (given it back, ended it, or set it aside) and told the observers.
type gate func(w *Worker, r *run) bool

// startGates run in order before a handler starts; the first to say no ends
// the attempt. Rate limits, concurrency limits and run windows go here.
var startGates = []gate{
	(*Worker).notPoison,
	(*Worker).inRunWindow,
	(*Worker).batchRunning,
	(*Worker).notCancelled,
	(*Worker).notExpiredBeforeStart,
}

// handlerFunc calls a task's handler; middleware wraps it.
type handlerFunc func(ctx context.Context, def *core.TaskDef, args []byte) (any, error)

// middleware wraps every handler call (tracing, metrics); none yet. The
// innermost is call, which turns a panic into a *rediq.PanicError.
var middleware []func(next handlerFunc) handlerFunc

// handler is call wrapped in the middleware, outermost first.
func handler() handlerFunc {
	h := handlerFunc(call)
	for i := len(middleware) - 1; i >= 0; i-- {
		h = middleware[i](h)
	}
	return h
}

// ending is how an attempt, or a task that never got one, ended, as the
// observers see it.
type ending struct {
	attempt broker.BatchAttempt // AttemptNone: the handler did not run (or its run does not count)
	end     broker.BatchEnd     // EndNone: the task goes on (a retry follows)
	err     error               // the attempt's error, or why the task ended
	stopped error               // the task was cancelled because its batch stopped: why
}

// attemptObserver sees the attempts of the worker's tasks.
type attemptObserver interface {
	// starting: r's handler is about to be called (r.st is set).
	starting(r *run)
	// succeeded: r's handler returned result, before the success is settled.
	succeeded(r *run, result any)
	// ended: r's task was settled as e says.
	ended(j *job, env *codec.Envelope, st *core.State, e ending)
}

// observe tells every observer how j ended; st is nil before prepare.
func (w *Worker) observe(j *job, env *codec.Envelope, st *core.State, e ending) {
	for _, o := range w.observers {
		o.ended(j, env, st, e)
	}
}

// process runs j's attempt through the pipeline; sl is its runner's slot.
func (w *Worker) process(sl *slot, j *job) {
	env := envelopePool.Get().(*envelope)
	defer envelopePool.Put(env)
	if !w.decode(j, env) {
		return
	}
	r := &j.run
	r.j, r.env = j, env
	if !w.resolve(r) {
		return
	}
	for _, g := range startGates {
		if !g(w, r) {
			return
		}
	}
	w.prepare(r)
	result, err, cause, ok := w.execute(sl, r)
	if ok {
		w.outcome(r, result, err, cause)
	}
}

// decode reads j's message into env; an undecodable one goes to dead (or
// ends expired, if its deadline passed: nothing of it can run anyway).
func (w *Worker) decode(j *job, env *envelope) bool {
	err := env.decode(j.raw)
	if err == nil {
		err = codec.Complete(&env.Envelope, j.id)
	}
	if err != nil {
		if !w.expired(j, nil, broker.EndDropped) {
			w.bury(j, deadUndecodable(j.id, j.raw, err, w.clock.Now()), "undecodable message", err)
		}
		return false
	}
	return !w.expired(j, &env.Envelope, broker.EndDropped)
}

// resolve finds r's task definition and its limits; an unknown task is
// given back for a worker that knows it.
func (w *Worker) resolve(r *run) bool {
	def, ok := w.app.Task(r.env.Name)
	if !ok {
		w.unknownTask(r.j, r.env)
		return false
	}
	r.def, r.state.MaxRetries, r.state.Timeout = def, def.Retries, def.Timeout
	if r.env.MaxRetries >= 0 {
		r.state.MaxRetries = r.env.MaxRetries
	}
	if r.env.TimeoutMs > 0 {
		r.state.Timeout = time.Duration(r.env.TimeoutMs) * time.Millisecond
	}
	return true
}

// notPoison is the gate that buries a task whose workers died (or froze)
// running it more than Config.MaxRecoveries times in a row.
func (w *Worker) notPoison(r *run) bool {
	if r.j.recovered <= w.cfg.MaxRecoveries {
		return true
	}
	err := fmt.Errorf("rediq: poison task: its worker died or froze while running it %d times (limit %d); not run again",
		r.j.recovered, w.cfg.MaxRecoveries)
	r.env.Error = err.Error()
	w.bury(r.j, record(r.env.Envelope), "poison task", err)
	w.observe(r.j, &r.env.Envelope, nil, ending{end: broker.EndFailed, err: err})
	return false
}

// inRunWindow is the gate of a task with a run window (rediq.RunWindow):
// outside it, the task waits in the scheduled set until the window opens
// (settle r with its record unchanged: no attempt is counted).
func (w *Worker) inRunWindow(r *run) bool {
	win := r.def.Window
	if win == nil {
		return true
	}
	now := w.clock.Now()
	if win.Open(now) {
		return true
	}
	delay := time.Hour // never opens (not possible for a valid spec): look again later
	if at, ok := win.Next(now); ok {
		// A few ms past the opening: Redis's clock may be a little ahead.
		delay = at.Sub(now) + 5*time.Millisecond
	}
	w.log.Debug("outside its run window: the task waits", zap.String("task_id", r.j.id), zap.Duration("for", delay))
	w.settle(r.j, broker.Retry, record(r.env.Envelope), min(delay, maxBackoff))
	return false
}

// batchRunning is the gate of a batch's task: it starts only while its
// batch runs (batchStart).
func (w *Worker) batchRunning(r *run) bool {
	return r.env.Batch == 0 || w.batchStart(r.j, &r.env.Envelope)
}

// notCancelled is the gate of a task cancelled before it started: it never
// runs (settle ends it cancelled, or gives it back if the request no longer
// stands).
func (w *Worker) notCancelled(r *run) bool {
	if !w.cancelRequested(r.j.id) {
		return true
	}
	w.forgetCancel(r.j.id)
	w.settleAttempt(r.j, broker.Cancel, nil, 0, nil)
	w.observe(r.j, &r.env.Envelope, nil, ending{end: unstarted(r.env.Retried, r.j.recovered)})
	return false
}

// notExpiredBeforeStart checks the deadline again: the gates before may have
// taken a round trip.
func (w *Worker) notExpiredBeforeStart(r *run) bool {
	return !w.expired(r.j, &r.env.Envelope, unstarted(r.env.Retried, r.j.recovered))
}

// prepare builds the handler's view of the task and tells the observers it
// starts.
func (w *Worker) prepare(r *run) {
	env := r.env
	maxRetries, timeout := r.state.MaxRetries, r.state.Timeout // resolve's
	r.state = core.State{
		ID: env.ID, Name: env.Name, Queue: r.j.q.Name, Priority: env.Priority, Args: env.Args,
		EnqueuedAt: env.EnqueuedAt, Worker: w.cfg.Name, MaxRetries: maxRetries,
		Timeout: timeout, Retried: env.Retried, Recovered: r.j.recovered, LimitKey: env.LimitKey,
		Exec: w.exec, Log: w.log,
	}
	r.st = &r.state
	for _, o := range w.observers {
		o.starting(r)
	}
	r.sctx = core.StateContext{Context: w.base, State: r.st}
	w.fireTaskHooks(r.ctx(), r.st, rediq.BeforeTaskStart)
}

// cancelCause sorts why a handler's context ended before it returned: its
// timeout (nil: an ordinary failure), or a cancel that is not the task's
// failure.
func cancelCause(err, cause error) (cancelled bool) {
	return err != nil && cause != nil && !errors.Is(cause, context.DeadlineExceeded)
}
