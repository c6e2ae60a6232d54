package broker_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq/internal/broker"
)

func flowMsg(id, flow string) broker.Message {
	m := msg(id, 2048)
	m.Flow = flow
	return m
}

func setLimit(t *testing.T, b *broker.Broker, q *broker.Queue, typ string, l broker.Limit) {
	t.Helper()
	if _, err := b.SetLimit(context.Background(), q, typ, l); err != nil {
		t.Fatal(err)
	}
}

func running(t *testing.T, b *broker.Broker, q *broker.Queue) map[string]int {
	t.Helper()
	r, err := b.FlowsRunning(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func count(ts []broker.Leased, prefix string) int {
	n := 0
	for _, t := range ts {
		if strings.HasPrefix(t.ID, prefix) {
			n++
		}
	}
	return n
}

// A flow at its concurrency limit is passed over, not taken: its tasks stay
// pending, another flow's behind them are fetched, and every way a lease ends
// — ack, retry, give-back, kill, reclaim — frees the slot and makes the flow
// fetchable again.
func TestConcurrencyLimitIsDecidedInFetch(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	setLimit(t, b, q, "a", broker.Limit{Concurrency: 2})
	var ms []broker.Message
	for i := range 6 {
		ms = append(ms, flowMsg(fmt.Sprintf("a%d", i), "a"))
	}
	for i := range 3 {
		ms = append(ms, flowMsg(fmt.Sprintf("b%d", i), "b"))
	}
	enqueue(t, b, q, ms...)
	register(t, b, q, "A", time.Minute)
	got := fetch(t, b, "A", time.Minute, broker.FetchRequest{Queue: q, N: 10, StartNow: 10})
	if count(got.Tasks, "a") != 2 || count(got.Tasks, "b") != 3 {
		t.Fatalf("fetched %v; want 2 of a (its limit) and the 3 of b", ids(got.Tasks))
	}
	for _, l := range got.Tasks {
		if !l.Started {
			t.Fatalf("%s not started at once", l.ID)
		}
	}
	if r := running(t, b, q); r["a"] != 2 || len(r) != 1 {
		t.Fatalf("running %v, want a: 2", r)
	}
	if bl := rdb.ZRange(ctx, q.PendingBlocked, 0, -1).Val(); !slices.Equal(bl, []string{"2048|a"}) {
		t.Fatalf("blocked lanes %v", bl)
	}
	if again := fetch(t, b, "A", time.Minute, broker.FetchRequest{Queue: q, N: 10, TokenBase: 100, StartNow: 10}); len(again.Tasks) != 0 {
		t.Fatalf("fetched %v over the limit", ids(again.Tasks))
	}
	tok := map[string]uint64{}
	for _, l := range got.Tasks {
		tok[l.ID] = l.Token
	}
	base := uint64(200)
	// next frees one slot with outcome o of the a-task held, then fetches
	// the one task the freed slot allows.
	next := func(o broker.Outcome) {
		t.Helper()
		var held string
		for id := range tok {
			if strings.HasPrefix(id, "a") {
				held = id
				break
			}
		}
		held0 := settle(t, b, broker.Settlement{Queue: q, Session: "A", Token: tok[held], ID: held, Outcome: o, Body: []byte("body-" + held)})
		if !held0[0] {
			t.Fatalf("outcome %d of %s refused", o, held)
		}
		delete(tok, held)
		f := fetch(t, b, "A", time.Minute, broker.FetchRequest{Queue: q, N: 10, TokenBase: base, StartNow: 10})
		base += 100
		if len(f.Tasks) != 1 || !strings.HasPrefix(f.Tasks[0].ID, "a") {
			t.Fatalf("after outcome %d fetched %v; want one a-task", o, ids(f.Tasks))
		}
		if o == broker.Requeue && f.Tasks[0].ID != held {
			t.Fatalf("a given-back task is next in its lane: got %s, want %s", f.Tasks[0].ID, held)
		}
		tok[f.Tasks[0].ID] = f.Tasks[0].Token
		if r := running(t, b, q); r["a"] != 2 {
			t.Fatalf("after outcome %d running %v, want a: 2", o, r)
		}
	}
	next(broker.Ack)
	next(broker.Requeue)
	next(broker.Kill)
	next(broker.Retry) // delay 0: due at once, back in its lane
	// The reclaim of a dead session frees its slots.
	rdb.ZAdd(ctx, q.Workers, redis.Z{Score: 0, Member: "A"}) // A's lease runs out now
	if _, started, ok, err := b.Reclaim(ctx, q, "A"); !ok || err != nil || started != 5 {
		t.Fatalf("reclaim of A = %d started, %v, %v; want its 2 a-tasks and 3 b-tasks", started, ok, err)
	}
	if r := running(t, b, q); len(r) != 0 {
		t.Fatalf("running %v after the reclaim, want none", r)
	}
	if n := rdb.Exists(ctx, q.PendingBlocked).Val(); n != 0 {
		t.Fatal("the lane stayed blocked after its slots were freed")
	}
}

// Rate: at most RATE starts in any window of PER (kept 2.5% longer), the
// lane blocked until the oldest start leaves it, and the fetch's NextDue is
// that time — a timed wake-up, not polling.
func TestRateLimitIsASlidingWindow(t *testing.T) {
	t.Parallel()
	b, q, _ := setup(t)
	setLimit(t, b, q, "r", broker.Limit{Rate: 3, Per: 400 * time.Millisecond})
	var ms []broker.Message
	for i := range 9 {
		ms = append(ms, flowMsg(fmt.Sprintf("r%d", i), "r"))
	}
	enqueue(t, b, q, ms...)
	register(t, b, q, "A", time.Minute)
	var starts []time.Time
	base := uint64(0)
	deadline := time.Now().Add(10 * time.Second)
	for len(starts) < 9 && time.Now().Before(deadline) {
		f := fetch(t, b, "A", time.Minute, broker.FetchRequest{Queue: q, N: 10, TokenBase: base, StartNow: 10})
		base += 100
		now := time.Now()
		for range f.Tasks {
			starts = append(starts, now)
		}
		if len(starts) < 9 {
			if f.NextDue < 0 || f.NextDue > 420*time.Millisecond {
				t.Fatalf("after %d starts NextDue = %s; want the time the window frees one", len(starts), f.NextDue)
			}
			time.Sleep(f.NextDue) // the worker's timer
		}
	}
	if len(starts) != 9 {
		t.Fatalf("%d starts in 10 s", len(starts))
	}
	for i := 3; i < len(starts); i++ {
		if d := starts[i].Sub(starts[i-3]); d < 400*time.Millisecond {
			t.Fatalf("start %d came %s after start %d: 4 starts in a window of 400ms", i, d, i-3)
		}
	}
	if total := starts[8].Sub(starts[0]); total > 1500*time.Millisecond {
		t.Fatalf("9 starts at 3 per 400ms took %s", total)
	}
}

// Tasks of limited flows are taken only to start at once: a fetch without a
// runner to spare passes them over (and says so), takes unlimited ones.
func TestLimitedTasksWaitForARunner(t *testing.T) {
	t.Parallel()
	b, q, _ := setup(t)
	setLimit(t, b, q, "a", broker.Limit{Rate: 100, Per: time.Second})
	enqueue(t, b, q, flowMsg("a1", "a"), flowMsg("b1", "b"))
	register(t, b, q, "A", time.Minute)
	got := fetch(t, b, "A", time.Minute, broker.FetchRequest{Queue: q, N: 10, StartNow: 0})
	if !slices.Equal(ids(got.Tasks), []string{"b1"}) || !got.WaitRunner {
		t.Fatalf("prefetch got %v (WaitRunner %v); want b1 only, and the limited lane waiting", ids(got.Tasks), got.WaitRunner)
	}
	got = fetch(t, b, "A", time.Minute, broker.FetchRequest{Queue: q, N: 10, TokenBase: 100, StartNow: 1})
	if !slices.Equal(ids(got.Tasks), []string{"a1"}) || !got.Tasks[0].Started || got.WaitRunner {
		t.Fatalf("fetch with a runner got %+v", got)
	}
}

// A limit key gets its own lane: a million-task backlog of one key held by its
// limit never stands before another key's task, and lanes of one slot take
// turns.
func TestLimitKeyLanesTakeTurns(t *testing.T) {
	t.Parallel()
	b, q, _ := setup(t)
	setLimit(t, b, q, "a", broker.Limit{Rate: 1, Per: time.Hour})
	var ms []broker.Message
	for i := range 500 {
		ms = append(ms, flowMsg(fmt.Sprintf("k1-%d", i), "a|k1"))
	}
	ms = append(ms, flowMsg("k2-0", "a|k2"))
	for i := range 3 {
		ms = append(ms, flowMsg(fmt.Sprintf("x%d", i), "x"), flowMsg(fmt.Sprintf("y%d", i), "y"))
	}
	enqueue(t, b, q, ms...)
	register(t, b, q, "A", time.Minute)
	got := fetch(t, b, "A", time.Minute, broker.FetchRequest{Queue: q, N: 2, StartNow: 2})
	if !slices.Equal(ids(got.Tasks), []string{"k1-0", "k2-0"}) {
		t.Fatalf("fetched %v; want one task of each key", ids(got.Tasks))
	}
	var order []string
	for i := range 6 {
		f := fetch(t, b, "A", time.Minute, broker.FetchRequest{Queue: q, N: 1, TokenBase: uint64(100 * (i + 1)), StartNow: 1})
		order = append(order, ids(f.Tasks)...)
	}
	if !slices.Equal(order, []string{"x0", "y0", "x1", "y1", "x2", "y2"}) {
		t.Fatalf("unlimited flows of one slot ran %v; want them taking turns", order)
	}
}

// A limit changed at run time applies to the lanes it blocked at once.
func TestSetLimitUnblocks(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	setLimit(t, b, q, "a", broker.Limit{Concurrency: 1})
	enqueue(t, b, q, flowMsg("a1", "a"), flowMsg("a2", "a"))
	register(t, b, q, "A", time.Minute)
	if got := fetch(t, b, "A", time.Minute, broker.FetchRequest{Queue: q, N: 10, StartNow: 10}); len(got.Tasks) != 1 {
		t.Fatalf("fetched %v", ids(got.Tasks))
	}
	if changed, err := b.SetLimit(ctx, q, "a", broker.Limit{Concurrency: 1, Code: true}); err != nil || changed {
		t.Fatalf("a code default replaced the limit set at run time: %v %v", changed, err)
	}
	setLimit(t, b, q, "a", broker.Limit{Concurrency: 2})
	if rdb.Exists(ctx, q.PendingBlocked).Val() != 0 {
		t.Fatal("the lane stayed blocked")
	}
	if got := fetch(t, b, "A", time.Minute, broker.FetchRequest{Queue: q, N: 10, TokenBase: 100, StartNow: 10}); len(got.Tasks) != 1 {
		t.Fatalf("fetched %v after the limit was raised", ids(got.Tasks))
	}
	ls, err := b.Limits(ctx, []*broker.Queue{q})
	if err != nil || ls[0]["a"] != (broker.Limit{Concurrency: 2}) {
		t.Fatalf("limits = %v, %v", ls, err)
	}
}

// A blocked lane's tasks are still pending to every reader and writer:
// listed and counted, cancelled and deleted from it, purged; a lane emptied
// that way leaves blocked too.
func TestBlockedLanesArePending(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	setLimit(t, b, q, "a", broker.Limit{Rate: 1, Per: time.Hour})
	enqueue(t, b, q, flowMsg("a1", "a"), flowMsg("a2", "a"), flowMsg("a3", "a"), flowMsg("a4", "a"), flowMsg("b1", "b"))
	register(t, b, q, "A", time.Minute)
	if got := fetch(t, b, "A", time.Minute, broker.FetchRequest{Queue: q, N: 10, StartNow: 10}); !slices.Equal(ids(got.Tasks), []string{"a1", "b1"}) {
		t.Fatalf("fetched %v", ids(got.Tasks))
	}
	if bl := rdb.ZRange(ctx, q.PendingBlocked, 0, -1).Val(); !slices.Equal(bl, []string{"2048|a"}) {
		t.Fatalf("blocked %v", bl)
	}
	if p, err := b.PendingIDs(ctx, q); err != nil || !slices.Equal(p, []string{"a2", "a3", "a4"}) {
		t.Fatalf("pending %v, %v", p, err)
	}
	st, err := b.Stats(ctx, []string{"q"})
	if err != nil || st[0].Pending != 3 {
		t.Fatalf("stats %+v, %v; want 3 pending", st, err)
	}
	if now, err := b.Cancel(ctx, q, "a2"); !now || err != nil {
		t.Fatalf("cancel of a blocked task = %v, %v", now, err)
	}
	if err := b.Delete(ctx, q, "a3"); err != nil {
		t.Fatal(err)
	}
	if gone, err := b.PurgePending(ctx, q, 10); err != nil || len(gone) != 1 || gone[0].ID != "a4" {
		t.Fatalf("purge = %+v, %v", gone, err)
	}
	if n := rdb.Exists(ctx, q.PendingBlocked, q.PendingList("2048|a")).Val(); n != 0 {
		t.Fatalf("%d keys of the emptied lane remain", n)
	}
}

// A fetch sent again (its reply lost) answers what it leased, and counts
// nothing twice.
func TestLimitedFetchSentTwice(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	setLimit(t, b, q, "a", broker.Limit{Rate: 10, Per: time.Hour, Concurrency: 2})
	enqueue(t, b, q, flowMsg("a1", "a"), flowMsg("a2", "a"), flowMsg("a3", "a"))
	register(t, b, q, "A", time.Minute)
	r := broker.FetchRequest{Queue: q, N: 10, TokenBase: 7, StartNow: 10}
	first := fetch(t, b, "A", time.Minute, r)
	again := fetch(t, b, "A", time.Minute, r)
	// The same leases (in any order: the worker never saw the first answer).
	if !again.Repeat || !slices.Equal(slices.Sorted(slices.Values(ids(first.Tasks))), slices.Sorted(slices.Values(ids(again.Tasks)))) || len(first.Tasks) != 2 {
		t.Fatalf("first %v, again %v (repeat %v)", ids(first.Tasks), ids(again.Tasks), again.Repeat)
	}
	for _, l := range again.Tasks {
		if !l.Started {
			t.Fatalf("%s is not started in the repeated answer", l.ID)
		}
	}
	if r := running(t, b, q); r["a"] != 2 {
		t.Fatalf("running %v, want a: 2", r)
	}
	// Readers see leases of flag S as started (CancelTask, rediq active).
	act, err := b.Active(ctx, []*broker.Queue{q})
	if err != nil || len(act[0]) != 2 || !act[0][0].Started || !act[0][1].Started {
		t.Fatalf("active = %+v, %v; want both started", act, err)
	}
	if n := rdb.LLen(ctx, q.Prefix+"lim:log:a").Val(); n != 2 {
		t.Fatalf("%d starts logged, want 2", n)
	}
}

// A recovered task (its worker died running it) keeps its flow and its
// flow's limit: it waits in recovering while the limit is reached, without
// the answer asking for another try at once.
func TestRecoveredTaskKeepsItsLimit(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	setLimit(t, b, q, "a", broker.Limit{Concurrency: 1})
	enqueue(t, b, q, flowMsg("a1", "a"), flowMsg("a2", "a"))
	register(t, b, q, "dead", time.Minute)
	if got := fetch(t, b, "dead", time.Minute, broker.FetchRequest{Queue: q, N: 1, StartNow: 1}); !slices.Equal(ids(got.Tasks), []string{"a1"}) {
		t.Fatalf("fetched %v", ids(got.Tasks))
	}
	rdb.ZAdd(ctx, q.Workers, redis.Z{Score: 0, Member: "dead"})
	if _, started, ok, err := b.Reclaim(ctx, q, "dead"); !ok || err != nil || started != 1 {
		t.Fatalf("reclaim = %d, %v, %v", started, ok, err)
	}
	if f := rdb.HGet(ctx, q.Prefix+"flow", "a1").Val(); f != "a" {
		t.Fatalf("the recovered task's flow = %q", f)
	}
	register(t, b, q, "B", time.Minute)
	got := fetch(t, b, "B", time.Minute, broker.FetchRequest{Queue: q, N: 1, StartNow: 1})
	if !slices.Equal(ids(got.Tasks), []string{"a2"}) {
		t.Fatalf("fetched %v; want a2 (the recovered task is only given when asked)", ids(got.Tasks))
	}
	held := fetch(t, b, "B", time.Minute, broker.FetchRequest{Queue: q, N: 1, TokenBase: 10, StartNow: 1, Recovering: true})
	if len(held.Tasks) != 0 || held.Recovering {
		t.Fatalf("over the limit got %v (Recovering %v); want nothing, and no call to try again", ids(held.Tasks), held.Recovering)
	}
	settle(t, b, broker.Settlement{Queue: q, Session: "B", Token: got.Tasks[0].Token, ID: "a2", Outcome: broker.Ack})
	rec := fetch(t, b, "B", time.Minute, broker.FetchRequest{Queue: q, N: 1, TokenBase: 20, StartNow: 1, Recovering: true})
	if !slices.Equal(ids(rec.Tasks), []string{"a1"}) || rec.Tasks[0].Recovered != 1 {
		t.Fatalf("after the slot freed got %+v", rec.Tasks)
	}
	if r := running(t, b, q); r["a"] != 1 {
		t.Fatalf("running %v, want a: 1", r)
	}
	if n := rdb.HLen(ctx, q.Prefix+"flow").Val(); n != 0 {
		t.Fatalf("%d flows left", n)
	}
}

// A settlement sent again (its reply lost) frees a concurrency slot once:
// the second finds no lease and changes nothing, so another running task of
// the flow keeps its slot counted.
func TestSlotFreedOnceWhenSettleIsSentTwice(t *testing.T) {
	t.Parallel()
	b, q, _ := setup(t)
	setLimit(t, b, q, "a", broker.Limit{Concurrency: 2})
	enqueue(t, b, q, flowMsg("a1", "a"), flowMsg("a2", "a"))
	register(t, b, q, "A", time.Minute)
	got := fetch(t, b, "A", time.Minute, broker.FetchRequest{Queue: q, N: 2, StartNow: 2})
	if len(got.Tasks) != 2 {
		t.Fatalf("fetched %v", ids(got.Tasks))
	}
	ack := broker.Settlement{Queue: q, Session: "A", Token: got.Tasks[0].Token, ID: got.Tasks[0].ID, Outcome: broker.Ack}
	if held := settle(t, b, ack); !held[0] {
		t.Fatal("the first ack was refused")
	}
	if held := settle(t, b, ack); held[0] {
		t.Fatal("the second ack applied")
	}
	if r := running(t, b, q); r["a"] != 1 {
		t.Fatalf("running %v after one task ended twice over; want a: 1", r)
	}
}
