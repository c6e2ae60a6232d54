package worker

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/rediq/rediq/internal/backoff"
	"github.com/rediq/rediq/internal/broker"
)

// subscription is the wake-up subscription. The subscriber owns it: it
// replaces it when it goes deaf and closes it when it stops.
type subscription = broker.WakeSubscription

// subscribeTimeout bounds a (re-)subscription: a server that accepts the
// connection and never answers must not hold the subscriber forever.
const subscribeTimeout = 5 * time.Second

// subscribe subscribes to the wake channels and the probe channel, returning
// once Redis confirmed it, so that no wake-up after this point can be missed.
func (w *Worker) subscribe(ctx context.Context) (*subscription, error) {
	qs := make([]*broker.Queue, len(w.queues))
	for i, q := range w.queues {
		qs[i] = q.Queue
	}
	ctx, cancel := context.WithTimeout(ctx, subscribeTimeout)
	defer cancel()
	return w.b.SubscribeWake(ctx, qs, w.session)
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
		again := w.listen(ctx, sub, stop)
		if !again {
			return
		}
		retry := backoff.Retrier{Policy: redisRetry}
		for {
			nsub, err := w.subscribe(ctx)
			if err == nil {
				sub = nsub
				break
			}
			w.log.Warn("subscribe again", zap.Error(err), zap.Int("failures", retry.Failures()+1))
			if !retry.Pause(ctx, stop, nil) {
				return
			}
		}
		w.probes.seen.Store(w.probes.sent.Load())
		w.log.Info("subscribed again to the wake-up channels")
		w.markAllReady()
	}
}

// listen serves one subscription until stop (false) or a request to subscribe
// again (true); either way it closes ps and waits for its receiver.
func (w *Worker) listen(ctx context.Context, ps *subscription, stop <-chan struct{}) (again bool) {
	msgs := make(chan any)
	quit := make(chan struct{})
	received := make(chan struct{})
	go func() { // Receive blocks: the loop below must stay free to stop
		defer close(received)
		for {
			var msg any
			ev, err := ps.Receive(ctx)
			if msg = ev; err != nil {
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
	retry := backoff.Retrier{Policy: redisRetry}
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
			w.log.Debug("wake channel receive", zap.Error(err))
			w.markAllReady()
			pause := w.clock.NewTimer(retry.Next())
			select {
			case <-stop:
				pause.Stop()
				return false
			case <-w.probes.resub:
				pause.Stop()
				return true
			case <-pause.C():
			}
			continue
		}
		retry.Reset()
		w.heard(ctx, msg.(broker.WakeEvent))
	}
}

// heard acts on what the wake-up subscription heard.
func (w *Worker) heard(ctx context.Context, ev broker.WakeEvent) {
	switch ev.Kind {
	case broker.WakeCancel:
		if q := w.byName[ev.Queue.Name]; q != nil {
			w.cancelTask(q, ev.TaskID)
		}
	case broker.WakeQueue:
		if q := w.byName[ev.Queue.Name]; q != nil {
			q.ready.Store(true)
			w.wake()
		}
	case broker.WakePause:
		if q := w.byName[ev.Queue.Name]; q != nil {
			w.applyPause(ctx, q, ev.PauseID)
		}
	case broker.WakeWindow:
		if q := w.byName[ev.Queue.Name]; q != nil {
			w.applyWindow(q, ev.Window, w.clock.Now())
		}
	case broker.WakeResume:
		if q := w.byName[ev.Queue.Name]; q != nil {
			w.applyResume(q, ev.PauseID)
		}
	case broker.WakeProbe:
		if ev.Probe > w.probes.seen.Load() {
			w.probes.seen.Store(ev.Probe)
		}
	case broker.WakeSubscribed:
		w.markAllReady()
		// Cancel requests published while the subscription was away.
		w.checkCancels(ctx)
	}
}

// wakeService serves the wake-up subscription: wake-ups, cancel requests,
// probes. Its Start subscribes and returns once Redis confirmed it (or with
// the error), so that nothing is fetched before a wake-up can be heard.
type wakeService struct {
	*loop
	w   *Worker
	sub *subscription // set by Start, owned by the subscriber from then on
}

func newWakeService(w *Worker) *wakeService {
	s := &wakeService{w: w}
	s.loop = newLoop(func(ctx context.Context, stop <-chan struct{}) { w.subscriber(ctx, s.sub, stop) })
	return s
}

func (s *wakeService) Start(ctx context.Context) error {
	sub, err := s.w.subscribe(ctx)
	if err != nil {
		return err
	}
	s.sub = sub
	if err := s.loop.Start(ctx); err != nil {
		sub.Close()
		return err
	}
	return nil
}
