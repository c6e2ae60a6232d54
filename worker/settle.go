package worker

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/rediq/rediq/internal/backoff"
	"github.com/rediq/rediq/internal/broker"
)

// settler coalesces what runners tell Redis — outcomes and start marks —
// so that everything settled while one round trip is in flight goes in the
// next, as one script call per queue. A job's prefetch slot is freed when its
// outcome is queued here, so the fetcher refills it while the outcome travels;
// the backlog of outcomes is bounded by the worker's capacity (room): when
// Redis is slow or away, runners wait to queue theirs, and with no free slot
// the fetcher fetches nothing.
//
// While the fetcher fetches (withFetch), what is queued goes with its next
// fetch, in the same round trip (sendWithFetch), and the settler's own loop
// sends only what waited longer than withFetchWait for it: a busy worker then
// pays one round trip, not two, for each fetch and the outcomes that freed
// its room, and a slow fetch holds nothing back for long. The fetcher hands
// the sending back (fetcherAway) before it waits for anything — work, a
// renewal, a retry — or stops.
type settler struct {
	w       *Worker
	mu      sync.Mutex
	pending []settleItem
	signal  chan struct{}
	room    chan struct{} // a token per outcome queued or in flight: the backlog's bound
	stopped chan struct{} // closed when the settler has stopped: add waits no more
	// spare is a flush sent and done with, whose array the next take reuses;
	// ss is send's, reused from one send to the next (only the settler's
	// goroutine sends).
	spare []settleItem
	ss    []broker.Settlement
	// withFetch: the fetcher is fetching and takes what is queued.
	withFetch atomic.Bool
	// since is when pending last went from empty to not (zero: put back,
	// due at once), under mu.
	since time.Time
}

// withFetchWait bounds how long what is queued waits for the fetcher's next
// fetch: a fetch in flight that is slow (Redis slow, a reply lost until the
// read timeout) must not hold outcomes back. Several times a busy worker's
// round trip (0.3–1 ms on loopback), so that it rarely sends alone.
const withFetchWait = 2 * time.Millisecond

type settleItem struct {
	s    broker.Settlement
	j    *job
	mark chan bool // Start: receives whether the lease is still held
	room bool      // it holds a place in the backlog
}

func (s *settler) init(w *Worker) {
	s.w = w
	s.signal = make(chan struct{}, 1)
	s.room = make(chan struct{}, w.prefetch.capacity)
	s.stopped = make(chan struct{})
}

// add queues an outcome (or a start mark nobody waits for). Outcomes wait for
// room in the backlog, unless the worker is stopping: then the final flush
// takes what there is.
func (s *settler) add(j *job, x broker.Settlement) {
	it := settleItem{s: x, j: j}
	if x.Outcome != broker.Start {
		select {
		case s.room <- struct{}{}: // the usual case, without a full select
			it.room = true
		default:
			select {
			case s.room <- struct{}{}:
				it.room = true
			case <-s.w.pool.abort:
			case <-s.stopped:
			}
		}
	}
	s.push(it)
}

// done frees the backlog room of a settled outcome.
func (s *settler) done(it settleItem) {
	if it.room {
		<-s.room
	}
}

func (s *settler) push(it settleItem) {
	s.mu.Lock()
	if it.s.Outcome != broker.Start && it.j != nil {
		it.j.outcome = true
	}
	if len(s.pending) == 0 {
		s.since = time.Now()
	}
	s.pending = append(s.pending, it)
	s.mu.Unlock()
	if !s.withFetch.Load() { // else the fetcher takes it, or the loop's watch finds it
		s.kick()
	}
}

// kick wakes the loop.
func (s *settler) kick() {
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

// mark marks j started in Redis and reports whether its lease is still held;
// ok is false if abort closed first.
func (s *settler) mark(j *job, abort <-chan struct{}) (held, ok bool) {
	ch := make(chan bool, 1)
	s.push(settleItem{s: s.w.settlement(j, broker.Start), j: j, mark: ch})
	select {
	case held = <-ch:
		return held, true
	case <-abort:
		return false, false
	}
}

// take takes what is queued. A start mark nobody waits for goes only if its
// task's outcome is not queued too: a mark always precedes its outcome, so
// that outcome goes in the same call, where it releases the lease the mark
// would have marked (a short task, the common case, then costs Redis one
// outcome, not two).
func (s *settler) take() []settleItem {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 { // a kick for what the last flush took: keep both arrays
		return nil
	}
	flush := s.pending
	s.pending, s.spare = s.spare[:0], nil
	kept := flush[:0]
	for _, it := range flush {
		if it.s.Outcome == broker.Start && it.mark == nil && it.j != nil && it.j.outcome {
			continue
		}
		kept = append(kept, it)
	}
	return kept
}

func (s *settler) putBack(flush []settleItem) {
	s.mu.Lock()
	s.pending = append(flush, s.pending...)
	s.since = time.Time{}
	s.mu.Unlock()
}

// waited is how long the oldest of what is queued has waited; ok is false
// when nothing is.
func (s *settler) waited() (d time.Duration, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return 0, false
	}
	if s.since.IsZero() {
		return withFetchWait, true
	}
	return time.Since(s.since), true
}

// send applies one flush of outcomes; on error it puts them back.
func (s *settler) send(ctx context.Context, flush []settleItem) error {
	ss := settlements(s.ss[:0], flush)
	held, err := s.w.b.Settle(ctx, s.w.keep, ss)
	clear(ss) // what the items point to may go
	s.ss = ss
	return s.settled(flush, held, err, err != nil && s.w.unconfirmed("settle", err))
}

