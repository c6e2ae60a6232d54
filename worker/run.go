package worker

import (
	"context"
	"errors"
	"fmt"
	"github.com/vmihailenco/msgpack/v5"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/backoff"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
	"github.com/rediq/rediq/internal/core"
	"github.com/rediq/rediq/internal/executor"
)

// cancelGrace is how long a stop that cancelled running handlers waits for them
// to return before it gives up on them (their leases then expire and another
// worker runs their tasks).
const cancelGrace = 2 * time.Second

// Causes of a handler's cancellation, besides its timeout.
var (
	errStopping = errors.New("rediq: worker stopping")
	errFenced   = errors.New("rediq: worker could not renew its lease in time; the task will run again")
)

func (w *Worker) run(ctx context.Context) (err error) {
	// Redis first: a startup hook may open what a worker that cannot start
	// would leave behind, and a wrong URL is best told once, plainly.
	if err := w.checkRedis(ctx); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	for e := range core.NumEvents {
		w.hooks[e] = w.app.Hooks(e)
	}
	w.exec = executor.New(w.cfg.ExecutorPoolSize)
	wctx := core.WithState(ctx, &core.State{Worker: w.cfg.Name, Exec: w.exec, Log: w.log})
	if err := w.fireWorkerHooks(wctx, core.BeforeWorkerStartup); err != nil {
		w.exec.Close()
		return fmt.Errorf("worker: before_worker_startup: %w", err)
	}
	defer func() {
		if herr := w.fireWorkerHooks(context.WithoutCancel(wctx), core.AfterWorkerShutdown); herr != nil {
			w.log.Error("after_worker_shutdown hook failed", zap.Error(herr))
		}
	}()

	// Redis work that must outlive ctx (settling, heartbeats, the final requeue)
	// runs under bg, cancelled last. Handlers' contexts hang off base, which is
	// never cancelled: a stop or a lost lease cancels each through its runner's
	// slot, which spares every task a registration in a shared parent.
	bg, cancelBG := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBG()
	w.base = context.WithoutCancel(ctx)
	for _, q := range w.queues {
		q.ready.Store(true)
		q.gen.Store(newGeneration())
	}
	ps, err := w.join(ctx)
	if err != nil {
		w.closeExecutor()
		return fmt.Errorf("worker: %w", err)
	}

	for range w.cfg.Concurrency {
		w.startRunner()
	}
	stopBG := make(chan struct{})
	var others sync.WaitGroup
	goOther := func(f func()) {
		others.Add(1)
		go func() {
			defer others.Done()
			f()
		}()
	}
	goOther(func() { w.heartbeater(bg, stopBG) })
	goOther(func() { w.settler.loop(bg, stopBG) })
	// The subscription lives as long as the heartbeats that probe it: a
	// draining worker fetches nothing more, but the cancel requests for the
	// tasks it still runs come on the wake channels.
	goOther(func() { w.subscriber(bg, ps, stopBG) })
	goOther(func() { w.watchdog(stopBG) })
	goOther(func() { w.fencer(stopBG) })
	goOther(func() { w.batchWatcher(stopBG) })
	goOther(func() { w.out.loop(bg, stopBG) })
	fetchCtx, stopFetch := context.WithCancel(bg)
	fetchDone := make(chan struct{})
	go func() {
		defer close(fetchDone)
		w.fetcher(fetchCtx)
	}()

	// Run until asked to stop.
	var drainCtx context.Context
	select {
	case <-ctx.Done():
		var cancel context.CancelFunc
		drainCtx, cancel = context.WithTimeout(bg, w.cfg.ShutdownTimeout)
		defer cancel()
	case drainCtx = <-w.stopReq:
	}
	w.log.Info("worker stopping: fetching stopped, draining", zap.Int64("held", w.held.Load()))

	// Stop fetching, then let the runners finish what is running and prefetched.
	stopFetch()
	<-fetchDone
	close(w.jobs)
	stuck := w.drain(drainCtx)

	// Give back what never started; the settler flushes everything before it stops.
	w.leftMu.Lock()
	for j := range w.jobs { // jobs no runner got to
		w.leftover = append(w.leftover, j)
	}
	left := w.leftover
	w.leftover = nil
	w.leftMu.Unlock()
	for _, j := range left {
		w.settle(j, broker.Requeue, nil, 0)
	}
	close(stopBG)
	others.Wait()

	if stuck > 0 {
		// Their sessions stay registered, so their leases expire and another
		// worker runs the tasks; their executor work may still be running.
		w.closeExecutor()
		err = fmt.Errorf("worker: %d handlers ignored cancellation and were abandoned; their tasks return to their queues when the lease expires (%s)",
			stuck, w.cfg.LeaseTTL)
		w.log.Error("shutdown incomplete", zap.Error(err))
		return err
	}
	// Give back what the session holds and the worker never learned of (a
	// fetch cut short by the stop), then end the session: within a bound, so
	// that a Redis that went away does not hold the stop.
	leaveCtx, cancelLeave := context.WithTimeout(bg, 5*time.Second)
	defer cancelLeave()
	var stranded int
	var leaveErr error
	for _, q := range w.queues {
		if rerr := w.reconcile(leaveCtx, q); rerr != nil {
			leaveErr = errors.Join(leaveErr, rerr)
			continue
		}
		n, lerr := w.b.Leave(leaveCtx, q.Queue, w.session)
		stranded += n
		leaveErr = errors.Join(leaveErr, lerr)
	}
	w.closeExecutor()
	switch {
	case leaveErr != nil:
		err = fmt.Errorf("worker: could not end the session cleanly; whatever it still holds runs again after the lease expires (%s): %w",
			w.cfg.LeaseTTL, leaveErr)
	case stranded > 0:
		err = fmt.Errorf("worker: %d started tasks are still leased to this worker in Redis (settling failed); they run again after the lease expires (%s)",
			stranded, w.cfg.LeaseTTL)
	}
	if err != nil {
		w.log.Error("shutdown incomplete", zap.Error(err))
		return err
	}
	w.log.Info("worker stopped", zap.Int("returned_to_queue", len(left)))
	return nil
}

