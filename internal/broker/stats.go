package broker

import (
	"context"
	"fmt"
	"strconv"
	"strings"

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
	Paused    bool  // PauseQueue: its tasks start nowhere until resumed
}

// Stats counts the tasks of each queue, in three or four round trips (the
// counts are not one moment of the queue).
func (b *Broker) Stats(ctx context.Context, names []string) ([]QueueStats, error) {
	p := b.rdb.Pipeline()
	type counts struct {
		recovering, scheduled, dead, workers, legacy, paused *redis.IntCmd
		finished                                             *redis.SliceCmd
	}
	cs := make([]counts, len(names))
	for i, n := range names {
		q := b.Queue(n)
		cs[i] = counts{p.ZCard(ctx, q.Recovering), p.ZCard(ctx, q.Scheduled),
			p.ZCard(ctx, q.Dead), p.ZCard(ctx, q.Workers), p.ZCard(ctx, q.legacyWorkers),
			p.Exists(ctx, q.Paused), p.HMGet(ctx, q.Prefix+"stats", "cancelled", "expired")}
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, fmt.Errorf("queue stats: %w", err)
	}
	qs := make([]*Queue, len(names))
	for i, n := range names {
		qs[i] = b.Queue(n)
	}
	active, err := b.Active(ctx, qs)
	if err != nil {
		return nil, fmt.Errorf("queue stats: %w", err)
	}
	pending, err := b.pendingOf(ctx, qs)
	if err != nil {
		return nil, fmt.Errorf("queue stats: %w", err)
	}
	out := make([]QueueStats, len(names))
	for i, n := range names {
		c := cs[i]
		out[i] = QueueStats{Name: n, Pending: pending[i].total() + c.recovering.Val(), Scheduled: c.scheduled.Val(),
			Dead: c.dead.Val(), Active: int64(len(active[i])), Workers: c.workers.Val() + c.legacy.Val(),
			Paused: c.paused.Val() == 1}
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

// ActiveLease is a task leased to a worker session.
type ActiveLease struct {
	Session string
	ID      string
	Token   uint64
	Started bool // its handler started (else it waits in the worker's prefetch buffer)
}

// Active lists the tasks leased on each queue, in one round trip (active.lua:
// a task is active exactly when a session's lease hash maps its id).
func (b *Broker) Active(ctx context.Context, qs []*Queue) ([][]ActiveLease, error) {
	t := b.newPipeline()
	cmds := make([]*redis.Cmd, len(qs))
	for i, q := range qs {
		cmds[i] = t.script(ctx, activeScript, []string{q.Workers, q.legacyWorkers}, q.lease)
	}
	if err := t.exec(ctx); err != nil {
		return nil, fmt.Errorf("active tasks: %w", err)
	}
	out := make([][]ActiveLease, len(qs))
	for i, c := range cmds {
		vals, err := c.StringSlice()
		if err != nil || len(vals)%3 != 0 {
			return nil, fmt.Errorf("active tasks on %q: unexpected reply %v (%v)", qs[i].Name, vals, err)
		}
		for k := 0; k < len(vals); k += 3 {
			tok, started, ok := parseLease(vals[k+2])
			if ok {
				out[i] = append(out[i], ActiveLease{Session: vals[k], ID: vals[k+1], Token: tok, Started: started})
			}
		}
	}
	return out, nil
}

// parseLease reads a lease value FLAG:TOKEN:SCORE.
func parseLease(v string) (token uint64, started, ok bool) {
	if len(v) < 5 || v[1] != ':' {
		return 0, false, false
	}
	end := strings.IndexByte(v[2:], ':')
	if end < 0 {
		return 0, false, false
	}
	tok, err := strconv.ParseUint(v[2:2+end], 10, 64)
	if err != nil {
		return 0, false, false
	}
	return tok, v[0] == 's' || v[0] == 'S', true // S: started, holding a concurrency slot
}
