package broker_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/testredis"
)

func TestMain(m *testing.M) { testredis.Main(m) }

func setup(t *testing.T) (*broker.Broker, *broker.Queue, *redis.Client) {
	t.Helper()
	rdb := testredis.Client(t)
	b := broker.New(rdb, testredis.Namespace(t))
	return b, b.Queue("q"), rdb
}

var keep = broker.DeadRetention{MaxAge: time.Hour, MaxLen: 100}

// A session whose lease expired and was reclaimed cannot settle what it held:
// its ack, retry and kill change nothing, and it learns it lost the lease.
func TestLateSettleAfterReclaimChangesNothing(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	if err := b.Enqueue(ctx, q, []broker.Message{{Slot: broker.Slot(0), Body: []byte("m1")}}); err != nil {
		t.Fatal(err)
	}
	const ttl = 50 * time.Millisecond
	if _, err := b.Heartbeat(ctx, "A", ttl, true, []*broker.Queue{q}); err != nil {
		t.Fatal(err)
	}
	got, err := b.Fetch(ctx, "A", ttl, []broker.FetchRequest{{Queue: q, N: 10, TokenBase: 0}})
	if err != nil || len(got[0].Msgs) != 1 {
		t.Fatalf("fetch = %+v, %v", got, err)
	}
	// B sees A expire and reclaims its lease.
	var beat []broker.Beat
	testredis.WaitFor(t, 5*time.Second, "A's lease to expire", func() bool {
		beat, err = b.Heartbeat(ctx, "B", time.Minute, true, []*broker.Queue{q})
		return err == nil && slices.Contains(beat[0].Expired, "A")
	})
	if n, err := b.Reclaim(ctx, q, "A"); n != 1 || err != nil {
		t.Fatalf("reclaim = %d, %v; want 1", n, err)
	}
	if n, err := b.Reclaim(ctx, q, "A"); n != -1 || err != nil {
		t.Fatalf("second reclaim = %d, %v; want -1", n, err)
	}
	// A's late settlements are fenced off.
	for _, o := range []broker.Outcome{broker.Ack, broker.Retry, broker.Kill, broker.Requeue} {
		err := b.Settle(ctx, keep, []broker.Settlement{{Queue: q, Lease: q.Lease("A"), Token: 1, Outcome: o, Body: []byte("changed")}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if p, s, d := rdb.ZCard(ctx, q.Pending).Val(), rdb.ZCard(ctx, q.Scheduled).Val(), rdb.ZCard(ctx, q.Dead).Val(); p != 1 || s != 0 || d != 0 {
		t.Fatalf("after late settles: pending %d scheduled %d dead %d, want 1 0 0", p, s, d)
	}
	if beat, err := b.Heartbeat(ctx, "A", ttl, false, []*broker.Queue{q}); err != nil || !beat[0].Lost {
		t.Fatalf("A's heartbeat = %+v, %v; want the lost lease reported", beat, err)
	}
	if got, err := b.Fetch(ctx, "A", ttl, []broker.FetchRequest{{Queue: q, N: 1}}); err != nil || !errors.Is(got[0].Err, broker.ErrLeaseLost) {
		t.Fatalf("A's fetch = %+v, %v; want ErrLeaseLost", got, err)
	}
	// B runs it, seeing one recovery, and its ack clears the count.
	got, err = b.Fetch(ctx, "B", time.Minute, []broker.FetchRequest{{Queue: q, N: 10, TokenBase: 100}})
	if err != nil || len(got[0].Msgs) != 1 || string(got[0].Msgs[0]) != "m1" || got[0].Recovered[0] != 1 {
		t.Fatalf("B fetch = %+v, %v", got, err)
	}
	err = b.Settle(ctx, keep, []broker.Settlement{{Queue: q, Lease: q.Lease("B"), Token: 101, Outcome: broker.Ack, Recovered: true, Leased: []byte("m1")}})
	if err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, q.Recovered, q.Lease("B"), q.Pending).Val(); n != 0 {
		t.Fatalf("%d of recovered/lease/pending keys remain after the ack", n)
	}
}

func TestRetryKillRequeue(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	msgs := []broker.Message{{Slot: broker.Slot(3), Body: []byte("r")}, {Slot: broker.Slot(3), Body: []byte("k")}, {Slot: broker.Slot(3), Body: []byte("q")}, {Slot: broker.Slot(3), Body: []byte("later")}}
	if err := b.Enqueue(ctx, q, msgs); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Heartbeat(ctx, "S", time.Minute, true, []*broker.Queue{q}); err != nil {
		t.Fatal(err)
	}
	got, err := b.Fetch(ctx, "S", time.Minute, []broker.FetchRequest{{Queue: q, N: 3}})
	if err != nil || !slices.EqualFunc(got[0].Msgs, [][]byte{[]byte("r"), []byte("k"), []byte("q")}, func(a, b []byte) bool { return string(a) == string(b) }) {
		t.Fatalf("fetch = %q, %v", got[0].Msgs, err)
	}
	err = b.Settle(ctx, keep, []broker.Settlement{
		{Queue: q, Lease: q.Lease("S"), Token: 1, Outcome: broker.Retry, Body: []byte("r2"), Slot: broker.Slot(3), Delay: time.Hour},
		{Queue: q, Lease: q.Lease("S"), Token: 2, Outcome: broker.Kill, Body: []byte("k-dead")},
		{Queue: q, Lease: q.Lease("S"), Token: 3, Outcome: broker.Requeue},
	})
	if err != nil {
		t.Fatal(err)
	}
	if s := rdb.ZRange(ctx, q.Scheduled, 0, -1).Val(); !slices.Equal(s, []string{"r2"}) {
		t.Fatalf("scheduled %v", s)
	}
	if d := rdb.ZRange(ctx, q.Dead, 0, -1).Val(); !slices.Equal(d, []string{"k-dead"}) {
		t.Fatalf("dead %v", d)
	}
	// The requeued message goes back ahead of what was still pending.
	if p := rdb.ZRange(ctx, q.Pending, 0, -1).Val(); !slices.Equal(p, []string{"q", "later"}) {
		t.Fatalf("pending %v", p)
	}
	if ok, err := b.Leave(ctx, q, "S"); !ok || err != nil {
		t.Fatalf("leave = %v, %v", ok, err)
	}
	st, err := b.Stats(ctx, []string{"q"})
	if err != nil || st[0] != (broker.QueueStats{Name: "q", Pending: 2, Scheduled: 1, Dead: 1}) {
		t.Fatalf("stats %+v, %v", st, err)
	}
}

func TestDeadSetIsTrimmed(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	var msgs []broker.Message
	for i := range 10 {
		msgs = append(msgs, broker.Message{Body: []byte{byte('a' + i)}})
	}
	if err := b.Enqueue(ctx, q, msgs); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Heartbeat(ctx, "S", time.Minute, true, []*broker.Queue{q}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Fetch(ctx, "S", time.Minute, []broker.FetchRequest{{Queue: q, N: 10}}); err != nil {
		t.Fatal(err)
	}
	var ss []broker.Settlement
	for i := range 10 {
		ss = append(ss, broker.Settlement{Queue: q, Lease: q.Lease("S"), Token: uint64(i + 1), Outcome: broker.Kill, Body: []byte{byte('a' + i)}})
	}
	if err := b.Settle(ctx, broker.DeadRetention{MaxAge: time.Hour, MaxLen: 4}, ss); err != nil {
		t.Fatal(err)
	}
	if n := rdb.ZCard(ctx, q.Dead).Val(); n != 4 {
		t.Fatalf("dead set holds %d, want 4", n)
	}
}

// Every key of a queue shares its hash tag, so one queue lives in one cluster slot.
func TestKeysShareTheQueueSlot(t *testing.T) {
	t.Parallel()
	q := broker.New(nil, "ns").Queue("emails")
	for _, k := range []string{q.Pending, q.Scheduled, q.Dead, q.Seq, q.Workers, q.Recovered, q.Lease("w/1")} {
		if !strings.Contains(k, "{emails}") {
			t.Errorf("key %q lacks the hash tag {emails}", k)
		}
	}
}

func TestValidateQueueName(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "a{b", "a}b", "a:b", "a b", strings.Repeat("x", 201)} {
		if broker.ValidateQueueName(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := broker.ValidateQueueName("images-hi.res_2"); err != nil {
		t.Error(err)
	}
}

// Redis forgets scripts on a restart or SCRIPT FLUSH; pipelined EVALSHA calls
// that get NOSCRIPT did not run, and are run again with their source.
func TestScriptsSurviveScriptFlush(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	msgs := []broker.Message{{Body: []byte("a")}, {Body: []byte("b")}, {Body: []byte("later"), Delay: time.Hour}}
	for range 2 {
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := b.Enqueue(ctx, q, msgs); err != nil {
			t.Fatal(err)
		}
		if err := b.Enqueue1(ctx, q, broker.Slot(0), []byte("c")); err != nil {
			t.Fatal(err)
		}
	}
	if p, s := rdb.ZCard(ctx, q.Pending).Val(), rdb.ZCard(ctx, q.Scheduled).Val(); p != 3 || s != 1 {
		t.Fatalf("pending %d scheduled %d, want 3 and 1 (members are unique)", p, s)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Heartbeat(ctx, "S", time.Minute, true, []*broker.Queue{q}); err != nil {
		t.Fatal(err)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := b.Fetch(ctx, "S", time.Minute, []broker.FetchRequest{{Queue: q, N: 10}})
	if err != nil || len(got[0].Msgs) != 3 {
		t.Fatalf("fetch after SCRIPT FLUSH = %+v, %v", got, err)
	}
	if got[0].NextDue == 0 {
		t.Fatal("fetch did not report the scheduled message's due time")
	}
}

// A pipeline that fails on the network reports it, acks included.
func TestSettleReportsConnectionErrors(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer rdb.Close()
	b := broker.New(rdb, "x")
	err := b.Settle(context.Background(), keep, []broker.Settlement{{Queue: b.Queue("q"), Lease: b.Queue("q").Lease("S"), Token: 1, Outcome: broker.Ack}})
	if err == nil {
		t.Fatal("an ack on an unreachable Redis reported success")
	}
}
