package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ErrNotFound means no queue of the namespace holds a task with the id.
var ErrNotFound = errors.New("task not found")

// State is where a task's id is indexed.
type State string

const (
	StatePending   State = "pending"   // in pending or recovering
	StateScheduled State = "scheduled" // in scheduled: delayed, or waiting to be retried (Retried > 0)
	StateActive    State = "active"    // leased to a worker session
	StateDead      State = "dead"
	StateOrphan    State = "orphan" // a record in no index: only mid-script, or after a script failed half-way
)

// Record is a task's record and where it is.
type Record struct {
	Queue     string
	State     State
	Body      []byte // the message
	Session   string // StateActive: the worker session holding the lease
	Recovered int
}

// Find looks a task up by id in the given queues (all queues of the namespace
// when nil), in one round trip of O(1) and O(log N) commands per queue.
func (b *Broker) Find(ctx context.Context, id string, queues []string) (*Record, error) {
	if queues == nil {
		var err error
		if queues, err = b.Queues(ctx); err != nil {
			return nil, err
		}
	}
	type probe struct {
		rec, active, recovered               *redis.StringCmd
		pending, recovering, scheduled, dead *redis.FloatCmd
	}
	p := b.rdb.Pipeline()
	ps := make([]probe, len(queues))
	for i, n := range queues {
		q := b.Queue(n)
		ps[i] = probe{rec: p.HGet(ctx, q.Records, id), active: p.HGet(ctx, q.Active, id), recovered: p.HGet(ctx, q.Recovered, id),
			pending: p.ZScore(ctx, q.Pending, id), recovering: p.ZScore(ctx, q.Recovering, id),
			scheduled: p.ZScore(ctx, q.Scheduled, id), dead: p.ZScore(ctx, q.Dead, id)}
	}
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("find task %q: %w", id, err)
	}
	for i, pr := range ps {
		body, err := pr.rec.Bytes()
		if err != nil {
			continue
		}
		r := &Record{Queue: queues[i], Body: body, State: StateOrphan}
		r.Recovered, _ = pr.recovered.Int()
		switch {
		case pr.active.Err() == nil:
			r.State = StateActive
			if i := strings.LastIndexByte(pr.active.Val(), ':'); i >= 0 {
				r.Session = pr.active.Val()[:i]
			}
		case pr.pending.Err() == nil || pr.recovering.Err() == nil:
			r.State = StatePending
		case pr.scheduled.Err() == nil:
			r.State = StateScheduled
		case pr.dead.Err() == nil:
			r.State = StateDead
		}
		return r, nil
	}
	return nil, ErrNotFound
}

// Exists reports which of the given queues hold a record with the id.
func (b *Broker) Exists(ctx context.Context, id string, queues []string) (string, error) {
	if len(queues) == 0 {
		return "", nil
	}
	p := b.rdb.Pipeline()
	cmds := make([]*redis.BoolCmd, len(queues))
	for i, n := range queues {
		cmds[i] = p.HExists(ctx, b.Queue(n).Records, id)
	}
	if _, err := p.Exec(ctx); err != nil {
		return "", err
	}
	for i, c := range cmds {
		if c.Val() {
			return queues[i], nil
		}
	}
	return "", nil
}

// Holder returns the queue, other than except, whose records hold id ("" if
// none), bounded by ctx like Enqueue.
func (b *Broker) Holder(ctx context.Context, id, except string) (string, error) {
	var in string
	_, err := b.await(ctx, func(sctx context.Context) error {
		names, err := b.Queues(sctx)
		if err != nil {
			return err
		}
		others := names[:0]
		for _, n := range names {
			if n != except {
				others = append(others, n)
			}
		}
		in, err = b.Exists(sctx, id, others)
		return err
	})
	return in, err
}