// join registers the session and its queues and subscribes to their wake
// channels, returning once the subscription is confirmed so that no wake-up
// after this point can be missed.
func (w *Worker) join(ctx context.Context) (*subscription, error) {
	names := make([]string, len(w.queues))
	for i, q := range w.queues {
		names[i] = q.Name
	}
	if err := w.b.RegisterQueues(ctx, names); err != nil {
		return nil, err
	}
	sent := w.cfg.now()
	if _, err := w.beat(ctx, true); err != nil {
		return nil, err
	}
	w.lease.renew(sent, w.cfg.LeaseTTL)
	ps, err := w.subscribe(ctx)
	if err != nil {
		return nil, err
	}
	w.log.Info("worker started", zap.String("redis", w.app.RedisName()), zap.String("namespace", w.b.Namespace()),
		zap.Strings("queues", names), zap.Int("concurrency", w.cfg.Concurrency),
		zap.Int("prefetch", w.cfg.Prefetch), zap.String("session", w.session))
	return ps, nil
}

// drain waits for the runners to finish the jobs until drainCtx ends or a forced
// stop; then it aborts: runners start nothing more and running handlers are
// cancelled, with cancelGrace to return. It reports how many did not.
func (w *Worker) drain(drainCtx context.Context) (stuck int64) {
	done := make(chan struct{})
	go func() {
		w.runners.Wait()
		close(done)
	}()
	select {
	case <-done:
		return 0
	case <-drainCtx.Done():
	case <-w.forced:
	}
	close(w.abort)
	w.cancelRunning(errStopping, func(*slot) bool { return true })
	select {
	case <-done:
		return 0
	case <-time.After(cancelGrace):
		return w.active.Load()
	}
}

