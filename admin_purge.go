package rediq

import (
	"context"
	"fmt"
	"slices"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
)

// purgePage is how many tasks one purge call deletes: Redis serves others in
// between.
const purgePage = 500

// PurgeQueue deletes the tasks of queue that are in the given states —
// pending (with those taken back from dead workers), scheduled, retry, dead,
// and the retained records of succeeded, cancelled and expired ones — and
// answers how many. Active tasks are never purged (cancel them). Deleted
// tasks end as a deletion does (DeleteTask): their locks are released,
// waiters told, and a batch counts a waiting task as dropped. It works a page
// at a time, so a large queue does not hold Redis; tasks that reach a state
// while it runs may or may not be purged.
func (a *App) PurgeQueue(ctx context.Context, queue string, states ...TaskState) (int, error) {
	if err := CheckQueueName(queue); err != nil {
		return 0, err
	}
	if len(states) == 0 {
		return 0, fmt.Errorf("%w: PurgeQueue: name the states to purge", ErrInvalidOption)
	}
	for _, s := range states {
		if _, err := ParseTaskState(string(s)); err != nil {
			return 0, err
		}
		if s == StateActive {
			return 0, fmt.Errorf("%w: PurgeQueue: active tasks cannot be purged: cancel them", ErrInvalidOption)
		}
	}
	b := a.core.Broker()
	q := b.Queue(queue)
	total := 0
	count := func(ps []broker.Purged, inBatch bool) error {
		total += len(ps)
		if !inBatch {
			return nil
		}
		for _, p := range ps {
			if err := a.endInBatch(ctx, p.Body, TaskID(p.ID)); err != nil {
				return err
			}
		}
		return nil
	}
	if slices.Contains(states, StatePending) {
		for {
			ps, err := b.PurgePending(ctx, q, purgePage)
			if err != nil {
				return total, fmt.Errorf("rediq: %w", err)
			}
			if len(ps) == 0 {
				break
			}
			if err := count(ps, true); err != nil {
				return total, err
			}
		}
	}
	sched, retry := slices.Contains(states, StateScheduled), slices.Contains(states, StateRetry)
	if sched || retry {
		// Scheduled and retry tasks share an index: the record says which.
		_, n, err := b.List(ctx, q, broker.ListScheduled, 0, 0)
		if err != nil {
			return total, fmt.Errorf("rediq: %w", err)
		}
		for kept, seen := 0, 0; seen < n; {
			page, _, err := b.List(ctx, q, broker.ListScheduled, kept, min(purgePage, n-seen))
			if err != nil {
				return total, fmt.Errorf("rediq: %w", err)
			}
			if len(page) == 0 {
				break
			}
			seen += len(page)
			var ids []string
			for _, l := range page {
				var env codec.Envelope
				isRetry := codec.DecodeInto(l.Body, &env) == nil && (env.Retried > 0 || env.Unknown > 0)
				if isRetry && retry || !isRetry && sched {
					ids = append(ids, l.ID)
				} else {
					kept++
				}
			}
			ps, err := b.PurgeIDs(ctx, q, broker.ListScheduled, ids)
			if err != nil {
				return total, fmt.Errorf("rediq: %w", err)
			}
			if err := count(ps, true); err != nil {
				return total, err
			}
		}
	}
	for _, s := range []struct {
		state TaskState
		idx   broker.ListIndex
	}{{StateDead, broker.ListDead}, {StateSucceeded, broker.ListSucceeded},
		{StateCancelled, broker.ListCancelled}, {StateExpired, broker.ListExpired}} {
		if !slices.Contains(states, s.state) {
			continue
		}
		_, n, err := b.List(ctx, q, s.idx, 0, 0)
		if err != nil {
			return total, fmt.Errorf("rediq: %w", err)
		}
		for done := 0; done < n; {
			page, _, err := b.List(ctx, q, s.idx, 0, min(purgePage, n-done))
			if err != nil {
				return total, fmt.Errorf("rediq: %w", err)
			}
			if len(page) == 0 {
				break
			}
			ids := make([]string, len(page))
			for i, l := range page {
				ids[i] = l.ID
			}
			ps, err := b.PurgeIDs(ctx, q, s.idx, ids)
			if err != nil {
				return total, fmt.Errorf("rediq: %w", err)
			}
			done += len(page)
			// A dead task's end was counted when it died; a finished one's when it finished.
			if err := count(ps, false); err != nil {
				return total, err
			}
		}
	}
	return total, nil
}
