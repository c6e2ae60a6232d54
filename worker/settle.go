package worker

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/rediq/rediq/internal/broker"
)

// settler coalesces task outcomes: everything settled while one round trip is in
// flight goes in the next, so acks cost one HDEL per queue per round trip however
// many tasks finish.
type settler struct {
	w       *Worker
	mu      sync.Mutex
	pending []broker.Settlement
	signal  chan struct{}
}

func (s *settler) init(w *Worker) {
	s.w = w
	s.signal = make(chan struct{}, 1)
}

func (s *settler) add(x broker.Settlement) {
	s.mu.Lock()
	s.pending = append(s.pending, x)
	s.mu.Unlock()
	s.notify()
}

func (s *settler) notify() {
	select {
	case s.signal <- struct{}{}:
	default:
	}
}

func (s *settler) take() []broker.Settlement {
	s.mu.Lock()
	defer s.mu.Unlock()
	batch := s.pending
	s.pending = make([]broker.Settlement, 0, len(batch))
	return batch
}

func (s *settler) putBack(batch []broker.Settlement) {
	s.mu.Lock()
	s.pending = append(batch, s.pending...)
	s.mu.Unlock()
}

// loop settles until stop is closed, then flushes what is left.
func (s *settler) loop(ctx context.Context, stop <-chan struct{}) {
	failures := 0
	for {
		select {
		case <-s.signal:
		case <-stop:
			s.final(ctx)
			return
		}
		batch := s.take()
		if len(batch) == 0 {
			continue
		}
		if err := s.w.b.Settle(ctx, s.w.keep, batch); err != nil {
			failures++
			s.w.log.Warn("settle failed; will retry", zap.Int("tasks", len(batch)), zap.Error(err))
			s.putBack(batch)
			select {
			case <-time.After(retryDelay(failures)):
				s.notify()
			case <-stop:
				s.final(ctx)
				return
			}
			continue
		}
		failures = 0
	}
}

// final flushes what is left, trying for a few seconds. What still fails is not
// lost: its leases expire and another worker runs the tasks again.
func (s *settler) final(ctx context.Context) {
	deadline := time.Now().Add(5 * time.Second)
	for attempt := 1; ; attempt++ {
		batch := s.take()
		if len(batch) == 0 {
			return
		}
		err := s.w.b.Settle(ctx, s.w.keep, batch)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.w.log.Error("could not settle tasks before stopping; they will run again after the lease expires",
				zap.Int("tasks", len(batch)), zap.Error(err))
			return
		}
		s.putBack(batch)
		time.Sleep(retryDelay(attempt))
	}
}

// retryDelay backs off Redis errors: 50ms doubling to 2s.
func retryDelay(failures int) time.Duration {
	return min(50*time.Millisecond<<min(failures-1, 6), 2*time.Second)
}
