package broker

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// QueueStats counts a queue's messages by state.
type QueueStats struct {
	Name      string
	Pending   int64
	Scheduled int64
	Active    int64 // leased to a worker session, live or expired
	Dead      int64
	Workers   int64 // sessions with a lease record on the queue
}

// Stats counts the messages of each queue in two round trips.
func (b *Broker) Stats(ctx context.Context, names []string) ([]QueueStats, error) {
	p := b.rdb.Pipeline()
	type counts struct {
		pending, scheduled, dead *redis.IntCmd
		sessions                 *redis.StringSliceCmd
	}
	cs := make([]counts, len(names))
	for i, n := range names {
		q := b.Queue(n)
		cs[i] = counts{p.ZCard(ctx, q.Pending), p.ZCard(ctx, q.Scheduled), p.ZCard(ctx, q.Dead), p.ZRange(ctx, q.Workers, 0, -1)}
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, fmt.Errorf("queue stats: %w", err)
	}
	out := make([]QueueStats, len(names))
	leases := make([][]*redis.IntCmd, len(names))
	for i, n := range names {
		q := b.Queue(n)
		sessions := cs[i].sessions.Val()
		out[i] = QueueStats{Name: n, Pending: cs[i].pending.Val(), Scheduled: cs[i].scheduled.Val(),
			Dead: cs[i].dead.Val(), Workers: int64(len(sessions))}
		for _, s := range sessions {
			leases[i] = append(leases[i], p.HLen(ctx, q.Lease(s)))
		}
	}
	if p.Len() > 0 {
		if _, err := p.Exec(ctx); err != nil {
			return nil, fmt.Errorf("queue stats: %w", err)
		}
	}
	for i := range names {
		for _, c := range leases[i] {
			out[i].Active += c.Val()
		}
	}
	return out, nil
}
