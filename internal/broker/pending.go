package broker

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// pendingParts is how a queue's pending tasks are held when read: the zset of
// protocol version 2's producers (taken first), then one list per priority
// lane, in the order fetch reads them (the fetchable lanes, then those
// blocked by a limit).
type pendingParts struct {
	legacy int64
	slots  []string
	lens   []int64
}

func (p pendingParts) total() int64 {
	n := p.legacy
	for _, l := range p.lens {
		n += l
	}
	return n
}

// pendingOf reads the parts of each queue's pending in two round trips: the
// slots, then their lists' lengths.
func (b *Broker) pendingOf(ctx context.Context, qs []*Queue) ([]pendingParts, error) {
	p := b.rdb.Pipeline()
	slots := make([]*redis.StringSliceCmd, len(qs))
	legacy := make([]*redis.IntCmd, len(qs))
	blocked := make([]*redis.StringSliceCmd, len(qs))
	lanes := make([]*redis.StringSliceCmd, len(qs))
	for i, q := range qs {
		slots[i] = p.ZRange(ctx, q.PendingSlots, 0, -1)
		lanes[i] = p.ZRange(ctx, q.PendingLanes, 0, -1)
		blocked[i] = p.ZRange(ctx, q.PendingBlocked, 0, -1)
		legacy[i] = p.ZCard(ctx, q.Pending)
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read pending: %w", err)
	}
	out := make([]pendingParts, len(qs))
	lens := make([][]*redis.IntCmd, len(qs))
	some := false
	for i, q := range qs {
		out[i] = pendingParts{legacy: legacy[i].Val()}
		// A list listed in two indexes (version 3's slot and version 4's
		// lane of no flow share their list) is counted once.
		seen := map[string]bool{}
		for _, s := range append(append(slots[i].Val(), lanes[i].Val()...), blocked[i].Val()...) {
			if !seen[s] {
				seen[s] = true
				out[i].slots = append(out[i].slots, s)
			}
		}
		for _, s := range out[i].slots {
			lens[i] = append(lens[i], p.LLen(ctx, q.PendingList(s)))
			some = true
		}
	}
	if some {
		if _, err := p.Exec(ctx); err != nil {
			return nil, fmt.Errorf("read pending: %w", err)
		}
	}
	for i := range qs {
		for _, c := range lens[i] {
			out[i].lens = append(out[i].lens, c.Val())
		}
	}
	return out, nil
}

// listPending reads the page [offset, offset+limit) of what waits in pending
// after the recovering tasks, in the order fetch takes it; each list entry's
// score is its slot·2^41, as a version-2 entry's would be without its sequence.
func (b *Broker) listPending(ctx context.Context, q *Queue, parts pendingParts, offset, limit int) ([]redisZ, error) {
	var out []redisZ
	if offset < int(parts.legacy) {
		zs, err := b.zrange(ctx, q.Pending, offset, min(offset+limit, int(parts.legacy))-1, false)
		if err != nil {
			return nil, err
		}
		out = append(out, zs...)
	}
	offset -= int(parts.legacy)
	for i, s := range parts.slots {
		n := int(parts.lens[i])
		if rest := limit - len(out); rest > 0 && offset < n {
			from := max(offset, 0)
			ids, err := b.rdb.LRange(ctx, q.PendingList(s), int64(from), int64(from+rest-1)).Result()
			if err != nil {
				return nil, fmt.Errorf("read pending of slot %s: %w", s, err)
			}
			slot, _ := strconv.Atoi(strings.SplitN(s, "|", 2)[0])
			for _, id := range ids {
				out = append(out, redisZ{id, float64(slot) * (1 << 41)})
			}
		}
		offset -= n
	}
	return out, nil
}

// PendingIDs lists the ids waiting in q's pending (not recovering), in the
// order fetch takes them.
func (b *Broker) PendingIDs(ctx context.Context, q *Queue) ([]string, error) {
	parts, err := b.pendingOf(ctx, []*Queue{q})
	if err != nil {
		return nil, err
	}
	zs, err := b.listPending(ctx, q, parts[0], 0, int(parts[0].total()))
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(zs))
	for i, z := range zs {
		ids[i] = z.member
	}
	return ids, nil
}