// closeExecutor stops the executor pool, waiting a bounded time for functions
// whose callers gave up on them (RunInExecutor returns when its ctx ends).
func (w *Worker) closeExecutor() {
	done := make(chan struct{})
	go func() {
		w.exec.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(cancelGrace):
		w.log.Error("executor functions still running at shutdown; left to finish in the background")
	}
}

// cancelRunning cancels, with cause, the handlers of the slots that match.
func (w *Worker) cancelRunning(cause error, match func(*slot) bool) {
	w.slotMu.Lock()
	defer w.slotMu.Unlock()
	for sl := range w.slots {
		sl.mu.Lock()
		if sl.cancel != nil && match(sl) {
			sl.cancel(cause)
		}
		sl.mu.Unlock()
	}
}

// job is one leased task.
type job struct {
	q         *queue
	gen       *generation
	token     uint64
	id        string
	raw       []byte
	recovered int
	expireAt  time.Time // by the worker's clock, its ExpireIn/ExpireAt deadline; zero: none
	started   bool      // marked started in Redis
	freed     sync.Once // its prefetch slot was freed
}

func (w *Worker) aborted() bool {
	select {
	case <-w.abort:
		return true
	default:
		return false
	}
}

// startRunner adds a runner goroutine with a slot of its own.
func (w *Worker) startRunner() {
	sl := &slot{}
	w.slotMu.Lock()
	w.slots[sl] = struct{}{}
	w.slotMu.Unlock()
	w.runners.Add(1)
	go w.runner(sl)
}

func (w *Worker) runner(sl *slot) {
	for j := range w.jobs {
		switch {
		case w.aborted():
			w.setAside(j)
			continue
		case !w.mayStart(j):
			continue
		}
		w.active.Add(1)
		w.process(sl, j)
		sl.mu.Lock()
		gone := sl.abandoned
		sl.mu.Unlock()
		if gone { // the watchdog replaced this runner and counted it out
			return
		}
		w.active.Add(-1)
	}
	w.runners.Done()
}

// mayStart holds j until the worker's lease is valid and j is marked started in
// Redis; it reports false (having dealt with j) if j must not run here.
func (w *Worker) mayStart(j *job) bool {
	for {
		if j.gen.lost.Load() { // the lease was lost: the task runs elsewhere
			w.release(j)
			return false
		}
		if w.lease.valid() {
			break
		}
		// Fenced: the lease may be gone. Wait for a renewal, a loss or a stop.
		select {
		case <-w.lease.changed():
		case <-j.gen.lostCh:
		case <-w.abort:
			w.setAside(j)
			return false
		}
	}
	if j.started {
		return true
	}
	if j.recovered == 0 {
		// Marked without waiting: a round trip per start would cap a worker
		// at concurrency/RTT tasks a second. The local lease clock, checked
		// above, keeps a worker from starting what it may no longer hold; a
		// task that kills its worker before the mark lands is caught by
		// reclaim's orphan count.
		j.started = true
		w.settler.add(j, w.settlement(j, broker.Start))
		return true
	}
	// A recovered task may be the one that kills workers: its mark lands
	// before it starts, so that its count is exact.
	held, ok := w.settler.mark(j, w.abort)
	switch {
	case !ok: // stopping before the mark went through: give it back
		w.setAside(j)
		return false
	case !held:
		w.release(j)
		return false
	}
	j.started = true
	return true
}

// free frees j's prefetch slot, once, and tells the fetcher: its runner is
// done with it (its outcome is queued for Redis, or it was dropped).
func (w *Worker) free(j *job) {
	j.freed.Do(func() {
		if j.recovered > 0 { // the next recovered task may come now
			w.recovering.Add(-1)
			j.q.ready.Store(true)
		}
		w.held.Add(-1)
		w.wake()
	})
}

// forget drops j's token from those the session holds in Redis (for
// reconciliation): its outcome reached Redis, or its lease was lost.
func (w *Worker) forget(j *job) {
	j.q.heldMu.Lock()
	delete(j.q.held, j.token)
	j.q.heldMu.Unlock()
}

