package worker

import (
	"context"
	"time"

	"github.com/rediq/rediq"
	"go.uber.org/zap"
)

// cancelTask acts on CancelTask's request for the task id of q: a handler
// running it is cancelled with cause ErrCancelled at once; a task held and not
// yet started never starts (process checks the request).
func (w *Worker) cancelTask(q *queue, id string) {
	now := time.Now()
	w.cancels.mu.Lock()
	for k, t := range w.cancels.ids { // requests for tasks this worker never held
		if now.Sub(t) > time.Minute {
			delete(w.cancels.ids, k)
		}
	}
	w.cancels.ids[id] = now
	w.cancels.n.Store(int32(len(w.cancels.ids)))
	w.cancels.mu.Unlock()
	w.cancelRunning(rediq.ErrCancelled, func(sl *slot) bool {
		return sl.running.j != nil && sl.running.j.id == id && sl.running.j.q == q
	})
}

// checkCancels looks in Redis for cancel requests of the tasks this worker
// runs: the safety net for a "c:ID" wake message missed while the
// subscription was down (after every heartbeat and re-subscription).
func (w *Worker) checkCancels(ctx context.Context) {
	running := map[*queue][]string{}
	for _, a := range w.running() {
		running[a.j.q] = append(running[a.j.q], a.j.id)
	}
	for q, ids := range running {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		asked, err := w.b.CancelRequested(cctx, q.Queue, ids)
		cancel()
		if err != nil {
			w.log.Debug("could not look for cancel requests; the next heartbeat will", zap.String("queue", q.Name), zap.Error(err))
			continue
		}
		for i, id := range ids {
			if asked[i] {
				w.cancelTask(q, id)
			}
		}
	}
}

// cancelRequested reports whether CancelTask asked for id; without any
// request (almost always) it costs an atomic load, not a lock.
func (w *Worker) cancelRequested(id string) bool {
	if w.cancels.n.Load() == 0 {
		return false
	}
	w.cancels.mu.Lock()
	defer w.cancels.mu.Unlock()
	_, ok := w.cancels.ids[id]
	return ok
}

func (w *Worker) forgetCancel(id string) {
	if w.cancels.n.Load() == 0 {
		return
	}
	w.cancels.mu.Lock()
	delete(w.cancels.ids, id)
	w.cancels.n.Store(int32(len(w.cancels.ids)))
	w.cancels.mu.Unlock()
}

// running lists the tasks whose handlers run now (abandoned ones left out).
func (w *Worker) running() []*attempt {
	var out []*attempt
	w.pool.slotMu.Lock()
	for sl := range w.pool.slots {
		sl.mu.Lock()
		if sl.running.j != nil && !sl.abandoned {
			a := sl.running
			env := *a.env // the runner's returns to a pool once the slot is cleared
			a.env = &env
			out = append(out, &a)
		}
		sl.mu.Unlock()
	}
	w.pool.slotMu.Unlock()
	return out
}
