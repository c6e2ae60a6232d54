package worker

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/rediq/rediq/internal/broker"
)

// fetcher fills free prefetch slots from the queues that may have tasks. A queue
// is "ready" until a fetch from it comes back short; it becomes ready again when
// its wake channel says it went from empty to non-empty, when its earliest
// scheduled task falls due, or at each heartbeat (the safety net for a lost
// pub/sub message). There is no poll interval: an idle fetcher sleeps until one
// of those happens.
func (w *Worker) fetcher(ctx context.Context) {
	due := time.NewTimer(time.Hour)
	due.Stop()
	defer due.Stop()
	var dueAt int64
	failures := 0
	rotate := 0
	for {
		free := w.capacity - w.held.Load()
		reqs, qs := w.plan(int(free), rotate)
		rotate++
		if len(reqs) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-w.kick:
			case <-due.C:
				dueAt = 0
				w.markDue()
			}
			continue
		}
		res, err := w.b.Fetch(ctx, w.session, w.cfg.LeaseTTL, reqs)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			for _, q := range qs {
				q.ready.Store(true)
			}
			failures++
			w.log.Warn("fetch failed; will retry", zap.Error(err), zap.Int("failures", failures))
			select {
			case <-ctx.Done():
				return
			case <-time.After(retryDelay(failures)):
			}
			continue
		}
		failures = 0
		for i, r := range res {
			q := qs[i]
			if errors.Is(r.Err, broker.ErrLeaseLost) {
				w.leaseLost(ctx, q)
				q.ready.Store(true)
				continue
			}
			q.nextDue.Store(r.NextDue)
			if len(r.Msgs) == reqs[i].N {
				q.ready.Store(true) // a full answer: there may be more
			}
			gen := q.gen.Load()
			for k, m := range r.Msgs {
				w.held.Add(1)
				w.jobs <- &job{q: q, gen: gen, token: reqs[i].TokenBase + uint64(k+1), raw: m, recovered: r.Recovered[k]}
			}
		}
		if next := w.earliestDue(); next != dueAt {
			dueAt = next
			if next == 0 {
				due.Stop()
			} else {
				due.Reset(max(time.Until(time.UnixMilli(next)), 0))
			}
		}
	}
}

// plan splits free slots among the ready queues: in order with StrictPriority,
// else in proportion to their weights (rotating who gets the remainder). Queues
// it asks are marked not ready; a wake-up during the fetch marks them again.
func (w *Worker) plan(free, rotate int) ([]broker.FetchRequest, []*queue) {
	if free <= 0 {
		return nil, nil
	}
	var ready []*queue
	total := 0
	for _, q := range w.queues {
		if q.ready.Load() {
			ready = append(ready, q)
			total += q.weight
			if w.cfg.StrictPriority {
				break
			}
		}
	}
	if len(ready) == 0 {
		return nil, nil
	}
	shares := make([]int, len(ready))
	given := 0
	for i, q := range ready {
		shares[i] = free * q.weight / total
		given += shares[i]
	}
	for k := 0; given < free; k++ {
		shares[(rotate+k)%len(ready)]++
		given++
	}
	var reqs []broker.FetchRequest
	var qs []*queue
	for i, q := range ready {
		if shares[i] == 0 {
			continue
		}
		q.ready.Store(false)
		n := uint64(shares[i])
		reqs = append(reqs, broker.FetchRequest{Queue: q.Queue, N: shares[i], TokenBase: w.tokens.Add(n) - n})
		qs = append(qs, q)
	}
	return reqs, qs
}

func (w *Worker) earliestDue() int64 {
	var next int64
	for _, q := range w.queues {
		if d := q.nextDue.Load(); d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	return next
}

// markDue makes ready the queues whose earliest scheduled task is due.
func (w *Worker) markDue() {
	now := time.Now().UnixMilli()
	for _, q := range w.queues {
		if d := q.nextDue.Load(); d > 0 && d <= now {
			q.ready.Store(true)
		}
	}
}

func (w *Worker) markAllReady() {
	for _, q := range w.queues {
		q.ready.Store(true)
	}
	w.wake()
}

// subscriber turns wake-channel messages into ready queues until stop is
// closed. After a reconnect (go-redis resubscribes by itself) messages may have
// been missed, so every queue is made ready.
func (w *Worker) subscriber(ctx context.Context, ps *redis.PubSub, stop <-chan struct{}) {
	failures := 0
	for {
		msg, err := ps.Receive(ctx)
		select {
		case <-stop:
			return
		default:
		}
		if err != nil {
			failures++
			w.log.Debug("wake channel receive", zap.Error(err))
			w.markAllReady()
			select {
			case <-stop:
				return
			case <-time.After(retryDelay(failures)):
			}
			continue
		}
		failures = 0
		switch m := msg.(type) {
		case *redis.Message:
			if q := w.byChan[m.Channel]; q != nil {
				q.ready.Store(true)
				w.wake()
			}
		case *redis.Subscription:
			w.markAllReady()
		}
	}
}
