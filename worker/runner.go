package worker

import (
	"sync"
	"time"

	"github.com/rediq/rediq/internal/broker"
)

// job is one leased task.
type job struct {
	q         *queue
	gen       *generation
	token     uint64
	id        string
	raw       []byte
	recovered int
	expireAt  time.Time // by the worker's clock, its ExpireIn/ExpireAt deadline; zero: none
	started   bool      // marked started in Redis
	outcome   bool      // its outcome is queued in the settler (guarded by the settler's mu)
	gated     bool      // past its queue's start gate, its handler not yet called (pause.go)
	freed     sync.Once // its prefetch slot was freed
	// run is its attempt (process): a job is processed once at most, and
	// its attempt comes with it, one allocation per task instead of two.
	run run
}

// startRunner adds a runner goroutine with a slot of its own.
func (w *Worker) startRunner() {
	sl := &slot{}
	w.pool.slotMu.Lock()
	w.pool.slots[sl] = struct{}{}
	w.pool.slotMu.Unlock()
	w.pool.runners.Add(1)
	go w.runner(sl)
}

func (w *Worker) runner(sl *slot) {
	defer sl.stopTimer() // it outlives the attempts it timed
	for j := range w.prefetch.jobs {
		switch {
		case w.aborted():
			w.setAside(j)
			continue
		case !w.mayStart(j):
			w.entered(j)
			continue
		}
		w.pool.active.Add(1)
		w.process(sl, j)
		w.entered(j) // if it never reached its handler
		sl.mu.Lock()
		gone := sl.abandoned
		sl.mu.Unlock()
		if gone { // the watchdog replaced this runner and counted it out
			return
		}
		w.pool.active.Add(-1)
	}
	w.pool.runners.Done()
}

// mayStart holds j until the worker's lease is valid and j is marked started in
// Redis; it reports false (having dealt with j) if j must not run here.
func (w *Worker) mayStart(j *job) bool {
	for {
		if j.gen.lost.Load() { // the lease was lost: the task runs elsewhere
			w.release(j)
			return false
		}
		if w.lease.valid() {
			break
		}
		// Fenced: the lease may be gone. Wait for a renewal, a loss or a stop.
		select {
		case <-w.lease.changed():
		case <-j.gen.lostCh:
		case <-w.pool.abort:
			w.setAside(j)
			return false
		}
	}
	if !j.started && j.recovered > 0 {
		// A recovered task may be the one that kills workers: its mark lands
		// before it starts, so that its count is exact.
		held, ok := w.settler.mark(j, w.pool.abort)
		switch {
		case !ok: // stopping before the mark went through: give it back
			w.setAside(j)
			return false
		case !held:
			w.release(j)
			return false
		}
		j.started = true
	}
	// Past the gate, nothing waits on Redis before the handler is called: a
	// pause waits for the runners between the two.
	if !w.passGate(j) {
		return false
	}
	if !j.started {
		// Marked without waiting: a round trip per start would cap a worker
		// at concurrency/RTT tasks a second. The local lease clock, checked
		// above, keeps a worker from starting what it may no longer hold; a
		// task that kills its worker before the mark lands is caught by
		// reclaim's orphan count.
		j.started = true
		w.settler.add(j, w.settlement(j, broker.Start))
	}
	return true
}

// free frees j's prefetch slot, once, and tells the fetcher: its runner is
// done with it (its outcome is queued for Redis, or it was dropped).
func (w *Worker) free(j *job) {
	j.freed.Do(func() {
		if j.recovered > 0 { // the next recovered task may come now
			w.prefetch.recovering.Add(-1)
			j.q.ready.Store(true)
		}
		w.prefetch.held.Add(-1)
		w.wake()
	})
}

// forget drops j's lease from those the session holds in Redis (for
// reconciliation): its outcome reached Redis, or its lease was lost.
func (w *Worker) forget(j *job) {
	j.q.heldMu.Lock()
	delete(j.q.held, leaseKey{j.id, j.token})
	j.q.heldMu.Unlock()
}

// release drops j: no outcome will be sent for it.
func (w *Worker) release(j *job) {
	w.free(j)
	w.forget(j)
}

func (w *Worker) wake() {
	select {
	case w.prefetch.kick <- struct{}{}:
	default:
	}
}
