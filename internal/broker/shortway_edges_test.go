// Edge cases of the short ways of enqueue.lua (runs), settle.lua (acks alone)
// and fetch.lua (the nested answer), found by a review of 45887d7..6725b95.
package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rediq/rediq/internal/broker"
)

// enqueue.lua, 5-per-task form, first task with an empty id: §5.1 says the call
// is refused ("ERR rediq: empty task id") and writes nothing. Since 9d453bb
// ARGV[5] == "" selects the runs form, and with one task whose delay is 1 the
// call parses as a valid run ("" LANE COUNT=1 id=MSG message=OPTS): it writes a
// task whose id is the message bytes and whose record is "".
func TestEnqueueEmptyFirstIDIsNotARunsCall(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	src := mustRead(t, "scripts/enqueue.lua")
	keys := []string{q.Records, q.Pending, q.Scheduled, q.Seq}
	args := []any{q.Channel, "", broker.Epoch, q.Prefix, "", "2048", 1, "\x83\xa1v\x01\xa1n\xa1x\xa1a\xc0", ""}
	res, err := rdb.Eval(ctx, src, keys, args...).Result()
	if err == nil || !strings.Contains(err.Error(), "empty task id") {
		recs, _ := rdb.HGetAll(ctx, q.Records).Result()
		t.Errorf("5-form call with an empty id: reply %q, err %v; want ERR rediq: empty task id. Records now: %q, pending %q",
			res, err, recs, pendingIDs(t, b, q))
	}
}

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
