package worker

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/rediq/rediq/internal/backoff"
	"github.com/rediq/rediq/internal/broker"
)

// fetcher fills free prefetch slots from the queues that may have tasks. A queue
// is "ready" until a fetch from it comes back short; it becomes ready again when
// its wake channel says it went from empty to non-empty, when its earliest
// scheduled task falls due, or at each heartbeat (the safety net for a lost
// pub/sub message); a queue with recovered tasks waiting is also fetched from
// when its turn to send the worker a recovered task comes (see plan). There
// is no poll interval: an idle fetcher sleeps until one of those happens.
//
// A fetch whose reply is lost may still have leased tasks in Redis; the fetcher
// therefore sends the very same request (same token bases) again until it gets
// an answer, and the script, seeing its tokens already leased, answers what it
// leased the first time instead of leasing more.
//
// What the settler has queued goes with each fetch (sendWithFetch); before
// the fetcher waits for anything, and when it stops, it hands the sending
// back to the settler (fetcherAway).
func (w *Worker) fetcher(ctx context.Context) {
	due := stoppedTimer(w.clock)
	defer due.Stop()
	defer w.settler.fetcherAway()
	var ss []broker.Settlement // the settlements that go with a fetch, reused
	var dueAt int64
	retry := backoff.Retrier{Policy: redisRetry}
	rotate := 0
	// The queue at which the search for one to take a recovered task starts.
	turn := 0
	var reqs []broker.FetchRequest // a request to send again after an error
	var qs []*queue
	var gens []*generation
	for {
		if reqs == nil {
			w.reconcileAll(ctx)
			renewed := w.lease.changed() // before valid: a renewal between the two is not missed
			if !w.lease.valid() {        // fenced: fetch nothing until the lease is renewed
				w.settler.fetcherAway()
				select {
				case <-ctx.Done():
					return
				case <-renewed:
				}
				continue
			}
			free := w.prefetch.capacity - w.prefetch.held.Load()
			reqs, qs, turn = w.planRound(int(free), rotate, turn)
			rotate++
			if len(reqs) == 0 {
				reqs = nil
				w.settler.fetcherAway()
				select {
				case <-ctx.Done():
					return
				case <-w.prefetch.kick:
				case <-due.C():
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
		sent := w.clock.Now()
		var res []broker.Fetched
		var err error
		res, ss, err = w.settler.sendWithFetch(ctx, ss, w.cfg.LeaseTTL, reqs)
		if err != nil && !w.unconfirmed("fetch", err) {
			if ctx.Err() != nil {
				return // what it may have leased is given back by Leave
			}
			w.log.Warn("fetch failed; will send it again", zap.Error(err), zap.Int("failures", retry.Failures()+1))
			w.settler.fetcherAway()
			if !retry.Pause(ctx, nil, nil) {
				return
			}
			continue
		}
		retry.Reset()
		w.accept(ctx, reqs, qs, gens, res, sent)
		reqs = nil
		if next := w.earliestDue(); next != dueAt {
			dueAt = next
			if next == 0 {
				due.Stop()
			} else {
				due.Reset(max(time.Duration(next-w.clock.Now().UnixMilli())*time.Millisecond, 0))
			}
		}
	}
}

// accept turns a fetch's answer into jobs. sent is when the request that
// answered went out: a task's expiry is measured from it, so the worker's view
// of the deadline is never later than Redis's.
func (w *Worker) accept(ctx context.Context, reqs []broker.FetchRequest, qs []*queue, gens []*generation, res []broker.Fetched, sent time.Time) {
	now := w.clock.Now().UnixMilli()
	for i, r := range res {
		q, gen := qs[i], gens[i]
		if errors.Is(r.Err, broker.ErrLeaseLost) {
			w.settler.fetcherAway() // it waits on Redis: the settler goes on meanwhile
			w.leaseLost(ctx, q, gen)
			continue
		}
		if r.Paused {
			w.settler.fetcherAway() // it may wait for runners' starts, which may wait on the settler
			w.applyPause(ctx, q, r.PauseID)
			continue
		}
		q.recovered.Store(r.Recovering)
		q.waitRunner.Store(r.WaitRunner)
		if r.NextDue >= 0 {
			q.nextDue.Store(now + r.NextDue.Milliseconds())
		} else {
			q.nextDue.Store(0)
		}
		if len(r.Tasks) == reqs[i].N || r.More {
			q.ready.Store(true) // a full answer: there may be more
		}
		q.heldMu.Lock()
		for _, t := range r.Tasks {
			q.held[leaseKey{t.ID, t.Token}] = struct{}{}
		}
		q.heldMu.Unlock()
		for _, t := range r.Tasks {
			j := &job{q: q, gen: gen, token: t.Token, id: t.ID, raw: t.Body, recovered: t.Recovered, started: t.Started}
			if t.ExpiresIn >= 0 {
				j.expireAt = sent.Add(t.ExpiresIn)
			}
			w.prefetch.held.Add(1)
			if t.Recovered > 0 {
				w.prefetch.recovering.Add(1)
			}
			if j.raw == nil { // the record is gone: nothing to run
				w.settleNow(j, broker.Ack)
				continue
			}
			w.prefetch.jobs <- j
		}
	}
}

// reconcileAll compares, on the queues where a heartbeat saw more leases in
// Redis than the worker knows of, the leases Redis says this session holds with
// the leases (id and token) the worker knows, and gives back the ones it does
// not know (a fetch reply lost for good). It runs between fetches, so that no
// fetch is in flight: a lease the worker does not know then is one it will
// never learn.
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
	for id, tok := range leases {
		if _, ok := q.held[leaseKey{id, tok}]; !ok && tok <= w.prefetch.tokens.Load() {
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

// planQueue is what a fetch round's plan knows of one queue.
type planQueue struct {
	weight    int
	ready     bool // may have pending tasks
	recovered bool // has recovered tasks waiting, as far as the worker knows
}

// planInput is everything a fetch round's plan depends on.
type planInput struct {
	queues []planQueue // in the worker's order (the priority order with strict)
	free   int         // free prefetch slots
	idle   int         // idle runners: tasks the fetch may mark started at once
	strict bool        // StrictPriority
	rotate int         // who gets the remainder of the shares
	// mayRecover: the worker holds no recovered task, so one queue of the
	// round may take one; turn is the queue the search for it starts at.
	mayRecover bool
	turn       int
}

// planned is one queue's request in a fetch round.
type planned struct {
	queue      int // index in planInput.queues
	n          int
	startNow   int
	recovering bool // may take one task from recovering
}

// plan decides a fetch round: it splits the free slots among the ready
// queues, in order with strict priority, else in proportion to their weights
// (rotating who gets the remainder). Tasks that go straight to an idle runner
// are marked started by the fetch itself, saving them a round trip.
//
// A worker runs at most one recovered task at a time, so that a task that
// kills its worker is never again run beside another recovered one; when it
// runs none, one queue of the round may take one. That turn goes round the
// queues that have recovered tasks waiting, starting at turn, so that none
// waits behind another; the queue whose turn it is is fetched from even if it
// is not ready, for at least one task. With strict priority the turn goes to
// the queue fetched, if it has recovered tasks waiting. plan returns where the
// next turn search starts.
func plan(in planInput) (reqs []planned, turn int) {
	nq := len(in.queues)
	turn = in.turn
	if in.free <= 0 || nq == 0 {
		return nil, turn
	}
	if in.strict {
		for i, q := range in.queues {
			rec := in.mayRecover && q.recovered
			if q.ready || rec {
				return []planned{{queue: i, n: in.free, startNow: min(max(in.idle, 0), in.free), recovering: rec}}, turn
			}
		}
		return nil, turn
	}
	recoverer := -1
	if in.mayRecover {
		for k := range nq {
			if i := (in.turn + k) % nq; in.queues[i].recovered {
				recoverer = i
				break
			}
		}
	}
	var picked []int
	total := 0
	for i, q := range in.queues {
		if q.ready || i == recoverer {
			picked = append(picked, i)
			total += q.weight
		}
	}
	if len(picked) == 0 {
		return nil, turn
	}
	shares := make([]int, len(picked))
	given := 0
	for k, i := range picked {
		shares[k] = in.free * in.queues[i].weight / total
		given += shares[k]
	}
	for k := 0; given < in.free; k++ {
		shares[(in.rotate+k)%len(picked)]++
		given++
	}
	if recoverer >= 0 {
		k := slices.Index(picked, recoverer)
		if shares[k] == 0 { // the queue whose turn it is asks for one task at least
			big := 0
			for j := range shares {
				if shares[j] > shares[big] {
					big = j
				}
			}
			shares[big]--
			shares[k] = 1
		}
		turn = (recoverer + 1) % nq
	}
	idle := max(in.idle, 0)
	for k, i := range picked {
		if shares[k] == 0 {
			continue
		}
		start := min(idle, shares[k])
		idle -= start
		reqs = append(reqs, planned{queue: i, n: shares[k], startNow: start, recovering: i == recoverer})
	}
	return reqs, turn
}

// planRound plans a fetch round from the worker's state and prepares it: the
// queues asked are marked not ready (a wake-up during the fetch marks them
// again) and each request gets its token range. It returns where the next
// search for a queue to take a recovered task starts.
func (w *Worker) planRound(free, rotate, turn int) ([]broker.FetchRequest, []*queue, int) {
	in := planInput{
		queues:     make([]planQueue, len(w.queues)),
		free:       free,
		idle:       w.cfg.Concurrency - int(w.pool.active.Load()) - len(w.prefetch.jobs),
		strict:     w.cfg.StrictPriority,
		rotate:     rotate,
		mayRecover: w.prefetch.recovering.Load() == 0,
		turn:       turn,
	}
	for i, q := range w.queues {
		paused := q.isPaused()
		ready := q.ready.Load() || (q.waitRunner.Load() && in.idle > 0)
		in.queues[i] = planQueue{weight: q.weight, ready: ready && !paused, recovered: q.recovered.Load() && !paused}
	}
	planned, turn := plan(in)
	reqs := make([]broker.FetchRequest, 0, len(planned))
	qs := make([]*queue, 0, len(planned))
	for _, p := range planned {
		q := w.queues[p.queue]
		q.ready.Store(false)
		n := uint64(p.n)
		reqs = append(reqs, broker.FetchRequest{Queue: q.Queue, N: p.n, TokenBase: w.prefetch.tokens.Add(n) - n,
			Recovering: p.recovering, StartNow: p.startNow})
		qs = append(qs, q)
	}
	return reqs, qs, turn
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
	now := w.clock.Now().UnixMilli()
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

// fetchService runs the fetcher: it fills the prefetch buffer. Started last
// and stopped first: it feeds the runners. Its stop cuts a fetch in flight
// short; the session still holds what that fetch leased, and leave gives it
// back.
type fetchService struct{ *loop }

func newFetchService(w *Worker) fetchService {
	return fetchService{newLoop(func(ctx context.Context, stop <-chan struct{}) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		w.fetcher(ctx)
	})}
}

// close closes the buffer: the runners finish what is in it.
func (p *prefetchBuffer) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	close(p.jobs)
}

// prefetchBuffer is what the fetcher feeds the runners, and its accounting:
// the worker holds at most capacity tasks (running and prefetched), and the
// fetcher asks for no more than the room left.
type prefetchBuffer struct {
	capacity   int64
	held       atomic.Int64  // tasks fetched and not yet settled in Redis
	recovering atomic.Int64  // of those, recovered ones (at most one is fetched at a time)
	tokens     atomic.Uint64 // the last lease token handed out
	jobs       chan *job     // the buffer the runners take from
	// mu serialises closing jobs with a pause taking a queue's tasks out of
	// it and putting the others back (pause.go); closed: jobs is closed.
	mu     sync.Mutex
	closed bool
	kick   chan struct{} // wakes the fetcher
}
