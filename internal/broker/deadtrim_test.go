package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/testredis"
)

// A kill that finds the dead set far over its MaxLen (9,000 for 500) settles
// without error, trimming a bounded step (dead ids and their records); kills
// in a row bring the dead set down to the limit. The trim used to hand every
// excess id to Lua's unpack at once, which fails past ~8,000: the settle
// failed after its writes, every time, and the dead set was never trimmed.
func TestDeadTrimOfALargeExcessGoesInSteps(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t) // unpack's limit is real Redis's Lua
	b, q, rdb := setup(t)
	ctx := context.Background()
	const filler, limit = 9000, 500
	since := time.Now().Add(-time.Minute).UnixMilli() // older than the kills, younger than MaxAge
	zs := make([]redis.Z, filler)
	records := make(map[string]any, filler)
	for i := range zs {
		id := fmt.Sprintf("old%05d", i)
		zs[i] = redis.Z{Score: float64(since + int64(i)), Member: id}
		records[id] = "dead-" + id
	}
	if err := rdb.ZAdd(ctx, q.Dead, zs...).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, q.Records, records).Err(); err != nil {
		t.Fatal(err)
	}
	retention := broker.DeadRetention{MaxAge: time.Hour, MaxLen: limit}
	register(t, b, q, "S", time.Minute)
	prev := rdb.ZCard(ctx, q.Dead).Val()
	for kills := 1; prev > limit; kills++ {
		if kills > 20 {
			t.Fatalf("dead set still holds %d after %d kills, limit %d", prev, kills-1, limit)
		}
		id := fmt.Sprint("k", kills)
		enqueue(t, b, q, msg(id, 2048))
		f := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 1, TokenBase: uint64(kills) * 10})
		if len(f.Tasks) != 1 || f.Tasks[0].ID != id {
			t.Fatalf("kill %d: fetched %v, want %s", kills, ids(f.Tasks), id)
		}
		held, err := b.Settle(ctx, retention, []broker.Settlement{{Queue: q, Session: "S", Token: f.Tasks[0].Token, ID: id,
			Outcome: broker.Kill, Body: []byte("dead-" + id)}})
		if err != nil {
			t.Fatalf("kill %d with %d in the dead set (limit %d): %v", kills, prev, limit, err)
		}
		if !held[0] {
			t.Fatalf("kill %d: the lease was not held", kills)
		}
		if err := rdb.ZScore(ctx, q.Dead, id).Err(); err != nil {
			t.Fatalf("kill %d: the killed task is not in the dead set: %v", kills, err)
		}
		n := rdb.ZCard(ctx, q.Dead).Val()
		if n >= prev {
			t.Fatalf("kill %d: dead set holds %d, %d before it: not trimmed", kills, n, prev)
		}
		prev = n
	}
	if prev != limit {
		t.Fatalf("dead set holds %d, want the limit %d", prev, limit)
	}
	// The trimmed ids took their records with them: what is left is the dead set's.
	if n := rdb.HLen(ctx, q.Records).Val(); n != limit {
		t.Fatalf("%d records for %d dead tasks", n, limit)
	}
}
