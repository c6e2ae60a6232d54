package worker

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/rediq/rediq"
)

// watchdog gives up on handlers that ran past their timeout plus
// Config.TimeoutGrace: their attempt fails (and is retried elsewhere), their
// runner is replaced so that the tasks behind it run, and the goroutine is left
// to finish on its own — reported once.
func (w *Worker) watchdog(stop <-chan struct{}) {
	tick := w.clock.NewTicker(max(min(w.cfg.TimeoutGrace/4, time.Second), 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C():
		}
		now := w.clock.Now()
		var stuck []*slot
		w.pool.slotMu.Lock()
		for sl := range w.pool.slots {
			sl.mu.Lock()
			if sl.running.j != nil && !sl.abandoned && now.After(sl.deadline) {
				stuck = append(stuck, sl)
			}
			sl.mu.Unlock()
		}
		w.pool.slotMu.Unlock()
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
	env := *a.env // the runner's returns to a pool once the handler returns
	sl.abandoned = true
	sl.mu.Unlock()
	err := fmt.Errorf("%w after %s, and the handler did not return within %s more: abandoned",
		rediq.ErrTimeout, a.timeout, w.cfg.TimeoutGrace)
	w.failed(a.j, env, a.def, a.maxRetries, err)
	// Off the watchdog's goroutine: observers may take round trips.
	go w.observe(a.j, &env, nil, failedEnding(err, willRetry(err, env.Retried, a.maxRetries)))
	w.pool.slotMu.Lock()
	delete(w.pool.slots, sl)
	w.pool.abandoned++
	n := w.pool.abandoned
	w.pool.slotMu.Unlock()
	// The runner is always replaced, so that stuck handlers never stop the
	// worker; their goroutines are bounded by the attempts of stuck tasks,
	// which end in dead when their retries run out.
	w.log.Error("handler ignored its cancelled context past the timeout grace: its attempt failed, its runner is replaced and its goroutine left to finish",
		zap.Duration("timeout_grace", w.cfg.TimeoutGrace), zap.Int("abandoned_now", n))
	w.pool.active.Add(-1)
	if !w.aborted() {
		w.startRunner()
	}
	w.pool.runners.Done() // the abandoned runner no longer counts
}

// watchdogService gives up on handlers stuck past their timeout.
type watchdogService struct{ *loop }

func newWatchdogService(w *Worker) watchdogService {
	return watchdogService{newLoop(func(_ context.Context, stop <-chan struct{}) { w.watchdog(stop) })}
}
