package worker

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/rediq/rediq/internal/broker"
)

// heartbeater extends the session's leases every LeaseTTL/3 and reclaims the
// tasks of sessions whose leases expired. Besides the ticks, it wakes exactly when
// the next other session's lease runs out, so a dead worker's tasks are back in
// their queues milliseconds after its lease expires, not up to a tick later.
func (w *Worker) heartbeater(ctx context.Context, stop <-chan struct{}) {
	tick := time.NewTicker(w.cfg.LeaseTTL / 3)
	defer tick.Stop()
	reclaim := time.NewTimer(time.Hour)
	reclaim.Stop()
	defer reclaim.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		case <-reclaim.C:
		}
		next, err := w.beat(ctx, false)
		if err != nil {
			w.log.Warn("heartbeat failed", zap.Error(err))
			continue
		}
		if next > 0 {
			reclaim.Reset(max(time.Until(time.UnixMilli(next)), 0) + time.Millisecond)
		}
		w.markAllReady()
	}
}

// beat runs one heartbeat on every queue, handles a lost lease and reclaims
// expired sessions; it returns when the next other session's lease runs out.
func (w *Worker) beat(ctx context.Context, register bool) (int64, error) {
	qs := make([]*broker.Queue, len(w.queues))
	for i, q := range w.queues {
		qs[i] = q.Queue
	}
	beats, err := w.b.Heartbeat(ctx, w.session, w.cfg.LeaseTTL, register, qs)
	if err != nil {
		return 0, err
	}
	var next int64
	for i, bt := range beats {
		q := w.queues[i]
		if bt.Lost {
			w.leaseLost(ctx, q)
		}
		for _, dead := range bt.Expired {
			n, err := w.b.Reclaim(ctx, q.Queue, dead)
			switch {
			case err != nil:
				w.log.Warn("reclaim failed", zap.String("queue", q.Name), zap.String("session", dead), zap.Error(err))
			case n >= 0:
				w.log.Warn("reclaimed the tasks of a worker whose lease expired",
					zap.String("queue", q.Name), zap.String("session", dead), zap.Int("tasks", n))
			}
		}
		if d := bt.NextDeadline; d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	return next, nil
}

// leaseLost handles this session's lease on q having been reclaimed (the worker
// stalled past LeaseTTL): the tasks it holds from q run elsewhere, so they are
// cancelled and dropped, and the session registers again for new ones.
func (w *Worker) leaseLost(ctx context.Context, q *queue) {
	old := q.gen.Swap(&generation{})
	old.lost.Store(true)
	w.cancelRunning(func(sl *slot) bool { return sl.gen == old })
	w.log.Error("lease lost: this worker stalled past the lease TTL and its tasks were given to others",
		zap.String("queue", q.Name), zap.Duration("lease_ttl", w.cfg.LeaseTTL))
	if _, err := w.b.Heartbeat(ctx, w.session, w.cfg.LeaseTTL, true, []*broker.Queue{q.Queue}); err != nil {
		w.log.Warn("re-register after lease loss", zap.Error(err))
	}
}
