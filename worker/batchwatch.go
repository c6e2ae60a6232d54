package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/broker"
)

// batchWatchEvery is how often a worker looks whether the batches of its
// running tasks were stopped (or lost their producer's keep-alive).
const batchWatchEvery = 250 * time.Millisecond

// batchWatcher cancels running handlers of batches that were stopped, or
// whose producer stopped sending keep-alives (it stops those).
func (w *Worker) batchWatcher(stop <-chan struct{}) {
	t := w.clock.NewTicker(batchWatchEvery)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C():
		}
		running := map[int64]bool{}
		for _, a := range w.running() {
			if a.env.Batch > 0 {
				running[a.env.Batch] = true
			}
		}
		for id := range running {
			ctx, cancel := context.WithTimeout(w.base, time.Second)
			reason, err := w.batchStopped(ctx, w.out.batch(id))
			cancel()
			if err != nil || reason == "" {
				continue
			}
			w.cancelRunning(fmt.Errorf("%w: %s", rediq.ErrBatchStopped, reason), func(sl *slot) bool {
				return sl.running.j != nil && sl.running.env.Batch == id
			})
		}
	}
}

// batchStopped returns why batch k is stopped, "" if it runs; a keep-alive
// batch without keep-alives is stopped here.
func (w *Worker) batchStopped(ctx context.Context, k *broker.BatchKeys) (string, error) {
	l, err := w.b.BatchLiveness(ctx, k)
	if err != nil || l.StopReason != "" || !l.Abandoned() {
		return l.StopReason, err
	}
	const reason = "its producer stopped sending keep-alives"
	if _, err := w.b.StopBatch(ctx, k, reason); err != nil {
		return "", err
	}
	return reason, nil
}

// batchWatchService cancels the handlers of stopped or abandoned batches.
type batchWatchService struct{ *loop }

func newBatchWatchService(w *Worker) batchWatchService {
	return batchWatchService{newLoop(func(_ context.Context, stop <-chan struct{}) { w.batchWatcher(stop) })}
}
