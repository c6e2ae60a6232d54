package worker

import "context"

// upkeepService runs what else follows each successful heartbeat, on a
// goroutine of its own so that none of it can delay a renewal: every queue
// marked ready (the safety net for a missed wake-up), the cancel requests
// read again (for one missed while the subscription was away), and the
// sweep of abandoned batches. (The probe of the subscription is a service of
// its own: probe.go.)
type upkeepService struct{ *loop }

func newUpkeepService(w *Worker) upkeepService {
	beaten := w.beats.listen()
	return upkeepService{newLoop(func(ctx context.Context, stop <-chan struct{}) {
		for {
			select {
			case <-stop:
				return
			case <-beaten:
				w.markAllReady()
				w.checkCancels(ctx)
				w.sweepBatches(ctx)
			}
		}
	})}
}