// release drops j: no outcome will be sent for it.
func (w *Worker) release(j *job) {
	w.free(j)
	w.forget(j)
}

func (w *Worker) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// settlement is j's outcome o, as the settler sends it.
func (w *Worker) settlement(j *job, o broker.Outcome) broker.Settlement {
	return broker.Settlement{Queue: j.q.Queue, Session: w.session, Token: j.token, ID: j.id, Outcome: o}
}

// setAside keeps j, which a stop kept from running, to be given back.
func (w *Worker) setAside(j *job) {
	w.leftMu.Lock()
	w.leftover = append(w.leftover, j)
	w.leftMu.Unlock()
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

// cancelTask acts on CancelTask's request for the task id of q: a handler
// running it is cancelled with cause ErrCancelled at once; a task held and not
// yet started never starts (process checks the request).
func (w *Worker) cancelTask(q *queue, id string) {
	now := time.Now()
	w.cancelMu.Lock()
	for k, t := range w.cancels { // requests for tasks this worker never held
		if now.Sub(t) > time.Minute {
			delete(w.cancels, k)
		}
	}
	w.cancels[id] = now
	w.cancelsN.Store(int32(len(w.cancels)))
	w.cancelMu.Unlock()
	w.cancelRunning(rediq.ErrCancelled, func(sl *slot) bool {
		return sl.running.j != nil && sl.running.j.id == id && sl.running.j.q == q
	})
}

// checkCancels looks in Redis for cancel requests of the tasks this worker
// runs: the safety net for a "c:ID" wake message missed while the
// subscription was down (after every heartbeat and re-subscription).
func (w *Worker) checkCancels(ctx context.Context) {
	running := map[*queue][]string{}
	for _, a := range w.running() {
		running[a.j.q] = append(running[a.j.q], a.j.id)
	}
	for q, ids := range running {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		asked, err := w.b.CancelRequested(cctx, q.Queue, ids)
		cancel()
		if err != nil {
			w.log.Debug("could not look for cancel requests; the next heartbeat will", zap.String("queue", q.Name), zap.Error(err))
			continue
		}
		for i, id := range ids {
			if asked[i] {
				w.cancelTask(q, id)
			}
		}
	}
}

// cancelRequested reports whether CancelTask asked for id; without any
// request (almost always) it costs an atomic load, not a lock.
func (w *Worker) cancelRequested(id string) bool {
	if w.cancelsN.Load() == 0 {
		return false
	}
	w.cancelMu.Lock()
	defer w.cancelMu.Unlock()
	_, ok := w.cancels[id]
	return ok
}

func (w *Worker) forgetCancel(id string) {
	if w.cancelsN.Load() == 0 {
		return
	}
	w.cancelMu.Lock()
	delete(w.cancels, id)
	w.cancelsN.Store(int32(len(w.cancels)))
	w.cancelMu.Unlock()
}

// running lists the tasks whose handlers run now (abandoned ones left out).
func (w *Worker) running() []*attempt {
	var out []*attempt
	w.slotMu.Lock()
	for sl := range w.slots {
		sl.mu.Lock()
		if sl.running.j != nil && !sl.abandoned {
			a := sl.running
			out = append(out, &a)
		}
		sl.mu.Unlock()
	}
	w.slotMu.Unlock()
	return out
}

// settleNow is settle for the fetcher, which must not wait for room: it gives
// back tasks it cannot hand to a runner, rarely, and must stay stoppable.
func (w *Worker) settleNow(j *job, o broker.Outcome) {
	w.settler.push(settleItem{s: w.settlement(j, o), j: j})
	w.free(j)
}

func (w *Worker) process(sl *slot, j *job) {
	var env = envelopePool.Get().(*envelope)
	defer envelopePool.Put(env)
	err := env.decode(j.raw)
	if err == nil {
		err = codec.Complete(&env.Envelope, j.id)
	}
	if err != nil {
		if !w.expired(j, 0, "dropped") {
			w.bury(j, deadUndecodable(j.id, j.raw, err, w.cfg.now()), "undecodable message", err)
		}
		return
	}
	if w.expired(j, env.Batch, "dropped") {
		return
	}
	def, ok := w.app.Task(env.Name)
	if !ok {
		w.unknownTask(j, env)
		return
	}
	if j.recovered > w.cfg.MaxRecoveries {
		err := fmt.Errorf("rediq: poison task: its worker died or froze while running it %d times (limit %d); not run again",
			j.recovered, w.cfg.MaxRecoveries)
		env.Error = err.Error()
		w.bury(j, record(env.Envelope), "poison task", err)
		if env.Batch > 0 {
			w.noteBatch(w.out.batch(env.Batch), j.id, "", "failed", err.Error())
		}
		return
	}
	maxRetries, timeout := def.Retries, def.Timeout
	if env.MaxRetries >= 0 {
		maxRetries = env.MaxRetries
	}
	if env.TimeoutMs > 0 {
		timeout = time.Duration(env.TimeoutMs) * time.Millisecond
	}
	var bk *broker.BatchKeys
	if env.Batch > 0 {
		bk = w.out.batch(env.Batch)
		if !w.batchStart(j, bk) {
			return
		}
	}
	if w.cancelRequested(j.id) {
		// Cancelled before it started: it never runs (settle ends it cancelled,
		// or gives it back if the request no longer stands).
		w.forgetCancel(j.id)
		w.settleAttempt(j, broker.Cancel, nil, 0, nil)
		if bk != nil {
			w.noteBatch(bk, j.id, "", unstarted(env.Retried, j.recovered))
		}
		return
	}
	if w.expired(j, env.Batch, unstarted(env.Retried, j.recovered)) { // checking its batch took a round trip
		return
	}
	st := &core.State{
		ID: env.ID, Name: env.Name, Queue: j.q.Name, Priority: env.Priority, Args: env.Args,
		EnqueuedAt: time.UnixMilli(env.EnqueuedAt), Worker: w.cfg.Name, MaxRetries: maxRetries,
		Timeout: timeout, Retried: env.Retried, Recovered: j.recovered, Exec: w.exec, Log: w.log,
	}
	if bk != nil {
		w.batchState(st, bk, env.Name)
	}
	ctx := core.WithState(w.base, st)
	w.fireTaskHooks(ctx, st, core.BeforeTaskStart)

	cctx, cancel := context.WithCancelCause(ctx)
	tctx, cancelTimeout := context.WithTimeout(cctx, timeout)
	sl.mu.Lock()
	sl.cancel, sl.gen = cancel, j.gen
	sl.deadline = time.Now().Add(timeout + w.cfg.TimeoutGrace)
	sl.running = attempt{j: j, env: env.Envelope, def: def, maxRetries: maxRetries, timeout: timeout}
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
	}
	started := w.cfg.now()
	result, err := call(&leaseContext{Context: tctx, lease: &w.lease, cancel: cancel}, def, env.Args)
	// Decided past the lease clock (the handler returned after a freeze, or
	// while Redis was away): the task may run elsewhere already.
	late := !w.lease.valid()
	defer w.forgetCancel(j.id)
	sl.mu.Lock()
	abandoned := sl.abandoned
	sl.cancel, sl.gen, sl.running = nil, nil, attempt{}
	sl.mu.Unlock()
	cause := context.Cause(tctx) // DeadlineExceeded: timed out; else why it was cancelled
	cancelTimeout()
	cancel(nil)
	if abandoned { // the watchdog settled it as failed already
		w.slotMu.Lock()
		w.abandoned--
		w.slotMu.Unlock()
		w.log.Warn("abandoned handler returned at last", zap.String("task_id", env.ID), zap.Error(err))
		return
	}
	if late {
		w.log.Warn("handler returned after the worker's lease clock ran out: its outcome waits for a renewal (dropped if the task was taken over)",
			zap.String("task_id", env.ID), zap.Error(err))
		if !w.awaitLease(j) {
			return
		}
	}

	var att *broker.Attempt
	if env.RetentionMs > 0 || env.MemoMs > 0 {
		att = &broker.Attempt{Started: started, Worker: w.cfg.Name}
	}
	if err != nil && cause != nil && !errors.Is(cause, context.DeadlineExceeded) {
		switch {
		case errors.Is(cause, rediq.ErrBatchStopped) && bk != nil:
			st.Err = fmt.Errorf("%w: %w", cause, err)
			w.fireTaskHooks(ctx, st, core.AfterTaskFailure)
			st.Print(fmt.Sprintf("task %s (%s) on %s, attempt %d: cancelled: %v", env.ID, env.Name, w.cfg.Name, env.Retried+1, cause))
			w.endForBatch(w.base, j, bk, "cancelled", strings.TrimPrefix(cause.Error(), rediq.ErrBatchStopped.Error()+": "))
		case errors.Is(cause, rediq.ErrCancelled):
			// CancelTask: not retried; it ends cancelled.
			st.Err = fmt.Errorf("%w: %w", rediq.ErrCancelled, err)
			w.fireTaskHooks(ctx, st, core.AfterTaskFailure)
			if att == nil {
				att = &broker.Attempt{Started: started, Worker: w.cfg.Name}
			}
			w.settleAttempt(j, broker.Cancel, nil, 0, att)
			if bk != nil {
				w.noteBatch(bk, j.id, "f", "cancelled")
			}
		case errors.Is(cause, errStopping), errors.Is(cause, errFenced):
			// Not an attempt: back to the queue (a no-op if the lease is gone).
			w.settle(j, broker.Requeue, nil, 0)
		default: // the lease was lost: another worker has the task
			w.release(j)
		}
		return
	}
	if errors.Is(cause, context.DeadlineExceeded) && err != nil {
		err = fmt.Errorf("%w after %s", rediq.ErrTimeout, timeout)
	}
	if err == nil {
		st.Result, st.HasResult = result, true
		w.fireTaskHooks(ctx, st, core.AfterTaskSuccess)
		if att != nil {
			att.Result = w.encodeResult(st, result)
		}
		if bk != nil {
			w.collectResult(st, def, result)
		}
		w.settleAttempt(j, broker.Ack, nil, 0, att)
		if bk != nil {
			w.noteBatch(bk, j.id, "x", "succeeded")
		}
		return
	}
	st.Err = err
	if willRetry(err, env.Retried, maxRetries) {
		w.fireTaskHooks(ctx, st, core.BeforeTaskRetry)
	} else {
		w.fireTaskHooks(ctx, st, core.AfterTaskFailure)
	}
	retry := willRetry(err, env.Retried, maxRetries)
	if bk != nil {
		st.Print(fmt.Sprintf("task %s (%s) on %s, attempt %d: error: %v", env.ID, env.Name, w.cfg.Name, env.Retried+1, err))
		var pe *rediq.PanicError
		if errors.As(err, &pe) {
			st.Print(string(pe.Stack))
		}
	}
	w.failed(j, env.Envelope, def, maxRetries, err)
	if bk != nil {
		end := "failed"
		if retry {
			end = ""
		}
		w.noteBatch(bk, j.id, "f", end, err.Error())
	}
}

