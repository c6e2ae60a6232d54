package broker

import (
	"context"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// DeleteNamespace unlinks every key of the namespace, on every master of a
// Cluster, and returns how many it unlinked. Keys are unlinked one per
// command, pipelined: on a Cluster, keys of one node span slots.
func (b *Broker) DeleteNamespace(ctx context.Context) (int, error) {
	var total atomic.Int64 // masters are walked concurrently
	del := func(ctx context.Context, c redis.Cmdable) error {
		it := c.Scan(ctx, 0, b.ns+":*", 1000).Iterator()
		var keys []string
		flush := func() error {
			if len(keys) == 0 {
				return nil
			}
			p := c.Pipeline()
			for _, k := range keys {
				p.Unlink(ctx, k)
			}
			_, err := p.Exec(ctx)
			total.Add(int64(len(keys)))
			keys = keys[:0]
			return err
		}
		for it.Next(ctx) {
			if keys = append(keys, it.Val()); len(keys) == 500 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := it.Err(); err != nil {
			return err
		}
		return flush()
	}
	if c, ok := b.rdb.(*redis.ClusterClient); ok {
		err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return del(ctx, m) })
		return int(total.Load()), err
	}
	err := del(ctx, b.rdb)
	return int(total.Load()), err
}
