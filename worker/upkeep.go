package worker

import (
	"context"
	"time"
)

// upkeep runs what follows each successful heartbeat, on a goroutine of its
// own so that none of it can delay a renewal: a probe of the wake-up
// subscription (checked a little later: a subscription can go deaf while its
// connection lives), every queue marked ready (the safety net for a missed
// wake-up), the cancel requests read again (for one missed while the
// subscription was away), and the sweep of abandoned batches.
func (w *Worker) upkeep(ctx context.Context, stop <-chan struct{}) {
	probeCheck := time.NewTimer(time.Hour)
	probeCheck.Stop()
	defer probeCheck.Stop()
	for {
		select {
		case <-stop:
			return
		case <-probeCheck.C:
			w.checkProbe()
		case <-w.beaten:
			w.checkProbe() // the last probe, if its check did not run yet
			w.probe(ctx)
			probeCheck.Reset(min(w.cfg.LeaseTTL/6, time.Second))
			w.markAllReady()
			w.checkCancels(ctx)
			w.sweepBatches(ctx)
		}
	}
}
