package worker

// Found by review (from before the settlements went with fetches):
// the heartbeater applies a pause (or a window) learned from its
// heartbeat's reply BEFORE it renews the lease clock, and applying it gives
// the queue's prefetched tasks back through settle → settler.add, which
// waits for backlog room. With the lease clock lapsed (a partition longer
// than LeaseTTL) the settler sends nothing until a renewal; with the backlog
// full, the heartbeater waits for room that only a renewal can free:
// neither ever happened, and the worker was wedged until it was stopped.
// The give-back now does not wait for room (settleNow).

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
)

func TestHeartbeatAppliesAPauseWithTheBacklogFullWhileFenced(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t)
	ns := testredis.Namespace(t)
	app, err := rediq.New(rediq.Config{RedisURL: testredis.URL(), Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	w, err := New(app, Config{Concurrency: 1, Prefetch: 1, LeaseTTL: 3 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, q := range w.queues {
		q.ready.Store(true)
		q.gen.Store(newGeneration())
	}
	if err := w.join(ctx); err != nil {
		t.Fatal(err)
	}
	settle := newSettleService(w)
	if err := settle.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// The state after a partition longer than LeaseTTL on a busy worker:
	// the lease clock lapsed; the backlog is full of outcomes the lapse kept
	// from going out; a task of the queue waits in the prefetch buffer.
	w.lease.until.Store(0)
	for range w.prefetch.capacity {
		w.settler.room <- struct{}{}
	}
	q := w.queues[0]
	w.prefetch.held.Add(1)
	w.prefetch.jobs <- &job{q: q, gen: q.gen.Load(), token: 1, id: "prefetched"}
	// Meanwhile (the worker cut off) the queue was paused; the worker
	// learns of it from its next heartbeat.
	pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_ = app.PauseQueue(pctx, q.Name) // the pause stands; its ack wait is cut short
	cancel()
	renewed := make(chan struct{})
	go func() { // the heartbeater's iteration: beat, then renew
		sent := w.clock.Now()
		if _, err := w.beat(ctx, false); err != nil {
			t.Errorf("beat: %v", err)
		}
		w.lease.renew(sent, w.cfg.LeaseTTL)
		close(renewed)
	}()
	select {
	case <-renewed:
	case <-time.After(5 * time.Second):
		t.Errorf("the heartbeat has not renewed the lease after 5s: it waits for backlog room (givePrefetchedBack → settle → add) that only a renewal frees")
	}
	close(w.pool.abort) // unwedge (add gives up on abort) so that the test ends
	<-renewed
	settle.Stop()
}
