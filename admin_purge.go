package rediq

import (
	"context"
	"fmt"
	"slices"
	"strconv"

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
		// Bounded by what waited at the start: producers adding as fast as
		// this deletes do not keep it going.
		st, err := b.Stats(ctx, []string{queue})
		if err != nil {
			return total, fmt.Errorf("rediq: %w", err)
		}
		for left := st[0].Pending; left > 0; {
			ps, err := b.PurgePending(ctx, q, min(purgePage, int(left)))
			if err != nil {
				return total, fmt.Errorf("rediq: %w", err)
			}
			if len(ps) == 0 {
				break
			}
			left -= int64(len(ps))
			if err := count(ps, true); err != nil {
				return total, err
			}
		}
	}
	sched, retry := slices.Contains(states, StateScheduled), slices.Contains(states, StateRetry)
	if sched || retry {
		// Scheduled and retry tasks share an index: the record says which.
		err := purgeIndex(ctx, b, q, broker.ListScheduled, func(l broker.Listed) bool {
			var env codec.Envelope
			isRetry := codec.DecodeInto(l.Body, &env) == nil && (env.Retried > 0 || env.Unknown > 0)
			return isRetry && retry || !isRetry && sched
		}, func(ps []broker.Purged) error { return count(ps, true) })
		if err != nil {
			return total, err
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
		// A dead task's end was counted when it died; a finished one's when it finished.
		err := purgeIndex(ctx, b, q, s.idx, nil, func(ps []broker.Purged) error { return count(ps, false) })
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// purgeIndex deletes the entries of a zset index that were in it when it
// began and that del accepts (nil: all), a page at a time in ascending order
// of score. It pages by score, not by offset, so entries that leave or arrive
// meanwhile neither hide others nor keep it going: it stops at the highest
// score the index held at the start. Entries sharing one score are read
// together, however many.
func purgeIndex(ctx context.Context, b *broker.Broker, q *broker.Queue, idx broker.ListIndex,
	del func(broker.Listed) bool, purged func([]broker.Purged) error) error {
	end, ok, err := b.LastScore(ctx, q, idx)
	if !ok || err != nil {
		return err
	}
	top := strconv.FormatFloat(end, 'f', -1, 64)
	from := "-inf"
	for {
		page, err := b.ListByScore(ctx, q, idx, from, top, purgePage)
		if err != nil {
			return fmt.Errorf("rediq: %w", err)
		}
		if len(page) == 0 {
			return nil
		}
		at := page[len(page)-1].Score
		if len(page) == purgePage {
			// More may share the page's last score: take them all at once
			// (the next page starts after it).
			cut := len(page)
			for cut > 0 && page[cut-1].Score == at {
				cut--
			}
			s := strconv.FormatFloat(at, 'f', -1, 64)
			ties, err := b.ListByScore(ctx, q, idx, s, s, 0)
			if err != nil {
				return fmt.Errorf("rediq: %w", err)
			}
			page = append(page[:cut], ties...)
		}
		for len(page) > 0 {
			n := min(len(page), purgePage)
			var ls []broker.Listed
			for _, l := range page[:n] {
				if del == nil || del(l) {
					ls = append(ls, l)
				}
			}
			page = page[n:]
			ps, err := b.PurgeListed(ctx, q, idx, ls)
			if err != nil {
				return fmt.Errorf("rediq: %w", err)
			}
			if err := purged(ps); err != nil {
				return err
			}
		}
		from = "(" + strconv.FormatFloat(at, 'f', -1, 64)
	}
}
