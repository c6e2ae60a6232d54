package broker_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq/internal/broker"
)

// A settle whose script Redis forgot (SCRIPT FLUSH) runs again with
// its source through scriptFull's call; its "m" run answers per task.
func TestSettleManyAfterScriptFlush(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	enqueue(t, b, q, msg("a", 2048), msg("b", 2048), msg("c", 2048), msg("d", 2048))
	register(t, b, q, "S", time.Minute)
	got := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 4, TokenBase: 5, StartNow: 4})
	if len(got.Tasks) != 4 {
		t.Fatalf("fetched %v", ids(got.Tasks))
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	ack := func(id string) broker.Settlement {
		return broker.Settlement{Queue: q, Session: "S", Token: 6, ID: id, Outcome: broker.Ack}
	}
	held := settle(t, b, ack("a"), ack("b"), broker.Settlement{Queue: q, Session: "S", Token: 6, ID: "c", Outcome: broker.Requeue}, ack("d"))
	if !slices.Equal(held, []bool{true, true, true, true}) {
		t.Fatalf("held %v", held)
	}
	if n := rdb.HLen(ctx, q.Records).Val(); n != 1 {
		t.Fatalf("%d records, want c's", n)
	}
}

// Plain acks of S leases sent as one "m" free each one's
// concurrency slot.
func TestManyAcksFreeSlots(t *testing.T) {
	t.Parallel()
	b, q, _ := setup(t)
	setLimit(t, b, q, "a", broker.Limit{Concurrency: 3})
	enqueue(t, b, q, flowMsg("a1", "a"), flowMsg("a2", "a"), flowMsg("a3", "a"), flowMsg("a4", "a"), msg("p", 2048))
	register(t, b, q, "A", time.Minute)
	got := fetch(t, b, "A", time.Minute, broker.FetchRequest{Queue: q, N: 5, TokenBase: 0, StartNow: 5})
	if count(got.Tasks, "a") != 3 {
		t.Fatalf("fetched %v", ids(got.Tasks))
	}
	if r := running(t, b, q); r["a"] != 3 {
		t.Fatalf("running %v", r)
	}
	var ss []broker.Settlement
	for _, tk := range got.Tasks {
		ss = append(ss, broker.Settlement{Queue: q, Session: "A", Token: tk.Token, ID: tk.ID, Outcome: broker.Ack})
	}
	held := settle(t, b, ss...)
	for i, h := range held {
		if !h {
			t.Fatalf("held %v at %d", held, i)
		}
	}
	if r := running(t, b, q); r["a"] != 0 {
		t.Fatalf("running %v after every a acked; want 0", r)
	}
	next := fetch(t, b, "A", time.Minute, broker.FetchRequest{Queue: q, N: 5, TokenBase: 5, StartNow: 5})
	if !slices.Equal(ids(next.Tasks), []string{"a4"}) {
		t.Fatalf("next %v", ids(next.Tasks))
	}
}

// A repeated fetch answers the recovered count and the expiry of the
// tasks that have them, on the right task.
func TestRepeatKeepsExtras(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	exp := msg("e", 2048)
	exp.ExpireIn = time.Hour
	enqueue(t, b, q, msg("r", 2048))
	register(t, b, q, "dead", time.Minute)
	fetch(t, b, "dead", time.Minute, broker.FetchRequest{Queue: q, N: 1, StartNow: 1})
	rdb.ZAdd(ctx, q.Workers, redis.Z{Score: 0, Member: "dead"})
	if _, _, ok, err := b.Reclaim(ctx, q, "dead"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	enqueue(t, b, q, msg("p1", 2048), exp, msg("p2", 2048))
	register(t, b, q, "S", time.Minute)
	r := broker.FetchRequest{Queue: q, N: 4, TokenBase: 100, StartNow: 1, Recovering: true}
	first := fetch(t, b, "S", time.Minute, r)
	again := fetch(t, b, "S", time.Minute, r)
	if !again.Repeat || len(first.Tasks) != 4 || len(again.Tasks) != 4 {
		t.Fatalf("first %v again %v", ids(first.Tasks), ids(again.Tasks))
	}
	for _, set := range [][]broker.Leased{first.Tasks, again.Tasks} {
		by := map[string]broker.Leased{}
		for _, tk := range set {
			by[tk.ID] = tk
			if tk.Token != 101 {
				t.Fatalf("%s token %d", tk.ID, tk.Token)
			}
		}
		if by["r"].Recovered != 1 || !by["r"].Started {
			t.Fatalf("r: %+v", by["r"])
		}
		if by["e"].ExpiresIn < 59*time.Minute || by["e"].Recovered != 0 {
			t.Fatalf("e: %+v", by["e"])
		}
		for _, id := range []string{"p1", "p2"} {
			if by[id].ExpiresIn >= 0 || by[id].Recovered != 0 || by[id].Started {
				t.Fatalf("%s: %+v", id, by[id])
			}
		}
	}
}

// A settle call of "m" acks whose reply was lost, sent again, changes nothing
// the second time: every ack answers "not held".
func TestManyAcksSentTwiceChangeNothing(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	enqueue(t, b, q, msg("a", 2048), msg("b", 2048), msg("c", 2048), msg("d", 2048))
	register(t, b, q, "S", time.Minute)
	got := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 3, TokenBase: 0, StartNow: 3})
	if len(got.Tasks) != 3 {
		t.Fatalf("fetched %v", ids(got.Tasks))
	}
	var ss []broker.Settlement
	for _, tk := range got.Tasks {
		ss = append(ss, broker.Settlement{Queue: q, Session: "S", Token: tk.Token, ID: tk.ID, Outcome: broker.Ack})
	}
	snapshot := func() string {
		return fmt.Sprint(rdb.HGetAll(ctx, q.Records).Val(), rdb.HGetAll(ctx, q.Lease("S")).Val(), pendingIDs(t, b, q))
	}
	if held := settle(t, b, ss...); !slices.Equal(held, []bool{true, true, true}) {
		t.Fatalf("first run: %v", held)
	}
	after := snapshot()
	if held := settle(t, b, ss...); !slices.Equal(held, []bool{false, false, false}) {
		t.Fatalf("second run: %v, want none held", held)
	}
	if again := snapshot(); again != after {
		t.Fatalf("the second run changed %s into %s", after, again)
	}
}
