package broker

import (
	"context"
	"fmt"
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
	return b.getEach(ctx, qs, func(q *Queue) string { return q.Window })
}
