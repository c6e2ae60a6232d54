package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/rediq/rediq"
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

// run is Run's body. The order, and why:
//
//  1. Check Redis, then the BeforeWorkerStartup hooks (a startup hook may
//     open what a worker that cannot start would leave behind).
//  2. join: register the session and its queues, take the first lease.
//  3. Start the services of the list below in its order — the wake-up
//     subscription first: its Start returns once Redis confirmed it, so that
//     no wake-up after this point is missed and the heartbeat's first probe
//     finds it — then the runners (they hand the settler and the output
//     sender outcomes and lines, and the watchers act on them), and the
//     fetcher last (it feeds the runners).
//  4. On ctx's end or Shutdown: stop the fetcher, drain the runners (within
//     the shutdown timeout), give back what never started.
//  5. Stop the services of the list in its reverse order, one after the
//     other: the watchers first (nothing runs for them to watch), then the
//     probe and the upkeep, the settler and the output sender (each
//     flushes), and the heartbeat and the wake-up subscription last (the
//     lease must hold while the last outcomes travel, and cancel requests for
//     the tasks still running come on the wake channels); then leave: give
//     back what the session still holds.
//
// A new service (a scheduler, a limit timer, statistics) is one line in the
// list, at the place its start and stop belong.
func (w *Worker) run(ctx context.Context) (err error) {
	if err := w.checkRedis(ctx); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	for e := range core.NumEvents {
		w.hooks[e] = w.app.Hooks(e)
	}
	w.exec = executor.New(w.cfg.ExecutorPoolSize)
	wctx := core.WithState(ctx, &core.State{Worker: w.cfg.Name, Exec: w.exec, Log: w.log})
	if err := w.fireWorkerHooks(wctx, rediq.BeforeWorkerStartup); err != nil {
		w.exec.Close()
		return fmt.Errorf("worker: before_worker_startup: %w", err)
	}
	defer func() {
		if herr := w.fireWorkerHooks(context.WithoutCancel(wctx), rediq.AfterWorkerShutdown); herr != nil {
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
	if err := w.join(ctx); err != nil {
		w.closeExecutor()
		return fmt.Errorf("worker: %w", err)
	}
	services := []service{
		newWakeService(w),
		newHeartbeatService(w),
		newOutputService(w),
		newSettleService(w),
		newProbeService(w),
		newUpkeepService(w),
		newFenceService(w),
		newWatchdogService(w),
		newBatchWatchService(w),
		newCronService(w),
		newWindowService(w),
	}
	if err := startAll(bg, services); err != nil {
		_ = w.leave(bg, 0, 0) // logged there; the start's error is the one to return
		return fmt.Errorf("worker: %w", err)
	}
	for range w.cfg.Concurrency {
		w.startRunner()
	}
	fetch := newFetchService(w)
	if err := fetch.Start(bg); err != nil {
		w.prefetch.close()
		w.pool.runners.Wait()
		stopAll(services)
		_ = w.leave(bg, 0, 0) // logged there; the start's error is the one to return
		return fmt.Errorf("worker: %w", err)
	}
	w.logStarted()

	// Run until asked to stop.
	var drainCtx context.Context
	select {
	case <-ctx.Done():
		var cancel context.CancelFunc
		drainCtx, cancel = context.WithTimeout(bg, w.cfg.ShutdownTimeout)
		defer cancel()
	case drainCtx = <-w.life.stopReq:
	}
	w.log.Info("worker stopping: fetching stopped, draining", zap.Int64("held", w.prefetch.held.Load()))
	fetch.Stop()
	w.prefetch.close()
	stuck := w.drain(drainCtx)
	left := w.giveBack()
	stopAll(services)
	return w.leave(bg, stuck, left)
}

// giveBack returns to their queues the tasks that never started (declined
// by runners after the abort, or still in the prefetch buffer); the settler,
// still running, sends them.
func (w *Worker) giveBack() int {
	w.pool.leftMu.Lock()
	for j := range w.prefetch.jobs { // jobs no runner got to
		w.pool.leftover = append(w.pool.leftover, j)
	}
	left := w.pool.leftover
	w.pool.leftover = nil
	w.pool.leftMu.Unlock()
	for _, j := range left {
		w.settle(j, broker.Requeue, nil, 0)
	}
	return len(left)
}

// leave ends the session once the services have stopped: it gives back what
// the session holds and the worker never learned of (a fetch cut short by the
// stop), within a bound, so that a Redis that went away does not hold the
// stop. stuck handlers keep the session registered instead: their leases
// expire and another worker runs their tasks.
func (w *Worker) leave(bg context.Context, stuck int64, left int) (err error) {
	if stuck > 0 {
		w.closeExecutor()
		err = fmt.Errorf("worker: %d handlers ignored cancellation and were abandoned; their tasks return to their queues when the lease expires (%s)",
			stuck, w.cfg.LeaseTTL)
		w.log.Error("shutdown incomplete", zap.Error(err))
		return err
	}
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
	w.log.Info("worker stopped", zap.Int("returned_to_queue", left))
	return nil
}

// join registers the session and its queues and takes the first lease.
func (w *Worker) join(ctx context.Context) error {
	if err := w.b.RegisterQueues(ctx, w.queueNames()); err != nil {
		return err
	}
	if err := w.declareTasks(ctx); err != nil {
		return err
	}
	sent := w.clock.Now()
	if _, err := w.beat(ctx, true); err != nil {
		return err
	}
	w.lease.renew(sent, w.cfg.LeaseTTL)
	return nil
}

// declareTasks records the queue of each task this worker runs (for the
// CLI's limit commands) and writes the limits declared in code as the
// defaults: a limit set at run time stands over them.
func (w *Worker) declareTasks(ctx context.Context) error {
	queueOf := map[string]string{}
	mine := w.queueNames()
	for _, name := range w.app.TaskNames() {
		def, ok := w.app.Task(name)
		if !ok || !slices.Contains(mine, def.Queue) {
			continue
		}
		queueOf[name] = def.Queue
		if codec.Flow(name, "") == "" {
			continue // no flow: no limits
		}
		l := def.Limit
		l.Code = true
		if _, err := w.b.SetLimit(ctx, w.b.Queue(def.Queue), name, l); err != nil {
			return err
		}
	}
	return w.b.DeclareTasks(ctx, queueOf)
}

func (w *Worker) queueNames() []string {
	names := make([]string, len(w.queues))
	for i, q := range w.queues {
		names[i] = q.Name
	}
	return names
}

func (w *Worker) logStarted() {
	w.log.Info("worker started", zap.String("redis", w.app.RedisName()), zap.String("namespace", w.b.Namespace()),
		zap.Strings("queues", w.queueNames()), zap.Int("concurrency", w.cfg.Concurrency),
		zap.Int("prefetch", w.cfg.Prefetch), zap.String("session", w.session))
}

// drain waits for the runners to finish the jobs until drainCtx ends or a forced
// stop; then it aborts: runners start nothing more and running handlers are
// cancelled, with cancelGrace to return. It reports how many did not.
func (w *Worker) drain(drainCtx context.Context) (stuck int64) {
	done := make(chan struct{})
	go func() {
		w.pool.runners.Wait()
		close(done)
	}()
	select {
	case <-done:
		return 0
	case <-drainCtx.Done():
	case <-w.pool.forced:
	}
	w.life.cut.Store(true)
	close(w.pool.abort)
	w.cancelRunning(errStopping, func(*slot) bool { return true })
	select {
	case <-done:
		return 0
	case <-time.After(cancelGrace):
		return w.pool.active.Load()
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
	w.pool.slotMu.Lock()
	defer w.pool.slotMu.Unlock()
	for sl := range w.pool.slots {
		sl.mu.Lock()
		if sl.cancel != nil && match(sl) {
			sl.cancel(cause)
		}
		sl.mu.Unlock()
	}
}

func (w *Worker) aborted() bool {
	select {
	case <-w.pool.abort:
		return true
	default:
		return false
	}
}
