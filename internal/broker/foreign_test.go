package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq/internal/broker"
)

// A producer in another language that sends an empty id is refused before
// anything is written: a lease hash keeps its fetch marker under the field "",
// so a task with that id would be leased onto the marker and lost.
func TestEnqueueRefusesAnEmptyID(t *testing.T) {
	t.Parallel()
	_, q, rdb := setup(t)
	ctx := context.Background()
	src := mustRead(t, "scripts/enqueue.lua")
	err := rdb.Eval(ctx, src, []string{q.Records, q.Pending, q.Scheduled, q.Seq},
		q.Channel, "", broker.Epoch, q.Prefix, "ok", 2048, 0, "body", "", "", 2048, 0, "body", "").Err()
	if err == nil || !strings.Contains(err.Error(), "empty task id") {
		t.Fatalf("enqueue of an empty id = %v, want an error naming it", err)
	}
	if n := rdb.Exists(ctx, q.Records, q.Pending, q.PendingSlots, q.PendingLanes, q.PendingList("2048")).Val(); n != 0 {
		t.Fatalf("%d keys written by a refused call", n)
	}
}

// A lease whose score is not a number (written by a foreign worker, or by
// hand) still goes back when its session dies, at the default priority:
// reclaim must not stop half-way through a session's leases.
func TestReclaimTakesBackALeaseWithAMalformedScore(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	past := float64(time.Now().Add(-time.Minute).UnixMilli())
	if err := rdb.ZAdd(ctx, q.Workers, redis.Z{Score: past, Member: "x/1"}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, q.Lease("x/1"), "bad", "p:7:score", "good", "p:8:4503599627370497", "", "7:"+strings.Repeat("-", 64)).Err(); err != nil {
		t.Fatal(err)
	}
	rdb.HSet(ctx, q.Records, "bad", "m1", "good", "m2")
	prefetched, started, ok, err := b.Reclaim(ctx, q, "x/1")
	if err != nil || !ok || prefetched != 2 || started != 0 {
		t.Fatalf("reclaim = %d prefetched, %d started, %v, %v; want both back", prefetched, started, ok, err)
	}
	if p := rdb.LRange(ctx, q.PendingList("2048"), 0, -1).Val(); len(p) != 2 {
		t.Fatalf("pending at slot 2048: %v, want both", p)
	}
	if rdb.Exists(ctx, q.Lease("x/1")).Val() != 0 {
		t.Fatal("the lease hash remains")
	}
}
