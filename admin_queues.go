package rediq

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/core"
)

// QueueStats counts one queue's tasks by state, as Redis holds them at the
// moment of the call (a few round trips for all the queues asked for).
type QueueStats struct {
	Name string
	// Pending tasks are due and wait for a worker, including tasks taken back
	// from a worker that died while running them.
	Pending int64
	// Scheduled tasks are due later: enqueued with a delay, or waiting out a
	// retry's backoff.
	Scheduled int64
	// Active tasks are leased to a worker session (running, prefetched, or
	// held by a session whose lease has run out and is about to be reclaimed).
	Active int64
	// Dead tasks ran out of retries, or were poison; RequeueDead gives them
	// back to the queue.
	Dead int64
	// Workers is how many worker sessions are registered on the queue.
	Workers int64
	// Cancelled and Expired count the queue's tasks that ever ended so
	// (CancelTask; ExpireIn/ExpireAt passed before they ran), whether or not
	// their records are retained. They only grow.
	Cancelled int64
	Expired   int64
	// Paused: PauseQueue paused the queue; its tasks start on no worker until
	// ResumeQueue.
	Paused bool
}

// Queues lists the namespace's queues, sorted: every queue a producer has
// enqueued to or a worker has served.
func (a *App) Queues(ctx context.Context) ([]string, error) {
	names, err := a.core.Broker().Queues(ctx)
	if err != nil {
		return nil, fmt.Errorf("rediq: %w", err)
	}
	slices.Sort(names)
	return names, nil
}

// QueueStats counts the tasks of the named queues by state, or of every
// queue of the namespace (sorted by name) when none is named.
func (a *App) QueueStats(ctx context.Context, queues ...string) ([]QueueStats, error) {
	if len(queues) == 0 {
		var err error
		if queues, err = a.Queues(ctx); err != nil {
			return nil, err
		}
	}
	for _, q := range queues {
		if err := CheckQueueName(q); err != nil {
			return nil, err
		}
	}
	stats, err := a.core.Broker().Stats(ctx, queues)
	if err != nil {
		return nil, fmt.Errorf("rediq: %w", err)
	}
	out := make([]QueueStats, len(stats))
	for i, s := range stats {
		out[i] = QueueStats{Name: s.Name, Pending: s.Pending, Scheduled: s.Scheduled, Active: s.Active,
			Dead: s.Dead, Workers: s.Workers, Cancelled: s.Cancelled, Expired: s.Expired, Paused: s.Paused}
	}
	return out, nil
}

// BatchOutput yields batch id's output lines retained now, from the first,
// and ends: unlike BatchLines it does not wait for lines to come.
func (a *App) BatchOutput(ctx context.Context, id int64) iter.Seq2[OutputLine, error] {
	return func(yield func(OutputLine, error) bool) {
		br := a.core.Broker()
		k := br.Batch(id)
		if ok, err := br.BatchExists(ctx, k); err != nil || !ok {
			if err == nil {
				err = fmt.Errorf("%w: %d", ErrBatchNotFound, id)
			}
			yield(OutputLine{}, err)
			return
		}
		r := br.OutputReader(k)
		newest, err := r.Newest(ctx)
		if err != nil || newest == "" {
			if err != nil {
				yield(OutputLine{}, fmt.Errorf("rediq: batch %d output: %w", id, err))
			}
			return
		}
		for {
			ls, err := r.Read(ctx, 0)
			if err != nil {
				yield(OutputLine{}, fmt.Errorf("rediq: batch %d output: %w", id, err))
				return
			}
			if len(ls) == 0 {
				return // trimmed meanwhile
			}
			for _, l := range ls {
				if l.Kind == broker.OutEnd {
					return
				}
				if !yield(outputLine(id, l), nil) || l.ID == newest {
					return
				}
			}
		}
	}
}

// DeleteNamespace deletes every key of the App's namespace — every queue,
// task, record, batch and setting — and returns how many it deleted. It is
// for tests, benchmarks and teardown: tasks enqueued or run meanwhile may
// leave keys behind, and workers still serving the namespace lose their
// leases.
func (a *App) DeleteNamespace(ctx context.Context) (int, error) {
	n, err := a.core.Broker().DeleteNamespace(ctx)
	if err != nil {
		return n, fmt.Errorf("rediq: delete namespace %q: %w", a.Namespace(), err)
	}
	return n, nil
}

// CheckQueueName reports why name cannot be a queue's name, if it cannot.
func CheckQueueName(name string) error {
	if err := broker.ValidateQueueName(name); err != nil {
		return fmt.Errorf("rediq: %w", err)
	}
	return nil
}

// CheckNamespace reports why ns cannot be a key namespace, if it cannot.
func CheckNamespace(ns string) error {
	if err := broker.ValidateNamespace(ns); err != nil {
		return fmt.Errorf("rediq: %w", err)
	}
	return nil
}

// RedisURLError is a Redis URL rediq cannot use (New, CheckRedisURL). Its
// message never quotes the URL, which may hold a password.
type RedisURLError struct {
	Err error // what is wrong with it
}

func (e *RedisURLError) Error() string { return "rediq: redis URL: " + e.Err.Error() }
func (e *RedisURLError) Unwrap() error { return e.Err }

// CheckRedisURL reports why url is not a Redis URL rediq can use
// (Config.RedisURL's forms), if it is not. It connects to nothing, and its
// error never quotes the URL (which may hold a password).
func CheckRedisURL(url string) error {
	rdb, err := core.Dial(url, core.TLSFiles{})
	if ue := (*core.URLError)(nil); errors.As(err, &ue) {
		return &RedisURLError{Err: ue.Err}
	}
	if err != nil {
		return err
	}
	return rdb.Close() // never dialed
}

// WaitReplicas is how many replicas confirm each of the App's enqueues
// (Config.WaitReplicas or $REDIQ_WAIT_REPLICAS); 0 when none do.
func (a *App) WaitReplicas() int { return a.core.Broker().Replication().Replicas }
