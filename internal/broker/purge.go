package broker

import (
	"context"
	"fmt"
	"strconv"
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

// PurgeListed deletes those of ls (listed from idx by ListByScore: scheduled,
// dead, or a finished index) that idx still holds at the score listed, with
// what they leave, and answers them. A task that moved meanwhile stays.
func (b *Broker) PurgeListed(ctx context.Context, q *Queue, idx ListIndex, ls []Listed) ([]Purged, error) {
	if len(ls) == 0 {
		return nil, nil
	}
	key, ok := q.indexKey(idx)
	if !ok {
		return nil, fmt.Errorf("purge %q: index %d holds no purgeable tasks", q.Name, idx)
	}
	mode := "z"
	if idx >= ListSucceeded {
		mode = "f"
	}
	args := make([]any, 0, 2*len(ls))
	for _, l := range ls {
		args = append(args, l.ID, strconv.FormatFloat(l.Score, 'f', -1, 64))
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
