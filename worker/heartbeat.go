package worker

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/backoff"
	"github.com/rediq/rediq/internal/broker"
)

// heartbeater extends the session's leases every LeaseTTL/3 (sooner after a
// failure) and reclaims the tasks of sessions whose leases expired. Besides
// the ticks, it wakes exactly when the next other session's lease runs out, so
// a dead worker's tasks are back in their queues milliseconds after its lease
// expires, and when its own lease runs out without a renewal, to fence itself.
// What else follows a heartbeat is the upkeep's (upkeep.go), off this
// goroutine, so that none of it can delay a renewal.
func (w *Worker) heartbeater(ctx context.Context, stop <-chan struct{}) {
	interval := w.cfg.LeaseTTL / 3
	next := w.clock.NewTimer(interval)
	defer next.Stop()
	reclaim := stoppedTimer(w.clock)
	defer reclaim.Stop()
	retry := backoff.Retrier{Policy: redisRetry}
	for {
		select {
		case <-stop:
			return
		case <-next.C():
		case <-reclaim.C():
		}
		sent := w.clock.Now()
		wasValid := w.lease.valid()
		untilNext, err := w.beat(ctx, false)
		if err != nil {
			w.probes.healthySince = time.Time{}
			pause := retry.Next()
			w.log.Warn("heartbeat failed", zap.Error(err), zap.Int("failures", retry.Failures()))
			next.Reset(min(pause, interval))
			continue
		}
		if retry.Failures() > 0 || !wasValid {
			w.log.Info("heartbeat works again", zap.Int("failures", retry.Failures()), zap.Bool("was_fenced", !wasValid))
			// Redis may have moved (a failover) while the subscription stayed.
			w.resubscribe()
		}
		retry.Reset()
		w.lease.renew(sent, w.cfg.LeaseTTL)
		next.Reset(interval)
		if untilNext >= 0 {
			reclaim.Reset(untilNext + time.Millisecond)
		}
		w.beats.beat() // the probe and the upkeep that follow a heartbeat
	}
}

// beat runs one heartbeat on every queue, handles a lost lease and reclaims
// expired sessions (once this worker has itself been healthy for a lease
// period); it returns when the next other session's lease runs out (< 0: none).
func (w *Worker) beat(ctx context.Context, register bool) (time.Duration, error) {
	qs := make([]*broker.Queue, len(w.queues))
	for i, q := range w.queues {
		qs[i] = q.Queue
	}
	start := w.clock.Now()
	wasValid := w.lease.valid()
	gens := make([]*generation, len(w.queues))
	for i, q := range w.queues {
		gens[i] = q.gen.Load()
	}
	beats, err := w.b.Heartbeat(ctx, w.session, w.cfg.LeaseTTL, register, qs)
	if err != nil {
		return 0, err
	}
	now := w.clock.Now()
	// Health starts over after a failed heartbeat (healthySince is zero), a
	// lapsed lease, or a heartbeat that took longer than its interval (it hung
	// while Redis was away): then others may have been cut off as long as this
	// worker, and get a lease period to come back.
	if w.probes.healthySince.IsZero() || !wasValid || now.Sub(start) > w.cfg.LeaseTTL/3 {
		w.probes.healthySince = now
	}
	// After an outage every session looks expired: the first worker back must
	// not take everyone's tasks before the others had a lease period to renew.
	mayReclaim := now.Sub(w.probes.healthySince) >= w.cfg.LeaseTTL
	next := time.Duration(-1)
	for i, bt := range beats {
		q := w.queues[i]
		if bt.Lost {
			w.leaseLost(ctx, q, gens[i])
			continue
		}
		w.applyWindow(q, bt.Window, start)
		// A pause or resume whose message this worker missed.
		switch {
		case bt.Pause.Paused:
			w.applyPause(ctx, q, bt.Pause.ID)
		case bt.Pause.ID > 0:
			w.applyResume(q, bt.Pause.ID)
		}
		// Redis holding more than the worker knows of: a fetch reply lost (or
		// one in flight; reconciliation sorts them out).
		if int64(bt.Held) > q.heldCount() {
			q.reconcile.Store(true)
		}
		for _, dead := range bt.Expired {
			if dead == w.session {
				continue
			}
			if !mayReclaim {
				if next < 0 || w.cfg.LeaseTTL-now.Sub(w.probes.healthySince) < next {
					next = w.cfg.LeaseTTL - now.Sub(w.probes.healthySince)
				}
				continue
			}
			pre, started, ok, err := w.b.Reclaim(ctx, q.Queue, dead)
			switch {
			case err != nil:
				w.log.Warn("reclaim failed", zap.String("queue", q.Name), zap.String("session", dead), zap.Error(err))
			case ok && pre+started > 0:
				w.log.Warn("took back the tasks of a worker whose lease expired",
					zap.String("queue", q.Name), zap.String("session", dead), zap.Int("started", started), zap.Int("prefetched", pre))
			case ok:
				w.log.Debug("removed the session of a worker whose lease expired, holding nothing",
					zap.String("queue", q.Name), zap.String("session", dead))
			}
		}
		if d := bt.NextDeadline; d >= 0 && (next < 0 || d < next) {
			next = d
		}
	}
	return next, nil
}

// leaseLost handles this session's lease on q having been reclaimed (the worker
// stalled past LeaseTTL): the tasks it held from q run elsewhere, so they are
// cancelled and dropped, and the session registers again for new ones.
func (w *Worker) leaseLost(ctx context.Context, q *queue, old *generation) {
	if !q.gen.CompareAndSwap(old, newGeneration()) {
		return // the fetcher or the heartbeater handled this loss already
	}
	old.markLost()
	w.cancelRunning(rediq.ErrLeaseLost, func(sl *slot) bool { return sl.gen == old })
	w.log.Error("lease lost: this worker stalled past the lease TTL and its tasks were given to others",
		zap.String("queue", q.Name), zap.Duration("lease_ttl", w.cfg.LeaseTTL))
	if _, err := w.b.Heartbeat(ctx, w.session, w.cfg.LeaseTTL, true, []*broker.Queue{q.Queue}); err != nil {
		w.log.Warn("re-register after lease loss", zap.Error(err))
	}
	q.ready.Store(true)
}

func (q *queue) heldCount() int64 {
	q.heldMu.Lock()
	defer q.heldMu.Unlock()
	return int64(len(q.held))
}

// heartbeatService renews the session's leases and reclaims those of dead
// sessions.
type heartbeatService struct{ *loop }

func newHeartbeatService(w *Worker) heartbeatService { return heartbeatService{newLoop(w.heartbeater)} }
