package broker

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// SetWindow sets q's run window (spec, already checked; "" clears it) and
// tells q's workers on its wake channel ("W:SPEC"); a worker that misses the
// message reads the window in its next heartbeat's reply.
func (b *Broker) SetWindow(ctx context.Context, q *Queue, spec string) error {
	p := b.rdb.Pipeline()
	if spec == "" {
		p.Del(ctx, q.Window)
	} else {
		p.Set(ctx, q.Window, spec, 0)
	}
	p.Publish(ctx, q.Channel, "W:"+spec)
	if _, err := p.Exec(ctx); err != nil {
		return fmt.Errorf("set the window of %q: %w", q.Name, err)
	}
	return nil
}

// Windows answers each queue's run window ("" none).
func (b *Broker) Windows(ctx context.Context, qs []*Queue) ([]string, error) {
	p := b.rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(qs))
	for i, q := range qs {
		cmds[i] = p.Get(ctx, q.Window)
	}
	if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read windows: %w", err)
	}
	out := make([]string, len(qs))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}
