package broker

import (
	"context"
	"errors"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Swept is what SweepBatches did.
type Swept struct {
	Stopped int // keep-alive batches stopped: their producer went away
	// Batches that completed in the sweep (detached ones whose producer went
	// away after their last task ended), and completed ones whose OnComplete
	// is still pending: the caller enqueues their OnComplete.
	OnComplete []*BatchKeys
}

// SweepBatches looks at the newest n batches for ends nobody else would
// notice. A keep-alive batch whose producer's keep-alive has lapsed and that
// has not ended is stopped (every task had ended, or none was fetched, so no
// worker would). A detached batch whose producer's keep-alive has lapsed is
// completed if every task of it has ended (its last end was counted while
// the producer still held it). Completed batches whose OnComplete is pending
// are returned for it to be enqueued.
func (b *Broker) SweepBatches(ctx context.Context, n int) (Swept, error) {
	var sw Swept
	ids, err := b.rdb.ZRevRange(ctx, b.batchIndex(), 0, int64(n)-1).Result()
	if err != nil || len(ids) == 0 {
		return sw, err
	}
	p := b.rdb.Pipeline()
	type probe struct {
		k              *BatchKeys
		info           *redis.SliceCmd
		alive          *redis.IntCmd
		ended, members *redis.IntCmd
	}
	ps := make([]probe, len(ids))
	for i, s := range ids {
		id, _ := strconv.ParseInt(s, 10, 64)
		k := b.Batch(id)
		// ended and members: a detached batch is worth a script call only
		// when all its tasks have ended.
		ps[i] = probe{k, p.HMGet(ctx, k.Info, "detached", "completed", "stopped", "oncomplete_pending"), p.Exists(ctx, k.Alive),
			p.SCard(ctx, k.Ended), p.SCard(ctx, k.Members)}
	}
	if _, err := p.Exec(ctx); err != nil {
		return sw, err
	}
	var errs []error
	for _, pr := range ps {
		v := pr.info.Val()
		if len(v) != 4 || v[0] == nil {
			continue // gone
		}
		switch {
		case v[1] != nil && v[3] != nil: // completed, OnComplete pending
			sw.OnComplete = append(sw.OnComplete, pr.k)
		case v[1] != nil || v[2] != nil || pr.alive.Val() == 1: // ended, or held by its producer
		case v[0] == "1":
			if pr.ended.Val() < pr.members.Val() {
				continue // tasks still to end: the last one's note completes it
			}
			done, err := b.CompleteBatch(ctx, pr.k)
			if err != nil {
				errs = append(errs, err) // the other batches are swept still
				continue
			}
			if done {
				sw.OnComplete = append(sw.OnComplete, pr.k)
			}
		default:
			ok, err := b.StopBatch(ctx, pr.k, "its producer stopped sending keep-alives")
			if err != nil && !errors.Is(err, ErrNoBatch) {
				errs = append(errs, err)
				continue
			}
			if ok {
				sw.Stopped++
			}
		}
	}
	return sw, errors.Join(errs...)
}
