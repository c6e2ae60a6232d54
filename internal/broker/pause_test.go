package broker_test

import (
	"context"
	"slices"
	"strconv"
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
	pid, _ := strconv.ParseInt(id, 10, 64)
	if err != nil || pid <= 0 {
		t.Fatalf("pause = %q, %v", id, err)
	}
	if again, err := b.Pause(ctx, q); again != id || err != nil {
		t.Fatalf("pause again = %q, %v; want the same id", again, err)
	}
	got := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 10, StartNow: 10})
	if len(got.Tasks) != 0 || !got.Paused || got.PauseID != pid {
		t.Fatalf("fetch while paused: %v, paused %v %d", ids(got.Tasks), got.Paused, got.PauseID)
	}
	beats, err := b.Heartbeat(ctx, "S", time.Minute, false, []*broker.Queue{q})
	if err != nil || beats[0].Pause != (broker.PauseState{Paused: true, ID: pid}) {
		t.Fatalf("heartbeat %+v, %v", beats, err)
	}
	waiting, within, standing, err := b.PauseUnacked(ctx, q, id)
	if err != nil || !standing || !slices.Equal(waiting, []string{"S"}) || within <= 0 || within > time.Minute {
		t.Fatalf("unacked %v %v %v %v; want S alone (gone's lease ran out), within a minute", waiting, within, standing, err)
	}
	if err := b.AckPause(ctx, q, "S", id); err != nil {
		t.Fatal(err)
	}
	if waiting, _, _, _ := b.PauseUnacked(ctx, q, id); len(waiting) != 0 {
		t.Fatalf("unacked after the ack: %v", waiting)
	}
	if was, err := b.Resume(ctx, q); !was || err != nil {
		t.Fatalf("resume = %v, %v", was, err)
	}
	if _, _, standing, _ := b.PauseUnacked(ctx, q, id); standing {
		t.Fatal("the pause still stands after the resume")
	}
	beats, _ = b.Heartbeat(ctx, "S", time.Minute, false, []*broker.Queue{q})
	rid := beats[0].Pause.ID
	if beats[0].Pause.Paused || rid <= pid {
		t.Fatalf("heartbeat after resume %+v; want resumed with an id above %d", beats[0].Pause, pid)
	}
	if got := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 10, TokenBase: 10, StartNow: 10}); len(got.Tasks) != 1 {
		t.Fatalf("fetch after resume: %v", ids(got.Tasks))
	}
	// Redis loses the counter (an old snapshot, a lagging replica): the next
	// pause's id is still above every id a worker heard, or the worker would
	// take it for an old one and keep starting tasks.
	if err := rdb.Del(ctx, q.Prefix+"pause:ver").Err(); err != nil {
		t.Fatal(err)
	}
	next, _ := b.Pause(ctx, q)
	if n, _ := strconv.ParseInt(next, 10, 64); n <= rid {
		t.Fatalf("the pause after the counter was lost has id %q, not above the resume's %d", next, rid)
	}
}

// A worker that knows no pauses (protocol version 1) is listed as not
// acknowledging while it lives; a pause value set by something else than
// PauseQueue pauses fetch all the same, and the next PauseQueue gives it an id.
func TestPauseFromElsewhere(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	enqueue(t, b, q, msg("a", 2048))
	register(t, b, q, "S", time.Minute)
	if err := rdb.Set(ctx, q.Paused, "yes", 0).Err(); err != nil {
		t.Fatal(err)
	}
	got := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 10, StartNow: 10})
	if len(got.Tasks) != 0 || !got.Paused || got.PauseID != 0 {
		t.Fatalf("fetch while paused by hand: %v, paused %v %d", ids(got.Tasks), got.Paused, got.PauseID)
	}
	beats, err := b.Heartbeat(ctx, "S", time.Minute, false, []*broker.Queue{q})
	if err != nil || beats[0].Pause != (broker.PauseState{Paused: true}) {
		t.Fatalf("heartbeat %+v, %v", beats, err)
	}
	id, err := b.Pause(ctx, q)
	if n, _ := strconv.ParseInt(id, 10, 64); err != nil || n <= 0 {
		t.Fatalf("pause over a hand-set value = %q, %v; want a numeric id", id, err)
	}
	if err := b.AckPause(ctx, q, "S", id); err != nil {
		t.Fatal(err)
	}
	old := q.Prefix + "workers"
	if err := rdb.ZAdd(ctx, old, redis.Z{Score: float64(time.Now().Add(time.Minute).UnixMilli()), Member: "v1"}).Err(); err != nil {
		t.Fatal(err)
	}
	waiting, _, standing, err := b.PauseUnacked(ctx, q, id)
	if err != nil || !standing || !slices.Equal(waiting, []string{"v1"}) {
		t.Fatalf("unacked %v %v %v; want the version-1 session", waiting, standing, err)
	}
}