// settlements appends flush's settlements to ss.
func settlements(ss []broker.Settlement, flush []settleItem) []broker.Settlement {
	for i := range flush {
		ss = append(ss, flush[i].s)
	}
	return ss
}

// sendWithFetch is the fetcher's Fetch of reqs, with what is queued here
// settled in the same round trip (the fetcher takes the sending over until
// fetcherAway). ss is the fetcher's buffer for the settlements, given back
// for its next call.
func (s *settler) sendWithFetch(ctx context.Context, ss []broker.Settlement, ttl time.Duration,
	reqs []broker.FetchRequest) ([]broker.Fetched, []broker.Settlement, error) {
	if !s.withFetch.Swap(true) {
		s.kick() // the loop starts its watch
	}
	var flush []settleItem
	if s.w.lease.valid() { // as the loop: nothing is settled past the lease clock
		flush = s.take()
	}
	ss = settlements(ss[:0], flush)
	res, held, err := s.w.b.SettleAndFetch(ctx, s.w.keep, ss, s.w.session, ttl, reqs)
	clear(ss)
	if len(flush) > 0 {
		// An error is the fetch's too (the fetcher reports it): the flush
		// goes back for the next send, unless only replication failed.
		_ = s.settled(flush, held, err, errors.Is(err, broker.ErrNotReplicated))
	}
	return res, ss, err
}

// fetcherAway hands the sending back to the settler's loop: the fetcher is
// about to wait, or stops.
func (s *settler) fetcherAway() {
	s.withFetch.Store(false)
	s.mu.Lock()
	queued := len(s.pending) > 0
	s.mu.Unlock()
	if queued {
		s.kick()
	}
}

// settled finishes a flush sent: marks answered, outcomes done with; on an
// error it is put back whole, for the next send — unless the error only says
// that the replicas did not confirm (applied: the caller reported it).
func (s *settler) settled(flush []settleItem, held []bool, err error, applied bool) error {
	if err != nil && !applied {
		s.putBack(flush)
		s.kick()
		return err
	}
	for i, it := range flush {
		if it.mark != nil {
			it.mark <- held[i]
			continue
		}
		if it.s.Outcome == broker.Start { // a mark nobody waits for
			continue
		}
		if !held[i] {
			s.w.log.Debug("settled a task whose lease this worker no longer holds: nothing changed",
				zap.String("task_id", it.s.ID), zap.String("queue", it.s.Queue.Name))
		}
		s.done(it)
		s.w.forget(it.j)
	}
	clear(flush)
	s.mu.Lock()
	s.spare = flush[:0]
	s.mu.Unlock()
	return nil
}

// loop settles until stop is closed, then flushes what is left.
func (s *settler) loop(ctx context.Context, stop <-chan struct{}) {
	retry := backoff.Retrier{Policy: redisRetry}
	late := time.NewTimer(time.Hour) // what the fetcher did not take in time
	late.Stop()
	defer late.Stop()
	for {
		select {
		case <-s.signal:
		case <-late.C:
		case <-stop:
			s.final(ctx)
			return
		}
		// Nothing is sent while the lease clock has run out (after a freeze,
		// or while Redis was away): it waits for the renewal that shows what
		// the session still holds. (Redis fences by lease token as well.)
		renewed := s.w.lease.changed()
		if !s.w.lease.valid() {
			select {
			case <-renewed:
				s.kick()
			case <-stop:
				s.final(ctx)
				return
			}
			continue
		}
		if s.withFetch.Load() {
			// What is queued goes with the next fetch (or fetcherAway kicks
			// again), unless that does not come within withFetchWait: the
			// loop looks every withFetchWait while the fetcher fetches
			// (what is queued meanwhile does not wake it).
			d, ok := s.waited()
			if !ok {
				late.Reset(withFetchWait)
				continue
			}
			if d < withFetchWait {
				late.Reset(withFetchWait - d)
				continue
			}
		}
		flush := s.take()
		if len(flush) == 0 {
			continue
		}
		if err := s.send(ctx, flush); err != nil {
			s.w.log.Warn("settle failed; will retry", zap.Int("tasks", len(flush)), zap.Error(err))
			if !retry.Pause(ctx, stop, nil) {
				s.final(ctx)
				return
			}
			s.kick()
			continue
		}
		retry.Reset()
	}
}

// final flushes what is left, trying for a few seconds. What still fails is not
// lost: its leases expire and another worker runs the tasks again.
func (s *settler) final(ctx context.Context) {
	defer close(s.stopped)
	deadline := s.w.clock.Now().Add(5 * time.Second)
	retry := backoff.Retrier{Policy: redisRetry}
	for {
		flush := s.take()
		if len(flush) == 0 {
			return
		}
		err := s.send(ctx, flush)
		if err == nil {
			continue
		}
		if s.w.clock.Now().After(deadline) {
			s.w.log.Error("could not settle tasks before stopping; they will run again after the lease expires",
				zap.Int("tasks", len(flush)), zap.Error(err))
			for _, it := range s.take() {
				if it.mark != nil {
					it.mark <- false
				}
			}
			return
		}
		time.Sleep(retry.Next())
	}
}

// settleService runs the settler's loop; its stop flushes what is left.
type settleService struct{ *loop }

func newSettleService(w *Worker) settleService { return settleService{newLoop(w.settler.loop)} }
