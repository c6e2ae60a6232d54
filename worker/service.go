package worker

import (
	"context"
	"time"

	"github.com/rediq/rediq/internal/backoff"
)

// service is one background job of a worker. Every service keeps the same
// contract: start launches it and returns at once; stop asks it to end and
// returns once it has — having flushed what it holds (the settler its
// outcomes, the output sender its lines). Worker.run starts the services in
// one order and stops them in one order (see there). A new job (a scheduler,
// a limit timer, statistics) is a new service type and one line in run.
type service interface {
	start(ctx context.Context)
	stop()
}

// loop is the body every service shares: one goroutine that runs until stop
// is closed. ctx carries Redis work that must outlive the worker's own
// context (the final flushes).
type loop struct {
	run  func(ctx context.Context, stop <-chan struct{})
	quit chan struct{}
	done chan struct{}
}

func newLoop(run func(ctx context.Context, stop <-chan struct{})) *loop {
	return &loop{run: run, quit: make(chan struct{}), done: make(chan struct{})}
}

func (l *loop) start(ctx context.Context) {
	go func() {
		defer close(l.done)
		l.run(ctx, l.quit)
	}()
}

func (l *loop) stop() {
	close(l.quit)
	<-l.done
}

// The worker's services, each with its loop in its own file.
type (
	fetchService      struct{ *loop } // fetch.go: fetches into the prefetch buffer
	wakeService       struct{ *loop } // fetch.go: the wake-up subscription
	heartbeatService  struct{ *loop } // lease.go: renews the session's leases
	fenceService      struct{ *loop } // lease.go: cancels handlers when the lease clock runs out
	settleService     struct{ *loop } // settle.go: coalesces outcomes into settle round trips
	watchdogService   struct{ *loop } // runner.go: gives up on handlers stuck past their timeout
	batchWatchService struct{ *loop } // batch.go: cancels handlers of stopped or abandoned batches
	outputService     struct{ *loop } // batch.go: sends batch output lines, coalesced
	upkeepService     struct{ *loop } // upkeep.go: what follows each heartbeat
)

func newFetchService(w *Worker) fetchService {
	return fetchService{newLoop(func(ctx context.Context, stop <-chan struct{}) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-stop:
				cancel() // a fetch in flight is cut short; the session still holds its tasks (Leave gives them back)
			case <-ctx.Done():
			}
		}()
		w.fetcher(ctx)
	})}
}

func newWakeService(w *Worker, sub *subscription) wakeService {
	return wakeService{newLoop(func(ctx context.Context, stop <-chan struct{}) { w.subscriber(ctx, sub, stop) })}
}

func newHeartbeatService(w *Worker) heartbeatService { return heartbeatService{newLoop(w.heartbeater)} }

func newFenceService(w *Worker) fenceService {
	return fenceService{newLoop(func(_ context.Context, stop <-chan struct{}) { w.fencer(stop) })}
}

func newSettleService(w *Worker) settleService { return settleService{newLoop(w.settler.loop)} }

func newWatchdogService(w *Worker) watchdogService {
	return watchdogService{newLoop(func(_ context.Context, stop <-chan struct{}) { w.watchdog(stop) })}
}

func newBatchWatchService(w *Worker) batchWatchService {
	return batchWatchService{newLoop(func(_ context.Context, stop <-chan struct{}) { w.batchWatcher(stop) })}
}

func newOutputService(w *Worker) outputService { return outputService{newLoop(w.out.loop)} }

func newUpkeepService(w *Worker) upkeepService { return upkeepService{newLoop(w.upkeep)} }

// clock is the worker's time: its services read it, and tests skew it
// (Config.now).
type clock interface {
	Now() time.Time
}

// clockFunc is a clock from a function (time.Now by default).
type clockFunc func() time.Time

func (f clockFunc) Now() time.Time { return f() }

// redisRetry paces the services' retries of Redis: 50ms doubling to 2s,
// jittered so that the workers of a Redis that comes back do not all retry
// in step.
var redisRetry = backoff.Policy{First: 50 * time.Millisecond, Max: 2 * time.Second}
