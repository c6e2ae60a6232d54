package broker

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// QueueStats counts a queue's tasks by state.
type QueueStats struct {
	Name      string
	Pending   int64 // includes recovering tasks
	Scheduled int64 // due later, or waiting to be retried
	Active    int64 // leased to a worker session, live or expired
	Dead      int64
	Workers   int64 // sessions registered on the queue
	Cancelled int64 // counted when cancelled, whether kept or not
	Expired   int64 // counted when they expired instead of running
}

// Stats counts the tasks of each queue in one round trip.
func (b *Broker) Stats(ctx context.Context, names []string) ([]QueueStats, error) {
	p := b.rdb.Pipeline()
	type counts struct {
		pending, recovering, scheduled, dead, active, workers *redis.IntCmd
		finished                                              *redis.SliceCmd
	}
	cs := make([]counts, len(names))
	for i, n := range names {
		q := b.Queue(n)
		cs[i] = counts{p.ZCard(ctx, q.Pending), p.ZCard(ctx, q.Recovering), p.ZCard(ctx, q.Scheduled),
			p.ZCard(ctx, q.Dead), p.HLen(ctx, q.Active), p.ZCard(ctx, q.Workers),
			p.HMGet(ctx, q.Prefix+"stats", "cancelled", "expired")}
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, fmt.Errorf("queue stats: %w", err)
	}
	out := make([]QueueStats, len(names))
	for i, n := range names {
		c := cs[i]
		out[i] = QueueStats{Name: n, Pending: c.pending.Val() + c.recovering.Val(), Scheduled: c.scheduled.Val(),
			Dead: c.dead.Val(), Active: c.active.Val(), Workers: c.workers.Val()}
		if v := c.finished.Val(); len(v) == 2 {
			out[i].Cancelled, out[i].Expired = count(v[0]), count(v[1])
		}
	}
	return out, nil
}

// count reads a counter from an HMGET reply (nil: 0).
func count(v any) int64 {
	s, _ := v.(string)
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}
