package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/testredis"
)

// Start marks are written in one HSET per thousand: more marks in one settle
// call than Lua's unpack takes (about 8,000 values) still apply, all of them.
func TestManyStartMarksInOneSettle(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t) // unpack's limit is real Redis's Lua
	b, q, _ := setup(t)
	ctx := context.Background()
	const n = 4500
	msgs := make([]broker.Message, n)
	for i := range msgs {
		msgs[i] = msg(fmt.Sprintf("m%05d", i), 2048)
	}
	for from := 0; from < n; from += 1000 {
		enqueue(t, b, q, msgs[from:min(from+1000, n)]...)
	}
	register(t, b, q, "S", time.Minute)
	got := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: n, TokenBase: 1000})
	if len(got.Tasks) != n {
		t.Fatalf("leased %d, want %d", len(got.Tasks), n)
	}
	ss := make([]broker.Settlement, n)
	for i, l := range got.Tasks {
		ss[i] = broker.Settlement{Queue: q, Session: "S", Token: l.Token, ID: l.ID, Outcome: broker.Start}
	}
	for i, h := range settle(t, b, ss...) {
		if !h {
			t.Fatalf("mark %d not applied", i)
		}
	}
	act, err := b.Active(ctx, []*broker.Queue{q})
	if err != nil {
		t.Fatal(err)
	}
	started := 0
	for _, l := range act[0] {
		if l.Started {
			started++
		}
	}
	if started != n {
		t.Fatalf("%d of %d leases marked started", started, n)
	}
}
