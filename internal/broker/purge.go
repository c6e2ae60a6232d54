package broker

import (
	"context"
	"fmt"
)

var purgeScript = load("purge", "lib")

// Purged is a task a purge deleted, with its record ("" for a finished one).
type Purged struct {
	ID   string
	Body []byte
}

// PurgePending deletes up to n waiting tasks of q (recovering first, then
// pending in fetch order) and answers them.
func (b *Broker) PurgePending(ctx context.Context, q *Queue, n int) ([]Purged, error) {
	return b.purge(ctx, q, q.Scheduled, "p", n)
}

// PurgeIDs deletes those of ids that idx (ListScheduled, ListDead, or a
// finished index) still holds, with what they leave, and answers them.
func (b *Broker) PurgeIDs(ctx context.Context, q *Queue, idx ListIndex, ids []string) ([]Purged, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	key, mode := q.Scheduled, "z"
	switch idx {
	case ListScheduled:
	case ListDead:
		key = q.Dead
	case ListSucceeded:
		key, mode = q.Prefix+"succeeded", "f"
	case ListCancelled:
		key, mode = q.Prefix+"cancelled", "f"
	case ListExpired:
		key, mode = q.Prefix+"expired", "f"
	default:
		return nil, fmt.Errorf("purge %q: index %d holds no purgeable tasks", q.Name, idx)
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return b.purge(ctx, q, key, mode, args...)
}

func (b *Broker) purge(ctx context.Context, q *Queue, key, mode string, rest ...any) ([]Purged, error) {
	args := append([]any{q.Prefix, mode}, rest...)
	vals, err := b.run(ctx, purgeScript, []string{q.Pending, q.Recovering, key}, args...).StringSlice()
	if err != nil || len(vals)%2 != 0 {
		return nil, fmt.Errorf("purge %q: %v %w", q.Name, len(vals), err)
	}
	out := make([]Purged, len(vals)/2)
	for i := range out {
		out[i] = Purged{ID: vals[2*i], Body: []byte(vals[2*i+1])}
	}
	return out, nil
}
