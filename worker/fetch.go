package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
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
//
// A fetch whose reply is lost may still have leased tasks in Redis; the fetcher
// therefore sends the very same request (same token bases) again until it gets
// an answer, and the script, seeing its tokens already leased, answers what it
// leased the first time instead of leasing more.
func (w *Worker) fetcher(ctx context.Context) {
	due := time.NewTimer(time.Hour)
	due.Stop()
	defer due.Stop()
	var dueAt int64
	failures := 0
	rotate := 0
	var reqs []broker.FetchRequest // a request to send again after an error
	var qs []*queue
	var gens []*generation
	for {
		if reqs == nil {
			w.reconcileAll(ctx)
			if !w.lease.valid() { // fenced: fetch nothing until the lease is renewed
				select {
				case <-ctx.Done():
					return
				case <-w.lease.changed():
				}
				continue
			}
			free := w.capacity - w.held.Load()
			reqs, qs = w.plan(int(free), rotate)
			rotate++
			if len(reqs) == 0 {
				reqs = nil
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
			// Capture the lease generations before the request goes out: a
			// loss noticed while it is in flight must drop what it brings.
			gens = gens[:0]
			for _, q := range qs {
				gens = append(gens, q.gen.Load())
			}
		}
		res, err := w.b.Fetch(ctx, w.session, w.cfg.LeaseTTL, reqs)
		if err != nil && !w.unconfirmed("fetch", err) {
			if ctx.Err() != nil {
				return // what it may have leased is given back by Leave
			}
			failures++
			w.log.Warn("fetch failed; will send it again", zap.Error(err), zap.Int("failures", failures))
			select {
			case <-ctx.Done():
				return
			case <-time.After(retryDelay(failures)):
			}
			continue
		}
		failures = 0
		w.accept(ctx, reqs, qs, gens, res)
		reqs = nil
		if next := w.earliestDue(); next != dueAt {
			dueAt = next
			if next == 0 {
				due.Stop()
			} else {
				due.Reset(max(time.Duration(next-w.cfg.now().UnixMilli())*time.Millisecond, 0))
			}
		}
	}
}

// accept turns a fetch's answer into jobs.
func (w *Worker) accept(ctx context.Context, reqs []broker.FetchRequest, qs []*queue, gens []*generation, res []broker.Fetched) {
	now := w.cfg.now().UnixMilli()
	for i, r := range res {
		q, gen := qs[i], gens[i]
		if errors.Is(r.Err, broker.ErrLeaseLost) {
			w.leaseLost(ctx, q, gen)
			continue
		}
		if r.NextDue >= 0 {
			q.nextDue.Store(now + r.NextDue.Milliseconds())
		} else {
			q.nextDue.Store(0)
		}
		if len(r.Tasks) == reqs[i].N {
			q.ready.Store(true) // a full answer: there may be more
		}
		q.heldMu.Lock()
		for _, t := range r.Tasks {
			q.held[t.Token] = struct{}{}
		}
		q.heldMu.Unlock()
		for _, t := range r.Tasks {
			j := &job{q: q, gen: gen, token: t.Token, id: t.ID, raw: t.Body, recovered: t.Recovered, started: t.Started}
			w.held.Add(1)
			if t.Recovered > 0 {
				w.recovering.Add(1)
			}
			if j.raw == nil { // the record is gone: nothing to run
				w.settleNow(j, broker.Ack)
				continue
			}
			w.jobs <- j
		}
	}
}

// reconcileAll compares, on the queues where a heartbeat saw more leases in
// Redis than the worker knows of, the leases Redis says this session holds with
// the tokens the worker knows, and gives back the ones it does not know (a
// fetch reply lost for good). It runs between fetches, so that no fetch is in
// flight: a token the worker does not know then is one it will never learn.
func (w *Worker) reconcileAll(ctx context.Context) {
	for _, q := range w.queues {
		if q.reconcile.CompareAndSwap(true, false) {
			if err := w.reconcile(ctx, q); err != nil {
				w.log.Warn("reconcile leases", zap.String("queue", q.Name), zap.Error(err))
				q.reconcile.Store(true)
			}
		}
	}
}

// reconcile gives back what the session holds on q in Redis and the worker
// does not know of, in one synchronous round trip.
func (w *Worker) reconcile(ctx context.Context, q *queue) error {
	leases, err := w.b.Leases(ctx, q.Queue, w.session)
	if err != nil {
		return err
	}
	var give []broker.Settlement
	q.heldMu.Lock()
	for tok, id := range leases {
		if _, ok := q.held[tok]; !ok && tok <= w.tokens.Load() {
			give = append(give, broker.Settlement{Queue: q.Queue, Session: w.session, Token: tok, ID: id, Outcome: broker.Requeue})
		}
	}
	q.heldMu.Unlock()
	if len(give) == 0 {
		return nil
	}
	held, err := w.b.Settle(ctx, w.keep, give)
	if err != nil && !w.unconfirmed("give back", err) {
		return err
	}
	// A settlement that completed since the snapshot finds nothing: only what
	// was in fact given back counts.
	n := 0
	for _, h := range held {
		if h {
			n++
		}
	}
	if n > 0 {
		w.log.Warn("gave back tasks leased to this worker that it never learned of (a fetch whose reply was lost)",
			zap.String("queue", q.Name), zap.Int("tasks", n))
	}
	return nil
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
	// Tasks that go straight to an idle runner are marked started by the
	// fetch itself, saving them a round trip; the rest are marked when a
	// runner takes them.
	idle := max(w.cfg.Concurrency-int(w.active.Load())-len(w.jobs), 0)
	recovering := w.recovering.Load() == 0
	var reqs []broker.FetchRequest
	var qs []*queue
	for i, q := range ready {
		if shares[i] == 0 {
			continue
		}
		q.ready.Store(false)
		n := uint64(shares[i])
		start := min(idle, shares[i])
		idle -= start
		reqs = append(reqs, broker.FetchRequest{Queue: q.Queue, N: shares[i], TokenBase: w.tokens.Add(n) - n,
			Recovering: recovering, StartNow: start})
		recovering = false // at most one recovered task per fetch
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
	now := w.cfg.now().UnixMilli()
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

// subscription is the wake-up subscription. The subscriber owns it: it
// replaces it when it goes deaf and closes it when it stops.
type subscription struct{ ps *redis.PubSub }

// probeState tracks the heartbeat's probes of the wake-up subscription.
type probeState struct {
	sent, seen atomic.Uint64
	resub      chan struct{} // asks the subscriber to subscribe again
}

func (w *Worker) probeChannel() string { return w.b.Namespace() + ":probe:" + w.session }

// subscribeTimeout bounds a (re-)subscription: a server that accepts the
// connection and never answers must not hold the subscriber forever.
const subscribeTimeout = 5 * time.Second

// subscribe subscribes to the wake channels and the probe channel, returning
// once Redis confirmed it, so that no wake-up after this point can be missed.
func (w *Worker) subscribe(ctx context.Context) (*subscription, error) {
	chans := make([]string, 0, len(w.queues)+1)
	for _, q := range w.queues {
		chans = append(chans, q.Channel)
	}
	chans = append(chans, w.probeChannel())
	ctx, cancel := context.WithTimeout(ctx, subscribeTimeout)
	defer cancel()
	ps := w.b.Client().Subscribe(ctx, chans...)
	for subscribed := 0; subscribed < len(chans); {
		msg, err := ps.Receive(ctx)
		if err != nil {
			ps.Close()
			return nil, fmt.Errorf("subscribe: %w", err)
		}
		if _, ok := msg.(*redis.Subscription); ok {
			subscribed++
		}
	}
	return &subscription{ps: ps}, nil
}

// probe checks that the subscription still hears what is published, after a
// heartbeat: it publishes a numbered probe, and checkProbe, a little later,
// asks for a new subscription if it did not come back. A subscription can go
// deaf while its connection lives on — after a Sentinel failover it stays on
// the old master, which go-redis does not move — and then idle workers would
// wait for the heartbeat's safety net instead of waking at once.
func (w *Worker) probe(ctx context.Context) {
	n := w.probes.sent.Add(1)
	if err := w.b.Client().Publish(ctx, w.probeChannel(), n).Err(); err != nil {
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

func (w *Worker) resubscribe() {
	select {
	case w.probes.resub <- struct{}{}:
	default:
	}
}

// subscriber turns wake-channel messages into ready queues until stop is
// closed, re-subscribing when asked; it closes the subscription when it
// stops. After a reconnect (go-redis resubscribes by itself) messages may have
// been missed, so every queue is made ready.
func (w *Worker) subscriber(ctx context.Context, sub *subscription, stop <-chan struct{}) {
	for {
		again := w.listen(ctx, sub.ps, stop)
		if !again {
			return
		}
		for failures := 1; ; failures++ {
			nsub, err := w.subscribe(ctx)
			if err == nil {
				sub = nsub
				break
			}
			w.log.Warn("subscribe again", zap.Error(err), zap.Int("failures", failures))
			select {
			case <-stop:
				return
			case <-time.After(retryDelay(failures)):
			}
		}
		w.probes.seen.Store(w.probes.sent.Load())
		w.log.Info("subscribed again to the wake-up channels")
		w.markAllReady()
	}
}

// listen serves one subscription until stop (false) or a request to subscribe
// again (true); either way it closes ps and waits for its receiver.
func (w *Worker) listen(ctx context.Context, ps *redis.PubSub, stop <-chan struct{}) (again bool) {
	msgs := make(chan any)
	quit := make(chan struct{})
	received := make(chan struct{})
	go func() { // Receive blocks: the loop below must stay free to stop
		defer close(received)
		for {
			msg, err := ps.Receive(ctx)
			if err != nil {
				msg = err
			}
			select {
			case msgs <- msg:
			case <-quit:
				return
			}
		}
	}()
	defer func() {
		close(quit)
		ps.Close() // ends a blocked Receive
		<-received
	}()
	failures := 0
	for {
		var msg any
		select {
		case <-stop:
			return false
		case <-w.probes.resub:
			return true
		case msg = <-msgs:
		}
		if err, ok := msg.(error); ok {
			failures++
			w.log.Debug("wake channel receive", zap.Error(err))
			w.markAllReady()
			select {
			case <-stop:
				return false
			case <-w.probes.resub:
				return true
			case <-time.After(retryDelay(failures)):
			}
			continue
		}
		failures = 0
		switch m := msg.(type) {
		case *redis.Message:
			if q := w.byChan[m.Channel]; q != nil && strings.HasPrefix(m.Payload, "c:") {
				w.cancelTask(q, m.Payload[2:])
			} else if q != nil {
				q.ready.Store(true)
				w.wake()
			} else if m.Channel == w.probeChannel() {
				var n uint64
				fmt.Sscan(m.Payload, &n)
				if n > w.probes.seen.Load() {
					w.probes.seen.Store(n)
				}
			}
		case *redis.Subscription:
			w.markAllReady()
			if m.Kind == "subscribe" {
				// Cancel requests published while the subscription was away.
				w.checkCancels(ctx)
			}
		}
	}
}
