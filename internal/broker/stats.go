package broker

import (
	"context"
	"fmt"

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
}

// Stats counts the tasks of each queue in one round trip.
func (b *Broker) Stats(ctx context.Context, names []string) ([]QueueStats, error) {
	p := b.rdb.Pipeline()
	type counts struct{ pending, recovering, scheduled, dead, active, workers *redis.IntCmd }
	cs := make([]counts, len(names))
	for i, n := range names {
		q := b.Queue(n)
		cs[i] = counts{p.ZCard(ctx, q.Pending), p.ZCard(ctx, q.Recovering), p.ZCard(ctx, q.Scheduled),
			p.ZCard(ctx, q.Dead), p.HLen(ctx, q.Active), p.ZCard(ctx, q.Workers)}
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, fmt.Errorf("queue stats: %w", err)
	}
	out := make([]QueueStats, len(names))
	for i, n := range names {
		c := cs[i]
		out[i] = QueueStats{Name: n, Pending: c.pending.Val() + c.recovering.Val(), Scheduled: c.scheduled.Val(),
			Dead: c.dead.Val(), Active: c.active.Val(), Workers: c.workers.Val()}
	}
	return out, nil
}
