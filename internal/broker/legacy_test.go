package broker_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq/internal/broker"
)

// A worker of the previous lease format (token -> FLAG:SLOT:ID, the active
// hash, sessions in NS:{Q}:workers) that dies during a deploy leaves its
// leases to workers of this version: they see it expire, count its tasks as
// active meanwhile, and take them back — nothing it held is lost. Workers of
// this version register in NS:{Q}:sessions, where the old ones never look.
func TestLeasesOfThePreviousFormatAreTakenBack(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	enqueue(t, b, q, msg("order-7", 2048), msg("12345", 2048))
	// The old session "old/1" holds both: order-7 started (token 11), 12345
	// prefetched (token 12); its deadline has passed.
	if err := rdb.Del(ctx, q.PendingList("2048"), q.PendingSlots, q.PendingLanes).Err(); err != nil {
		t.Fatal(err)
	}
	past := float64(time.Now().Add(-time.Minute).UnixMilli())
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(rdb.ZAdd(ctx, q.Prefix+"workers", redis.Z{Score: past, Member: "old/1"}).Err())
	must(rdb.HSet(ctx, q.Lease("old/1"), "11", "s:2048:order-7", "12", "p:2048:12345").Err())
	must(rdb.HSet(ctx, q.Prefix+"active", "order-7", "old/1:11", "12345", "old/1:12").Err())

	if err := b.Delete(ctx, q, "order-7"); !errors.Is(err, broker.ErrActive) {
		t.Fatalf("delete of a task an old session holds = %v, want ErrActive", err)
	}
	if st, err := b.Stats(ctx, []string{q.Name}); err != nil || st[0].Active != 2 || st[0].Workers != 1 {
		t.Fatalf("stats = %+v, %v; want 2 active, 1 worker", st, err)
	}
	if r, err := b.Find(ctx, "12345", []string{q.Name}); err != nil || r.State != broker.StateActive || r.Session != "old/1" {
		t.Fatalf("find = %+v, %v", r, err)
	}

	beats, err := b.Heartbeat(ctx, "new/1", time.Minute, true, []*broker.Queue{q})
	if err != nil || !slices.Contains(beats[0].Expired, "old/1") {
		t.Fatalf("heartbeat = %+v, %v; want old/1 reported expired", beats, err)
	}
	if rdb.ZScore(ctx, q.Prefix+"workers", "new/1").Err() != redis.Nil {
		t.Fatal("a session of this version registered where old workers look")
	}
	prefetched, started, ok, err := b.Reclaim(ctx, q, "old/1")
	if err != nil || !ok || prefetched != 1 || started != 1 {
		t.Fatalf("reclaim = %d prefetched, %d started, %v, %v", prefetched, started, ok, err)
	}
	if p := pendingIDs(t, b, q); !slices.Equal(p, []string{"12345"}) {
		t.Fatalf("pending %v, want the prefetched task back", p)
	}
	if r := rdb.ZRange(ctx, q.Recovering, 0, -1).Val(); !slices.Equal(r, []string{"order-7"}) {
		t.Fatalf("recovering %v, want the started task", r)
	}
	if n := rdb.Exists(ctx, q.Lease("old/1"), q.Prefix+"active", q.Prefix+"workers").Val(); n != 0 {
		t.Fatalf("%d keys of the old session remain", n)
	}
	// And the new worker runs them.
	got := fetch(t, b, "new/1", time.Minute, broker.FetchRequest{Queue: q, N: 10, TokenBase: 100, Recovering: true, StartNow: 10})
	if !slices.Equal(ids(got.Tasks), []string{"order-7", "12345"}) {
		t.Fatalf("fetched %v", ids(got.Tasks))
	}
}
