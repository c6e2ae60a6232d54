package worker

import (
	"context"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/rediq/rediq/internal/broker"
)

// A paused queue (App.PauseQueue) starts none of its tasks here: a runner
// passes the queue's start gate (startMu, read-locked) before it runs a task,
// and gives the task back unstarted (not an attempt) while the queue is paused.
// Applying a pause takes the gate's write lock, waits for the runners already
// past it to call their handlers, and then acknowledges the pause in Redis:
// PauseQueue returns once every live session did. The worker learns of a pause
// from the wake channel ("P:ID"), from its heartbeat's reply (a message it
// missed), or from a fetch that answers "paused"; of a resume likewise.

// passGate lets j start unless its queue is paused; a task that may not start
// is given back (it stays pending, with no attempt counted). A runner past the
// gate calls entered(j) once its handler is called, or once it is not.
func (w *Worker) passGate(j *job) bool {
	q := j.q
	q.startMu.RLock()
	// The window's own timer closes the gate when the window closes, and may
	// fire late (a loaded machine): its clock decides here too.
	late := !q.closed && q.window != nil && !q.window.Open(w.clock.Now())
	if q.paused || q.closed || late {
		q.startMu.RUnlock()
		if late {
			w.evalWindow(q) // closes the gate and gives the prefetched back
		}
		// Outside the lock: settle may wait for room in the settler's
		// backlog, and a pause being applied must not wait for that.
		w.settle(j, broker.Requeue, nil, 0)
		return false
	}
	q.starting.Add(1)
	j.gated = true
	q.startMu.RUnlock()
	return true
}

// entered tells the gate that j's runner is no longer between the gate and
// its handler.
func (w *Worker) entered(j *job) {
	if j.gated {
		j.gated = false
		j.q.starting.Add(-1)
	}
}

// applyPause pauses q here under the pause id, gives back q's tasks waiting
// in the prefetch buffer, and acknowledges the pause. It acknowledges again
// each time it hears of the same pause (every heartbeat while q is paused):
// an acknowledgement Redis lost (a failover) is made good. A pause older than
// what q last heard (a resume that came first) changes nothing; id 0 is a
// pause not set by PauseQueue, which no id orders: q is paused, and the next
// resume ends it.
func (w *Worker) applyPause(ctx context.Context, q *queue, id int64) {
	q.startMu.Lock()
	if id != 0 && (id < q.pauseID || (id == q.pauseID && !q.paused)) {
		q.startMu.Unlock()
		return
	}
	was := q.paused
	q.paused = true
	if id != 0 {
		q.pauseID = id
	}
	q.startMu.Unlock()
	if !was {
		w.log.Info("queue paused", zap.String("queue", q.Name))
		w.givePrefetchedBack(q)
	}
	if id == 0 {
		return // nothing to acknowledge: PauseQueue waits for no id
	}
	// Runners between the gate and their handlers: microseconds, unless a
	// start needs Redis (a batch's first task) while it is slow. The caller
	// (the subscriber, the heartbeat) must not hang on that: the next
	// heartbeat acknowledges instead.
	for wait := time.Now().Add(100 * time.Millisecond); q.starting.Load() > 0; {
		if time.Now().After(wait) {
			w.log.Debug("pause: tasks still starting; the next heartbeat acknowledges", zap.String("queue", q.Name))
			return
		}
		time.Sleep(20 * time.Microsecond)
	}
	if err := w.b.AckPause(ctx, q.Queue, w.session, strconv.FormatInt(id, 10)); err != nil {
		w.log.Warn("acknowledge pause; the next heartbeat tries again", zap.String("queue", q.Name), zap.Error(err))
	}
}

// givePrefetchedBack gives back, unstarted, q's tasks waiting in the
// prefetch buffer: while every runner is busy with a long task no runner
// would reach them, and they would stay leased to this worker (where a purge
// cannot see them) for as long as the pause. The others keep their places.
func (w *Worker) givePrefetchedBack(q *queue) {
	w.prefetch.mu.Lock()
	if w.prefetch.closed {
		w.prefetch.mu.Unlock()
		return // the worker is stopping: it gives back what no runner took
	}
	var keep, back []*job
	for n := len(w.prefetch.jobs); n > 0; n-- {
		select {
		case j := <-w.prefetch.jobs:
			if j.q == q {
				back = append(back, j)
			} else {
				keep = append(keep, j)
			}
		default:
			n = 1
		}
	}
	// Room for these: the buffer never holds more than the tasks held.
	for _, j := range keep {
		w.prefetch.jobs <- j
	}
	w.prefetch.mu.Unlock()
	// Pushed without waiting for backlog room: the heartbeater comes here
	// before it renews the lease clock, and with the clock run out the
	// settler frees no room until a renewal.
	for _, j := range back {
		w.settleNow(j, broker.Requeue)
	}
}

// applyResume lets q's tasks start here again and fetches from it, unless
// q has heard of a later pause.
func (w *Worker) applyResume(q *queue, id int64) {
	q.startMu.Lock()
	if id < q.pauseID {
		q.startMu.Unlock()
		return
	}
	was := q.paused
	q.paused, q.pauseID = false, id
	q.startMu.Unlock()
	if was {
		w.log.Info("queue resumed", zap.String("queue", q.Name))
	}
	q.ready.Store(true)
	w.wake()
}

// isPaused reports whether q starts nothing here: paused, or outside its run
// window.
func (q *queue) isPaused() bool {
	q.startMu.RLock()
	defer q.startMu.RUnlock()
	return q.paused || q.closed
}
