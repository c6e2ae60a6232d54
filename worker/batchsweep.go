package worker

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/rediq/rediq/internal/core"
)

// sweepBatches ends batches whose producer went away when no task of theirs
// was running or starting (after every heartbeat; the newest 100 batches):
// keep-alive ones are stopped, detached ones whose tasks have all ended
// complete (their OnComplete is enqueued here, as is one still pending).
func (w *Worker) sweepBatches(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	sw, err := w.b.SweepBatches(cctx, 100)
	if err != nil { // some or all batches; those swept are reported still
		w.log.Debug("could not sweep every abandoned batch", zap.Error(err))
	}
	if sw.Stopped > 0 {
		w.log.Info("stopped batches whose producer went away", zap.Int("batches", sw.Stopped))
	}
	for _, k := range sw.OnComplete {
		if err := core.EnqueueOnComplete(cctx, w.b, k); err != nil {
			// Still pending: the next sweep tries again.
			w.log.Warn("batch completed, but its OnComplete could not be enqueued yet", zap.Int64("batch", k.ID), zap.Error(err))
		}
	}
}
