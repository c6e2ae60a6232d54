package worker

import (
	"context"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// probeState tracks the heartbeat's probes of the wake-up subscription.
type probeState struct {
	sent, seen atomic.Uint64
	resub      chan struct{} // asks the subscriber to subscribe again
	// healthySince is when heartbeats last started to succeed (zero after a
	// failure); only the heartbeater touches it.
	healthySince time.Time
}

// probe checks that the subscription still hears what is published, after a
// heartbeat: it publishes a numbered probe, and checkProbe, a little later,
// asks for a new subscription if it did not come back. A subscription can go
// deaf while its connection lives on — after a Sentinel failover it stays on
// the old master, which go-redis does not move — and then idle workers would
// wait for the heartbeat's safety net instead of waking at once.
func (w *Worker) probe(ctx context.Context) {
	n := w.probes.sent.Add(1)
	if err := w.b.Probe(ctx, w.session, n); err != nil {
		w.probes.sent.Add(^uint64(0))
		w.log.Debug("probe publish", zap.Error(err))
	}
}

func (w *Worker) checkProbe() {
	if sent := w.probes.sent.Load(); sent > 0 && w.probes.seen.Load() < sent {
		w.log.Warn("the wake-up subscription did not hear its probe; subscribing again")
		w.resubscribe()
	}
}

// probeService probes the wake-up subscription after each successful
// heartbeat and checks, a little later, that it heard the probe.
type probeService struct{ *loop }

func newProbeService(w *Worker) probeService {
	beaten := w.beats.listen()
	return probeService{newLoop(func(ctx context.Context, stop <-chan struct{}) {
		check := stoppedTimer(w.clock)
		defer check.Stop()
		for {
			select {
			case <-stop:
				return
			case <-check.C():
				w.checkProbe()
			case <-beaten:
				w.checkProbe() // the last probe, if its check did not run yet
				w.probe(ctx)
				check.Reset(min(w.cfg.LeaseTTL/6, time.Second))
			}
		}
	})}
}
