package rediq

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rediq/rediq/internal/broker"
)

// WorkerStat is one worker's share of a batch.
type WorkerStat struct {
	Worker    string
	Executed  int // attempts run (retries count again)
	Failed    int // attempts that failed
	Collected int // table rows added
}

// BatchStat counts a batch's tasks.
type BatchStat struct {
	ID        int64
	Detached  bool
	Enqueued  int
	Started   int // tasks that started at least once
	Succeeded int
	Failed    int // dead
	Cancelled int // cancelled, or stopped with the batch (NeverStarted included)
	// NeverStarted counts the tasks that ended without starting: cancelled
	// while they waited, expired, or left unstarted when the batch stopped
	// (those count here from the stop on, before a worker has dropped them).
	NeverStarted int
	Running      int // started and not ended
	Unstarted    int // enqueued, not started yet, and still able to start (0 once the batch stopped)
	Rows         int // table rows collected
	Stopped      bool
	StopReason   string
	Created      time.Time
	Finished     time.Time // completed, or stopped (zero while it runs)
	Rate         float64   // tasks ended per second since Created
	ETA          time.Duration
	Workers      []WorkerStat
}

// BatchStat reads batch id's counts in one round trip.
func (a *App) BatchStat(ctx context.Context, id int64) (BatchStat, error) {
	s, err := a.core.Broker().ReadBatch(ctx, a.core.Broker().Batch(id))
	if errors.Is(err, broker.ErrNoBatch) {
		return BatchStat{}, fmt.Errorf("%w: %d", ErrBatchNotFound, id)
	}
	if err != nil {
		return BatchStat{}, fmt.Errorf("rediq: %w", err)
	}
	st := BatchStat{ID: id, Detached: s.Detached, Enqueued: int(s.Enqueued), Started: int(s.Started),
		Succeeded: int(s.Succeeded), Failed: int(s.Failed), Cancelled: int(s.Cancelled),
		Rows: int(s.Rows), StopReason: s.StopReason, Created: s.Created}
	st.Stopped = st.StopReason != ""
	st.Finished = s.Completed
	if st.Stopped {
		st.Finished = s.StoppedAt
	}
	// Dropped: ended before they started. Of a stopped batch, no task starts
	// any more: every task that had not started is one, whether or not a
	// worker has fetched it and counted it yet.
	st.NeverStarted = int(s.Dropped)
	if st.Stopped {
		st.NeverStarted = max(st.NeverStarted, st.Enqueued-st.Started)
	}
	st.Running = max(st.Started-st.Succeeded-st.Failed-st.Cancelled, 0)
	st.Unstarted = max(st.Enqueued-st.Started-st.NeverStarted, 0)
	st.Cancelled += st.NeverStarted
	ended := st.Succeeded + st.Failed + st.Cancelled
	end := time.Now()
	if !st.Finished.IsZero() {
		end = st.Finished
	}
	if d := end.Sub(st.Created).Seconds(); d > 0 {
		st.Rate = float64(ended) / d
	}
	if st.Rate > 0 && st.Finished.IsZero() && st.Enqueued > ended {
		st.ETA = time.Duration(float64(st.Enqueued-ended) / st.Rate * float64(time.Second))
	}
	for w, c := range s.Workers {
		st.Workers = append(st.Workers, WorkerStat{Worker: w, Executed: int(c.Executed), Failed: int(c.Failed), Collected: int(c.Collected)})
	}
	sortWorkers(st.Workers)
	return st, nil
}

// ListBatches returns the stats of the n newest batches that still exist.
func (a *App) ListBatches(ctx context.Context, n int) ([]BatchStat, error) {
	ids, err := a.core.Broker().LatestBatches(ctx, n)
	if err != nil {
		return nil, fmt.Errorf("rediq: list batches: %w", err)
	}
	out := make([]BatchStat, 0, len(ids))
	for _, id := range ids {
		st, err := a.BatchStat(ctx, id)
		if errors.Is(err, ErrBatchNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

func sortWorkers(ws []WorkerStat) {
	slices.SortFunc(ws, func(a, b WorkerStat) int { return strings.Compare(a.Worker, b.Worker) })
}

// BatchError is an error some of a batch's dead tasks died with.
type BatchError struct {
	Error string
	Tasks int
	// TaskIDs are the first of those tasks to die (up to ten), for GetTask;
	// empty for a batch whose errors were counted before ids were kept.
	TaskIDs []TaskID
}

// BatchErrors lists the errors batch id's dead tasks died with, each once with
// how many tasks and the ids of the first of them, most frequent first.
func (a *App) BatchErrors(ctx context.Context, id int64) ([]BatchError, error) {
	br := a.core.Broker()
	if _, err := a.BatchStat(ctx, id); err != nil {
		return nil, err
	}
	m, err := br.BatchErrors(ctx, br.Batch(id))
	if err != nil {
		return nil, fmt.Errorf("rediq: batch %d errors: %w", id, err)
	}
	out := make([]BatchError, 0, len(m))
	for e, c := range m {
		ids := make([]TaskID, len(c.IDs))
		for i, id := range c.IDs {
			ids[i] = TaskID(id)
		}
		out = append(out, BatchError{Error: e, Tasks: c.Tasks, TaskIDs: ids})
	}
	slices.SortFunc(out, func(x, y BatchError) int {
		if x.Tasks != y.Tasks {
			return y.Tasks - x.Tasks
		}
		return strings.Compare(x.Error, y.Error)
	})
	return out, nil
}
