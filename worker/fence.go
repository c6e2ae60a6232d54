package worker

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// fencer cancels every running handler when the worker's own lease clock runs
// out without a renewal. It has a goroutine of its own: a heartbeat can block
// for several read timeouts, and the fence must not wait for it.
func (w *Worker) fencer(stop <-chan struct{}) {
	t := w.clock.NewTimer(time.Hour)
	defer t.Stop()
	for {
		renewed := w.lease.changed()
		if left := w.lease.left(); left > 0 {
			t.Reset(left)
			select {
			case <-stop:
				return
			case <-renewed:
				continue
			case <-t.C():
				continue // check again: a renewal may have raced the timer
			}
		}
		// Cancel first, log after: the log may take a moment the handlers
		// must not have.
		w.cancelRunning(errFenced, func(*slot) bool { return true })
		w.log.Error("could not renew the lease in time: starting nothing and cancelling running tasks until Redis answers",
			zap.Duration("lease_ttl", w.cfg.LeaseTTL))
		select {
		case <-stop:
			return
		case <-renewed:
		}
	}
}

// fenceService cancels the handlers when the lease clock runs out.
type fenceService struct{ *loop }

func newFenceService(w *Worker) fenceService {
	return fenceService{newLoop(func(_ context.Context, stop <-chan struct{}) { w.fencer(stop) })}
}
