package worker

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/core"
	"github.com/rediq/rediq/internal/executor"
)

// cancelGrace is how long a stop that cancelled running handlers waits for them
// to return before it gives up on them (their leases then expire and another
// worker runs their tasks).
const cancelGrace = 2 * time.Second

func (w *Worker) run(ctx context.Context) (err error) {
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
	base := context.WithoutCancel(ctx)
	for _, q := range w.queues {
		q.ready.Store(true)
		q.gen.Store(&generation{})
	}
	ps, err := w.join(ctx)
	if err != nil {
		w.closeExecutor()
		return fmt.Errorf("worker: %w", err)
	}

	var runners, others sync.WaitGroup
	for _, sl := range w.slots {
		runners.Add(1)
		go func() {
			defer runners.Done()
			w.runner(base, sl)
		}()
	}
	stopBG := make(chan struct{})
	stopSub := make(chan struct{})
	others.Add(3)
	go func() {
		defer others.Done()
		w.heartbeater(bg, stopBG)
	}()
	go func() {
		defer others.Done()
		w.settler.loop(bg, stopBG)
	}()
	go func() {
		defer others.Done()
		w.subscriber(bg, ps, stopSub)
	}()
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
	close(stopSub)
	ps.Close()
	close(w.jobs)
	stuck := w.drain(drainCtx, &runners)

	// Give back what never started; the settler flushes everything before it stops.
	w.leftMu.Lock()
	for j := range w.jobs { // jobs no runner got to
		w.leftover = append(w.leftover, j)
	}
	left := w.leftover
	w.leftover = nil
	w.leftMu.Unlock()
	for _, j := range left {
		w.settle(j, broker.Settlement{Outcome: broker.Requeue})
	}
	close(stopBG)
	others.Wait()

	if stuck > 0 {
		// Their sessions stay registered, so their leases expire and another
		// worker runs the tasks; their executor work may still be running.
		err = fmt.Errorf("worker: %d handlers ignored cancellation and were abandoned; their tasks return to their queues when the lease expires (%s)",
			stuck, w.cfg.LeaseTTL)
		w.log.Error("shutdown incomplete", zap.Error(err))
		return err
	}
	for _, q := range w.queues {
		if _, lerr := w.b.Leave(bg, q.Queue, w.session); lerr != nil {
			w.log.Warn("leave queue", zap.String("queue", q.Name), zap.Error(lerr))
		}
	}
	w.closeExecutor()
	w.log.Info("worker stopped", zap.Int("returned_to_queue", len(left)))
	return nil
}

// join registers the session and its queues and subscribes to their wake
// channels, returning once the subscription is confirmed so that no wake-up
// after this point can be missed.
func (w *Worker) join(ctx context.Context) (*redis.PubSub, error) {
	names := make([]string, len(w.queues))
	chans := make([]string, len(w.queues))
	for i, q := range w.queues {
		names[i], chans[i] = q.Name, q.Channel
	}
	if err := w.b.RegisterQueues(ctx, names); err != nil {
		return nil, err
	}
	if _, err := w.beat(ctx, true); err != nil {
		return nil, err
	}
	ps := w.b.Client().Subscribe(ctx, chans...)
	for subscribed := 0; subscribed < len(chans); {
		msg, err := ps.Receive(ctx)
		if err != nil {
			ps.Close()
			return nil, fmt.Errorf("subscribe: %w", err)
		}
		if _, ok := msg.(*redis.Subscription); ok {
			subscribed++
		}
	}
	w.log.Info("worker started", zap.Strings("queues", names), zap.Int("concurrency", w.cfg.Concurrency),
		zap.Int("prefetch", w.cfg.Prefetch), zap.String("session", w.session))
	return ps, nil
}

