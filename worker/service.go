package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rediq/rediq/internal/backoff"
)

// service is one background job of a worker, with river's startstop
// contract: Start launches it and returns once it runs (an error: it does not
// run, and Stop need not be called); Stop asks it to end and returns once it
// has — having flushed what it holds (the settler its outcomes, the output
// sender its lines). Stop is safe to call twice, or without a Start. Each
// service is a type in a file of its own and reads time from the worker's
// clock. Worker.run starts them in one order and stops them in the reverse
// (see there): a new job (a scheduler, a limit timer, statistics) is a new
// type and one line in run's list.
type service interface {
	Start(ctx context.Context) error
	Stop()
}

// loop is the body most services share: one goroutine that runs until stop
// is closed. ctx carries Redis work that must outlive the worker's own
// context (the final flushes).
type loop struct {
	run     func(ctx context.Context, stop <-chan struct{})
	mu      sync.Mutex
	started bool
	quit    chan struct{}
	done    chan struct{}
}

func newLoop(run func(ctx context.Context, stop <-chan struct{})) *loop {
	return &loop{run: run, quit: make(chan struct{}), done: make(chan struct{})}
}

func (l *loop) Start(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.started {
		return errors.New("worker: service started twice")
	}
	l.started = true
	go func() {
		defer close(l.done)
		l.run(ctx, l.quit)
	}()
	return nil
}

func (l *loop) Stop() {
	l.mu.Lock()
	select {
	case <-l.quit:
	default:
		close(l.quit)
	}
	started := l.started
	l.mu.Unlock()
	if started {
		<-l.done
	}
}

// startAll starts services in order; if one fails, those started are
// stopped, in reverse, and its error returned.
func startAll(ctx context.Context, services []service) error {
	for i, s := range services {
		if err := s.Start(ctx); err != nil {
			stopAll(services[:i])
			return err
		}
	}
	return nil
}

// stopAll stops services in the reverse of their start order, one after
// the other.
func stopAll(services []service) {
	for i := len(services) - 1; i >= 0; i-- {
		services[i].Stop()
	}
}

// beats tells the jobs that follow a heartbeat (probe, upkeep) that one
// succeeded. Each has a channel of its own holding one signal: a job still
// busy with the last beat skips those that came meanwhile, and none of them
// can delay the next renewal.
type beats struct{ chans []chan struct{} }

// listen returns a new listener's channel; call it before the heartbeat
// starts.
func (b *beats) listen() <-chan struct{} {
	ch := make(chan struct{}, 1)
	b.chans = append(b.chans, ch)
	return ch
}

func (b *beats) beat() {
	for _, ch := range b.chans {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// redisRetry paces the services' retries of Redis: 50ms doubling to 2s,
// jittered so that the workers of a Redis that comes back do not all retry
// in step.
var redisRetry = backoff.Policy{First: 50 * time.Millisecond, Max: 2 * time.Second}
