package worker

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/rediq/rediq/internal/window"
)

// A queue's run window (App.SetQueueWindow) closes its start gate (pause.go)
// outside the window: the worker fetches nothing from it and gives back what
// it prefetched, as for a pause, but without acknowledging anything — every
// worker evaluates the same spec on its own clock. The window service arms
// one timer to the next opening or closing of any queue's window; workers
// learn a new window from the wake channel ("W:SPEC") or from a heartbeat.

// applyWindow sets q's run window to spec ("" none), as Redis held it at
// asOf (a heartbeat: when it was sent; a message: when it came), unless it is
// unchanged or older than what q last heard: a heartbeat reply read before a
// SetQueueWindow must not undo the window its message brought.
func (w *Worker) applyWindow(q *queue, spec string, asOf time.Time) {
	q.startMu.Lock()
	if asOf.Before(q.windowAsOf) {
		q.startMu.Unlock()
		return
	}
	q.windowAsOf = asOf
	if spec == q.windowSpec {
		q.startMu.Unlock()
		return
	}
	q.windowSpec = spec
	var win *window.Spec
	if spec != "" {
		var err error
		if win, err = window.Parse(spec); err != nil {
			q.startMu.Unlock()
			// Set by hand (SetQueueWindow checks): the window in force stays,
			// and this is said once.
			w.log.Error("queue window: ignored", zap.String("queue", q.Name), zap.Error(err))
			return
		}
	}
	q.window = win
	q.startMu.Unlock()
	w.log.Info("queue window set", zap.String("queue", q.Name), zap.String("window", spec))
	w.evalWindow(q)
	select {
	case w.windowKick <- struct{}{}:
	default:
	}
}

// evalWindow opens or closes q's start gate as its window says now.
func (w *Worker) evalWindow(q *queue) {
	now := w.clock.Now()
	q.startMu.Lock()
	closed := q.window != nil && !q.window.Open(now)
	was := q.closed
	q.closed = closed
	q.startMu.Unlock()
	switch {
	case closed && !was:
		w.log.Info("queue window closed: its tasks wait", zap.String("queue", q.Name))
		w.givePrefetchedBack(q)
	case !closed && was:
		w.log.Info("queue window open", zap.String("queue", q.Name))
		q.ready.Store(true)
		w.wake()
	}
}

type windowService struct{ *loop }

func newWindowService(w *Worker) windowService { return windowService{newLoop(w.windowLoop)} }

// windowLoop re-evaluates the queues' windows at their next change.
func (w *Worker) windowLoop(_ context.Context, stop <-chan struct{}) {
	for {
		now := w.clock.Now()
		var next time.Time
		for _, q := range w.queues {
			w.evalWindow(q)
			q.startMu.RLock()
			win := q.window
			q.startMu.RUnlock()
			if win == nil {
				continue
			}
			if t, ok := win.Next(now); ok && (next.IsZero() || t.Before(next)) {
				next = t
			}
		}
		// A long wait is cut into minutes: the wall clock may be set meanwhile.
		d := time.Minute
		if !next.IsZero() {
			d = min(next.Sub(now), d)
		}
		t := w.clock.NewTimer(max(d, 0))
		select {
		case <-stop:
			t.Stop()
			return
		case <-w.windowKick:
			t.Stop()
		case <-t.C():
		}
	}
}
