package broker_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq/internal/broker"
)

// A paused queue leases nothing; the heartbeat tells a worker that missed
// the messages where the queue stands, with ids that grow, so that a late
// answer never undoes a later pause or resume; PauseQueue waits only for live
// sessions that have not acknowledged.
func TestPauseStateReachesWorkers(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	enqueue(t, b, q, msg("a", 2048))
	register(t, b, q, "S", time.Minute)
	if err := rdb.ZAdd(ctx, q.Workers, redis.Z{Score: float64(time.Now().Add(-time.Minute).UnixMilli()), Member: "gone"}).Err(); err != nil {
		t.Fatal(err)
	}
	id, err := b.Pause(ctx, q)
	if err != nil || id != "1" {
		t.Fatalf("pause = %q, %v", id, err)
	}
	if again, err := b.Pause(ctx, q); again != id || err != nil {
		t.Fatalf("pause again = %q, %v; want the same id", again, err)
	}
	got := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 10, StartNow: 10})
	if len(got.Tasks) != 0 || got.Paused != 1 {
		t.Fatalf("fetch while paused: %v, paused %d", ids(got.Tasks), got.Paused)
	}
	beats, err := b.Heartbeat(ctx, "S", time.Minute, false, []*broker.Queue{q})
	if err != nil || beats[0].Pause != (broker.PauseState{Paused: true, ID: 1}) {
		t.Fatalf("heartbeat %+v, %v", beats, err)
	}
	waiting, standing, err := b.PauseUnacked(ctx, q, id)
	if err != nil || !standing || !slices.Equal(waiting, []string{"S"}) {
		t.Fatalf("unacked %v %v %v; want S alone (gone's lease ran out)", waiting, standing, err)
	}
	if err := b.AckPause(ctx, q, "S", id); err != nil {
		t.Fatal(err)
	}
	if waiting, _, _ := b.PauseUnacked(ctx, q, id); len(waiting) != 0 {
		t.Fatalf("unacked after the ack: %v", waiting)
	}
	if was, err := b.Resume(ctx, q); !was || err != nil {
		t.Fatalf("resume = %v, %v", was, err)
	}
	if _, standing, _ := b.PauseUnacked(ctx, q, id); standing {
		t.Fatal("the pause still stands after the resume")
	}
	beats, _ = b.Heartbeat(ctx, "S", time.Minute, false, []*broker.Queue{q})
	if beats[0].Pause != (broker.PauseState{ID: 2}) {
		t.Fatalf("heartbeat after resume %+v; want resumed with id 2", beats[0].Pause)
	}
	if got := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 10, TokenBase: 10, StartNow: 10}); len(got.Tasks) != 1 {
		t.Fatalf("fetch after resume: %v", ids(got.Tasks))
	}
	if next, _ := b.Pause(ctx, q); next != "3" {
		t.Fatalf("the next pause's id = %q, want 3", next)
	}
}