// expired ends j unrun, as expired, if its ExpireIn/ExpireAt deadline has
// passed by the worker's clock: a task that waited past it in the prefetch
// buffer (or for a renewed lease, or for its batch's check) never starts, and
// ends as one found expired at fetch does — not an attempt, counted per queue,
// and "dropped" in its batch (batch is 0 when unknown).
// unstarted is the batch end of a task dropped after batchStart noted it as
// started: on its first attempt its handler never ran, so it never started.
func unstarted(retried, recovered int) string {
	if retried == 0 && recovered == 0 {
		return "unstarted"
	}
	return "dropped"
}

// expired settles j as expired if its deadline has passed, and counts it in its
// batch with the end batchEnd ("dropped", or "unstarted" once batchStart ran).
func (w *Worker) expired(j *job, batch int64, batchEnd string) bool {
	if j.expireAt.IsZero() {
		return false
	}
	now := w.cfg.now()
	if now.Before(j.expireAt) {
		return false
	}
	w.log.Info("task expired before it could start: not run", zap.String("task_id", j.id),
		zap.String("queue", j.q.Name), zap.Duration("late", now.Sub(j.expireAt)))
	w.settle(j, broker.Expire, nil, 0)
	if batch > 0 {
		w.noteBatch(w.out.batch(batch), j.id, "", batchEnd)
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
	if env.Batch > 0 {
		w.noteBatch(w.out.batch(env.Batch), j.id, "", "failed", err.Error())
	}
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

// watchdog gives up on handlers that ran past their timeout plus
// Config.TimeoutGrace: their attempt fails (and is retried elsewhere), their
// runner is replaced so that the tasks behind it run, and the goroutine is left
// to finish on its own — reported once.
func (w *Worker) watchdog(stop <-chan struct{}) {
	tick := time.NewTicker(max(min(w.cfg.TimeoutGrace/4, time.Second), 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		var stuck []*slot
		w.slotMu.Lock()
		for sl := range w.slots {
			sl.mu.Lock()
			if sl.running.j != nil && !sl.abandoned && now.After(sl.deadline) {
				stuck = append(stuck, sl)
			}
			sl.mu.Unlock()
		}
		w.slotMu.Unlock()
		for _, sl := range stuck {
			w.abandon(sl)
		}
	}
}

func (w *Worker) abandon(sl *slot) {
	sl.mu.Lock()
	a := sl.running
	if a.j == nil || sl.abandoned { // it returned meanwhile
		sl.mu.Unlock()
		return
	}
	sl.abandoned = true
	sl.mu.Unlock()
	err := fmt.Errorf("%w after %s, and the handler did not return within %s more: abandoned",
		rediq.ErrTimeout, a.timeout, w.cfg.TimeoutGrace)
	w.failed(a.j, a.env, a.def, a.maxRetries, err)
	if a.env.Batch > 0 {
		end := "failed"
		if willRetry(err, a.env.Retried, a.maxRetries) {
			end = ""
		}
		go w.noteBatch(w.out.batch(a.env.Batch), a.j.id, "f", end, err.Error())
	}
	w.slotMu.Lock()
	delete(w.slots, sl)
	w.abandoned++
	n := w.abandoned
	w.slotMu.Unlock()
	// The runner is always replaced, so that stuck handlers never stop the
	// worker; their goroutines are bounded by the attempts of stuck tasks,
	// which end in dead when their retries run out.
	w.log.Error("handler ignored its cancelled context past the timeout grace: its attempt failed, its runner is replaced and its goroutine left to finish",
		zap.Duration("timeout_grace", w.cfg.TimeoutGrace), zap.Int("abandoned_now", n))
	w.active.Add(-1)
	if !w.aborted() {
		w.startRunner()
	}
	w.runners.Done() // the abandoned runner no longer counts
}

func (w *Worker) fireWorkerHooks(ctx context.Context, e core.Event) error {
	for _, h := range w.hooks[e] {
		if err := safeHook(ctx, h); err != nil {
			return err
		}
	}
	return nil
}

// fireTaskHooks runs a task event's hooks; their failures are logged only.
func (w *Worker) fireTaskHooks(ctx context.Context, st *core.State, e core.Event) {
	for _, h := range w.hooks[e] {
		if err := safeHook(ctx, h); err != nil {
			st.Logger().Warn("hook failed", zap.Stringer("event", rediq.Event(e)), zap.Error(err))
		}
	}
}

func safeHook(ctx context.Context, h core.Hook) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &rediq.PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return h(ctx)
}
