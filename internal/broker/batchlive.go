package broker

import (
	"context"
	"fmt"
)

// BatchLiveness is what a worker needs to know before it runs a batch's
// task: whether the batch was stopped, and whether a producer still holds it.
type BatchLiveness struct {
	StopReason string // why the batch was stopped; "" while it runs
	Detached   bool   // created Detached: its producer sends no keep-alives
	Alive      bool   // its producer's keep-alive key is there
}

// Abandoned reports whether a keep-alive batch lost its producer: it runs,
// it is not detached, and its keep-alive lapsed.
func (l BatchLiveness) Abandoned() bool { return l.StopReason == "" && !l.Detached && !l.Alive }

// BatchLiveness reads batch k's stop reason and keep-alive in one round trip.
func (b *Broker) BatchLiveness(ctx context.Context, k *BatchKeys) (BatchLiveness, error) {
	p := b.rdb.Pipeline()
	info := p.HMGet(ctx, k.Info, "stopped", "detached")
	alive := p.Exists(ctx, k.Alive)
	if _, err := p.Exec(ctx); err != nil {
		return BatchLiveness{}, fmt.Errorf("batch %d: %w", k.ID, err)
	}
	vals := info.Val()
	reason, _ := vals[0].(string)
	detached, _ := vals[1].(string)
	return BatchLiveness{StopReason: reason, Detached: detached != "0", Alive: alive.Val() == 1}, nil
}