// drain waits for the runners to finish the jobs until drainCtx ends or a forced
// stop; then it aborts: runners start nothing more and running handlers are
// cancelled, with cancelGrace to return. It reports how many did not.
func (w *Worker) drain(drainCtx context.Context, runners *sync.WaitGroup) (stuck int64) {
	done := make(chan struct{})
	go func() {
		runners.Wait()
		close(done)
	}()
	select {
	case <-done:
		return 0
	case <-drainCtx.Done():
	case <-w.forced:
	}
	close(w.abort)
	w.cancelRunning(func(*slot) bool { return true })
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

// cancelRunning cancels the handlers of the slots that match.
func (w *Worker) cancelRunning(match func(*slot) bool) {
	for _, sl := range w.slots {
		sl.mu.Lock()
		if sl.cancel != nil && match(sl) {
			sl.cancel()
		}
		sl.mu.Unlock()
	}
}

// job is one leased message.
type job struct {
	q         *queue
	gen       *generation
	token     uint64
	raw       []byte
	recovered int
}

func (w *Worker) aborted() bool {
	select {
	case <-w.abort:
		return true
	default:
		return false
	}
}

func (w *Worker) runner(base context.Context, sl *slot) {
	for j := range w.jobs {
		switch {
		case w.aborted():
			w.leftMu.Lock()
			w.leftover = append(w.leftover, j)
			w.leftMu.Unlock()
		case j.gen.lost.Load(): // the lease was lost: the task runs elsewhere
			w.release()
		default:
			w.active.Add(1)
			w.process(base, sl, j)
			w.active.Add(-1)
		}
	}
}

// release frees a prefetch slot and tells the fetcher.
func (w *Worker) release() {
	w.held.Add(-1)
	w.wake()
}

func (w *Worker) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// settle hands the job's outcome to the settler and frees its slot.
func (w *Worker) settle(j *job, s broker.Settlement) {
	s.Queue, s.Lease, s.Token = j.q.Queue, j.q.lease, j.token
	if j.recovered > 0 {
		s.Recovered, s.Leased = true, j.raw
	}
	w.settler.add(s)
	w.release()
}

func (w *Worker) process(base context.Context, sl *slot, j *job) {
	var env = envelopePool.Get().(*envelope)
	defer envelopePool.Put(env)
	if err := env.decode(j.raw); err != nil {
		w.bury(j, deadUndecodable(j.raw, err), "undecodable message")
		return
	}
	def, ok := w.app.Task(env.Name)
	if !ok {
		env.Error = fmt.Sprintf("%v %q: no worker serving queue %q has it registered (this one has %v)",
			rediq.ErrUnknownTask, env.Name, j.q.Name, w.app.TaskNames())
		w.bury(j, env.encode(), "unknown task")
		return
	}
	if j.recovered > w.cfg.MaxRecoveries {
		env.Error = fmt.Sprintf("rediq: poison task: its worker died or stalled while running it %d times (limit %d); not run again",
			j.recovered, w.cfg.MaxRecoveries)
		w.bury(j, env.encode(), "poison task")
		return
	}
	maxRetries, timeout := def.Retries, def.Timeout
	if env.MaxRetries >= 0 {
		maxRetries = env.MaxRetries
	}
	if env.TimeoutMs > 0 {
		timeout = time.Duration(env.TimeoutMs) * time.Millisecond
	}
	st := &core.State{
		ID: env.ID, Name: env.Name, Queue: j.q.Name, Priority: env.Priority, Args: env.Args,
		EnqueuedAt: time.UnixMilli(env.EnqueuedAt), Worker: w.cfg.Name, MaxRetries: maxRetries,
		Timeout: timeout, Retried: env.Retried, Exec: w.exec, Log: w.log,
	}
	ctx := core.WithState(base, st)
	w.fireTaskHooks(ctx, st, core.BeforeTaskStart)

	tctx, cancel := context.WithTimeout(ctx, timeout)
	sl.mu.Lock()
	sl.cancel, sl.gen = cancel, j.gen
	sl.mu.Unlock()
	if w.aborted() || j.gen.lost.Load() { // a cancel may have passed this slot just before
		cancel()
	}
	result, err := call(tctx, def, env.Args)
	sl.mu.Lock()
	sl.cancel, sl.gen = nil, nil
	sl.mu.Unlock()
	ended := tctx.Err() // DeadlineExceeded: timed out; Canceled: a stop or a lost lease
	cancel()

	if err != nil && errors.Is(ended, context.Canceled) {
		if w.aborted() { // cancelled by a stop: not an attempt
			w.settle(j, broker.Settlement{Outcome: broker.Requeue})
		} else { // the lease was lost: another worker has the task
			w.release()
		}
		return
	}
	if errors.Is(ended, context.DeadlineExceeded) {
		err = fmt.Errorf("%w after %s", rediq.ErrTimeout, timeout)
	}
	if err == nil {
		st.Result, st.HasResult = result, true
		w.fireTaskHooks(ctx, st, core.AfterTaskSuccess)
		w.settle(j, broker.Settlement{Outcome: broker.Ack})
		return
	}
	st.Err = err
	env.Error = err.Error()
	env.Stack = ""
	var pe *rediq.PanicError
	if errors.As(err, &pe) {
		env.Stack = string(pe.Stack)
	}
	if !errors.Is(err, rediq.ErrSkipRetry) && env.Retried < maxRetries {
		w.fireTaskHooks(ctx, st, core.BeforeTaskRetry)
		delay := def.Backoff(env.Retried)
		env.Retried++
		w.settle(j, broker.Settlement{Outcome: broker.Retry, Body: env.encode(),
			Slot: broker.Slot(env.Priority), Delay: delay})
		return
	}
	w.fireTaskHooks(ctx, st, core.AfterTaskFailure)
	w.settle(j, broker.Settlement{Outcome: broker.Kill, Body: env.encode()})
}

// bury sends a message that cannot run to the dead set.
func (w *Worker) bury(j *job, dead []byte, why string) {
	w.log.Error("task moved to dead", zap.String("queue", j.q.Name), zap.String("reason", why))
	w.settle(j, broker.Settlement{Outcome: broker.Kill, Body: dead})
}

func call(ctx context.Context, def *core.TaskDef, args []byte) (result any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &rediq.PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return def.Run(ctx, args)
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
