// An edge case of settle.lua's short way (acks alone), found by a review of
// 45887d7..6725b95 (its enqueue.lua case is in enqueue_runs_test.go).
package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/rediq/rediq/internal/broker"
)

// settle.lua's short way does not refuse an empty id (the general way does,
// "bad outcome a / empty task id", before any write). The lease hash's field
// "" is the fetch marker "BASE:----…"; with a base of 3+ digits, an ack of id
// "" with token = BASE's digits from the 2nd on passes the fence, and the
// short way deletes the marker (and HDELs records ""). A fetch re-sent after a
// lost reply is then no longer recognised as a repeat: it leases afresh while
// the first run's tasks stay leased to a session that never got them.
func TestSettleShortWayRefusesAnEmptyID(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	enqueue(t, b, q, msg("a", 2048), msg("b", 2048))
	register(t, b, q, "S", time.Minute)
	first := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 1, TokenBase: 123, StartNow: 1})
	if len(first.Tasks) != 1 {
		t.Fatalf("fetched %+v", first.Tasks)
	}
	held, err := b.Settle(ctx, keep, []broker.Settlement{{Queue: q, Session: "S", Token: 3, ID: "", Outcome: broker.Ack}})
	marker, _ := rdb.HGet(ctx, q.Lease("S"), "").Result()
	if err == nil || marker == "" {
		t.Errorf("ack of id \"\" token 3: held %v, err %v; fetch marker now %q (want the call refused and the marker kept)", held, err, marker)
	}
	// The same fetch re-sent (its reply lost) must be a repeat answering "a".
	again := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 1, TokenBase: 123, StartNow: 1})
	if len(again.Tasks) != 1 || again.Tasks[0].ID != first.Tasks[0].ID {
		t.Errorf("re-sent fetch answered %v, want the repeat of %v", ids(again.Tasks), ids(first.Tasks))
	}
}
