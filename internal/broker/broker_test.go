package broker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
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

func msg(id string, slot int) broker.Message {
	return broker.Message{ID: id, Slot: slot, Body: []byte("body-" + id)}
}

func enqueue(t *testing.T, b *broker.Broker, q *broker.Queue, msgs ...broker.Message) {
	t.Helper()
	added, err := b.Enqueue(context.Background(), q, msgs)
	if err != nil {
		t.Fatal(err)
	}
	for i, st := range added {
		if !st.Added() {
			t.Fatalf("message %s not added", msgs[i].ID)
		}
	}
}

func register(t *testing.T, b *broker.Broker, q *broker.Queue, session string, ttl time.Duration) {
	t.Helper()
	if _, err := b.Heartbeat(context.Background(), session, ttl, true, []*broker.Queue{q}); err != nil {
		t.Fatal(err)
	}
}

func fetch(t *testing.T, b *broker.Broker, session string, ttl time.Duration, r broker.FetchRequest) broker.Fetched {
	t.Helper()
	got, err := b.Fetch(context.Background(), session, ttl, []broker.FetchRequest{r})
	if err != nil {
		t.Fatal(err)
	}
	return got[0]
}

func ids(ts []broker.Leased) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.ID)
	}
	return out
}

func settle(t *testing.T, b *broker.Broker, ss ...broker.Settlement) []bool {
	t.Helper()
	held, err := b.Settle(context.Background(), keep, ss)
	if err != nil {
		t.Fatal(err)
	}
	return held
}

// A session whose lease expired and was reclaimed cannot settle what it held:
// its ack, retry, kill, requeue and start mark change nothing, and it learns
// it lost the lease. Its late ack does not clear the recovery count either.
func TestLateSettleAfterReclaimChangesNothing(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	enqueue(t, b, q, msg("m1", 2048))
	const ttl = 50 * time.Millisecond
	register(t, b, q, "A", ttl)
	got := fetch(t, b, "A", ttl, broker.FetchRequest{Queue: q, N: 10, StartNow: 1})
	if !slices.Equal(ids(got.Tasks), []string{"m1"}) || !got.Tasks[0].Started {
		t.Fatalf("fetch = %+v", got)
	}
	// B sees A expire and reclaims its lease.
	var beat []broker.Beat
	var err error
	testredis.WaitFor(t, 5*time.Second, "A's lease to expire", func() bool {
		beat, err = b.Heartbeat(ctx, "B", time.Minute, true, []*broker.Queue{q})
		return err == nil && slices.Contains(beat[0].Expired, "A")
	})
	if pre, started, ok, err := b.Reclaim(ctx, q, "A"); pre != 0 || started != 1 || !ok || err != nil {
		t.Fatalf("reclaim = %d %d %v %v; want the started task", pre, started, ok, err)
	}
	if _, _, ok, err := b.Reclaim(ctx, q, "A"); ok || err != nil {
		t.Fatalf("second reclaim = %v, %v; want not expired", ok, err)
	}
	// A's late settlements are fenced off.
	for _, o := range []broker.Outcome{broker.Ack, broker.Retry, broker.Kill, broker.Requeue, broker.Start} {
		held := settle(t, b, broker.Settlement{Queue: q, Session: "A", Token: 1, ID: "m1", Outcome: o, Body: []byte("changed")})
		if held[0] {
			t.Fatalf("outcome %d of a reclaimed lease applied", o)
		}
	}
	if r, s, d := rdb.ZCard(ctx, q.Recovering).Val(), rdb.ZCard(ctx, q.Scheduled).Val(), rdb.ZCard(ctx, q.Dead).Val(); r != 1 || s != 0 || d != 0 {
		t.Fatalf("after late settles: recovering %d scheduled %d dead %d, want 1 0 0", r, s, d)
	}
	if rec := rdb.HGet(ctx, q.Records, "m1").Val(); rec != "body-m1" {
		t.Fatalf("record became %q", rec)
	}
	if n := rdb.HGet(ctx, q.Recovered, "m1").Val(); n != "1" {
		t.Fatalf("recovery count %q after A's late ack, want 1", n)
	}
	if beat, err := b.Heartbeat(ctx, "A", ttl, false, []*broker.Queue{q}); err != nil || !beat[0].Lost {
		t.Fatalf("A's heartbeat = %+v, %v; want the lost lease reported", beat, err)
	}
	if got, err := b.Fetch(ctx, "A", ttl, []broker.FetchRequest{{Queue: q, N: 1}}); err != nil || !errors.Is(got[0].Err, broker.ErrLeaseLost) {
		t.Fatalf("A's fetch = %+v, %v; want ErrLeaseLost", got, err)
	}
	// B runs it (a recovering task, given only when asked), seeing one recovery;
	// its ack clears everything.
	if got := fetch(t, b, "B", time.Minute, broker.FetchRequest{Queue: q, N: 10, TokenBase: 100}); len(got.Tasks) != 0 {
		t.Fatalf("B got %v without asking for recovering tasks", ids(got.Tasks))
	}
	got = fetch(t, b, "B", time.Minute, broker.FetchRequest{Queue: q, N: 10, TokenBase: 200, Recovering: true})
	if len(got.Tasks) != 1 || got.Tasks[0].ID != "m1" || got.Tasks[0].Recovered != 1 || string(got.Tasks[0].Body) != "body-m1" {
		t.Fatalf("B fetch = %+v", got)
	}
	if held := settle(t, b, broker.Settlement{Queue: q, Session: "B", Token: 201, ID: "m1", Outcome: broker.Ack}); !held[0] {
		t.Fatal("B's ack was refused")
	}
	if n := rdb.Exists(ctx, q.Recovered, q.Pending, q.PendingSlots, q.PendingLanes, q.PendingList("2048"), q.Recovering, q.Records).Val(); n != 0 {
		t.Fatalf("%d keys remain after the ack", n)
	}
	if l, err := b.Leases(ctx, q, "B"); len(l) != 0 || err != nil {
		t.Fatalf("leases remain after the ack: %v, %v", l, err)
	}
}

// The leases of one fetch share its token (base+1); a lease is the pair of
// task id and token, so a settlement of an earlier lease of the same task, in
// the same session, applies no more once the task was given back and leased
// again by a later fetch.
func TestLeaseIsTheTaskAndItsFetchsToken(t *testing.T) {
	t.Parallel()
	b, q, _ := setup(t)
	enqueue(t, b, q, msg("a", 2048), msg("b", 2048))
	register(t, b, q, "S", time.Minute)
	first := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 2, TokenBase: 0, StartNow: 2})
	if len(first.Tasks) != 2 || first.Tasks[0].Token != 1 || first.Tasks[1].Token != 1 {
		t.Fatalf("first fetch %+v, want a and b with token 1", first.Tasks)
	}
	settle(t, b, broker.Settlement{Queue: q, Session: "S", Token: 1, ID: "a", Outcome: broker.Requeue})
	again := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 1, TokenBase: 2, StartNow: 1})
	if len(again.Tasks) != 1 || again.Tasks[0].ID != "a" || again.Tasks[0].Token != 3 {
		t.Fatalf("second fetch %+v, want a with token 3", again.Tasks)
	}
	held := settle(t, b,
		broker.Settlement{Queue: q, Session: "S", Token: 1, ID: "a", Outcome: broker.Ack}, // the first lease of a
		broker.Settlement{Queue: q, Session: "S", Token: 1, ID: "b", Outcome: broker.Ack},
		broker.Settlement{Queue: q, Session: "S", Token: 3, ID: "a", Outcome: broker.Start},
	)
	if !slices.Equal(held, []bool{false, true, true}) {
		t.Fatalf("held %v, want the stale settlement of a refused", held)
	}
}

// A fetch whose reply is lost and which is sent again leases nothing
// new: the second run answers what the first leased, so no task sits in a lease
// under a token the worker never learned.
func TestFetchSentTwiceAnswersTheSame(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	enqueue(t, b, q, msg("a", 2048), msg("b", 2048), msg("c", 2048), msg("d", 2048), msg("e", 2048))
	register(t, b, q, "S", time.Minute)
	r := broker.FetchRequest{Queue: q, N: 2, TokenBase: 10, StartNow: 1}
	first := fetch(t, b, "S", time.Minute, r)
	again := fetch(t, b, "S", time.Minute, r)
	if !slices.Equal(ids(first.Tasks), []string{"a", "b"}) || !slices.Equal(ids(again.Tasks), ids(first.Tasks)) || !again.Repeat {
		t.Fatalf("first %v, again %v (repeat %v)", ids(first.Tasks), ids(again.Tasks), again.Repeat)
	}
	if first.Tasks[0].Token != 11 || again.Tasks[1].Token != 11 || !again.Tasks[0].Started || again.Tasks[1].Started {
		t.Fatalf("tokens/started differ: %+v", again.Tasks)
	}
	if l, err := b.Leases(ctx, q, "S"); len(l) != 2 || err != nil {
		t.Fatalf("lease holds %v (%v), want 2", l, err)
	}
	if p := pendingIDs(t, b, q); !slices.Equal(p, []string{"c", "d", "e"}) {
		t.Fatalf("pending %v", p)
	}
	// Leave gives back what the session holds unstarted (here "b", as if the
	// reply had been lost for good), and stays while a started task is held.
	if n, err := b.Leave(ctx, q, "S"); n != 1 || err != nil {
		t.Fatalf("leave = %d, %v; want 1 started task stranded", n, err)
	}
	if p := pendingIDs(t, b, q); !slices.Equal(p, []string{"b", "c", "d", "e"}) {
		t.Fatalf("pending after leave %v, want b back in front", p)
	}
	settle(t, b, broker.Settlement{Queue: q, Session: "S", Token: 11, ID: "a", Outcome: broker.Ack})
	if n, err := b.Leave(ctx, q, "S"); n != 0 || err != nil {
		t.Fatalf("leave = %d, %v", n, err)
	}
	if rdb.ZScore(ctx, q.Workers, "S").Err() != redis.Nil {
		t.Fatal("session still registered after leaving")
	}
}

// An enqueue call re-sent with the same guard (go-redis retrying after a lost
// reply) writes nothing and answers as the first run did; an id that exists is
// refused, and so is the second of two messages with one id.
func TestEnqueueIsIdempotent(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	added, err := b.Enqueue(ctx, q, []broker.Message{msg("x", 2048), msg("y", 2048), msg("x", 2048)})
	if err != nil || len(added) != 3 || !added[0].Added() || !added[1].Added() || added[2].Code != broker.StatusExists {
		t.Fatalf("added %v, %v", added, err)
	}
	if added, err := b.Enqueue1(ctx, q, msg("y", 2048)); added.Added() || err != nil {
		t.Fatalf("duplicate id: added %v, %v", added, err)
	}
	// The same call run twice, by hand.
	for range 2 {
		src := mustRead(t, "scripts/enqueue.lua")
		s, err := rdb.Eval(ctx, src, []string{q.Records, q.Pending, q.Scheduled, q.Seq, q.Pending + ":guardtest"},
			q.Channel, 7, broker.Epoch, q.Prefix, "z", 2048, 0, "body-z", "").Text()
		if err != nil || s != "1" {
			t.Fatalf("guarded call = %q, %v; want 1 both times", s, err)
		}
	}
	if p := pendingIDs(t, b, q); !slices.Equal(p, []string{"x", "y", "z"}) {
		t.Fatalf("pending %v", p)
	}
}

// Pending holds a list per priority slot: lower slots go first, each in
// enqueue order. What a producer of protocol version 2 put in the zset
// NS:{Q}:pending (with its sequence) is fetched before them, and its sequence
// is deleted once that zset is empty, as its enqueue expects.
func TestPendingByPriorityAndThePreviousFormat(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	enqueue(t, b, q, msg("lo-1", 2048), msg("hi-1", 2047), msg("lo-2", 2048))
	enqueue(t, b, q, msg("hi-2", 2047))
	if err := rdb.ZAdd(ctx, q.Pending, redis.Z{Score: 2049 * (1 << 41), Member: "v2-low"}).Err(); err != nil {
		t.Fatal(err)
	}
	rdb.HSet(ctx, q.Records, "v2-low", "m")
	rdb.Set(ctx, q.Seq, 1, 0)
	want := []string{"v2-low", "hi-1", "hi-2", "lo-1", "lo-2"}
	if p := pendingIDs(t, b, q); !slices.Equal(p, want) {
		t.Fatalf("pending %v, want %v", p, want)
	}
	register(t, b, q, "S", time.Minute)
	got := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 3})
	if !slices.Equal(ids(got.Tasks), want[:3]) {
		t.Fatalf("fetched %v, want %v", ids(got.Tasks), want[:3])
	}
	if n := rdb.Exists(ctx, q.Pending, q.Seq, q.PendingList("2047")).Val(); n != 0 {
		t.Fatalf("%d emptied keys remain", n)
	}
	if s := rdb.ZRange(ctx, q.PendingLanes, 0, -1).Val(); !slices.Equal(s, []string{"2048"}) {
		t.Fatalf("slots %v, want only 2048 left", s)
	}
	got = fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 2, TokenBase: 10})
	if !slices.Equal(ids(got.Tasks), want[3:]) || rdb.Exists(ctx, q.PendingLanes, q.PendingList("2048")).Val() != 0 {
		t.Fatalf("fetched %v; slots %v", ids(got.Tasks), rdb.ZRange(ctx, q.PendingLanes, 0, -1).Val())
	}
}

func TestRetryKillRequeue(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	enqueue(t, b, q, msg("r", 2051), msg("k", 2051), msg("q", 2051), msg("later", 2051))
	register(t, b, q, "S", time.Minute)
	got := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 3})
	if !slices.Equal(ids(got.Tasks), []string{"r", "k", "q"}) {
		t.Fatalf("fetch = %v", ids(got.Tasks))
	}
	held := settle(t, b,
		broker.Settlement{Queue: q, Session: "S", Token: 1, ID: "r", Outcome: broker.Retry, Body: []byte("r2"), Delay: time.Hour},
		broker.Settlement{Queue: q, Session: "S", Token: 1, ID: "k", Outcome: broker.Kill, Body: []byte("k-dead")},
		broker.Settlement{Queue: q, Session: "S", Token: 1, ID: "q", Outcome: broker.Requeue},
	)
	if !slices.Equal(held, []bool{true, true, true}) {
		t.Fatalf("held %v", held)
	}
	if s := rdb.ZRange(ctx, q.Scheduled, 0, -1).Val(); !slices.Equal(s, []string{"r"}) || rdb.HGet(ctx, q.Records, "r").Val() != "r2" {
		t.Fatalf("scheduled %v", s)
	}
	if d := rdb.ZRange(ctx, q.Dead, 0, -1).Val(); !slices.Equal(d, []string{"k"}) || rdb.HGet(ctx, q.Records, "k").Val() != "k-dead" {
		t.Fatalf("dead %v", d)
	}
	// The requeued task goes back ahead of what was still pending.
	if p := pendingIDs(t, b, q); !slices.Equal(p, []string{"q", "later"}) {
		t.Fatalf("pending %v", p)
	}
	if n, err := b.Leave(ctx, q, "S"); n != 0 || err != nil {
		t.Fatalf("leave = %d, %v", n, err)
	}
	st, err := b.Stats(ctx, []string{"q"})
	if err != nil || st[0] != (broker.QueueStats{Name: "q", Pending: 2, Scheduled: 1, Dead: 1}) {
		t.Fatalf("stats %+v, %v", st, err)
	}
}

// Reclaim puts what a dead session had only prefetched back in
// pending uncounted, and counts only what it had started.
func TestReclaimCountsOnlyStartedTasks(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	enqueue(t, b, q, msg("a", 2048), msg("b", 2048), msg("c", 2048), msg("d", 2048))
	register(t, b, q, "A", 30*time.Millisecond)
	fetch(t, b, "A", 30*time.Millisecond, broker.FetchRequest{Queue: q, N: 3, StartNow: 1}) // a started
	if held := settle(t, b, broker.Settlement{Queue: q, Session: "A", Token: 1, ID: "b", Outcome: broker.Start}); !held[0] {
		t.Fatal("start mark refused")
	}
	var pre, started int
	var ok bool
	var err error
	testredis.WaitFor(t, 5*time.Second, "A's lease to lapse", func() bool { // Redis's clock decides
		pre, started, ok, err = b.Reclaim(ctx, q, "A")
		return ok || err != nil
	})
	if pre != 1 || started != 2 || !ok || err != nil {
		t.Fatalf("reclaim = %d %d %v %v; want 1 prefetched, 2 started", pre, started, ok, err)
	}
	if p := pendingIDs(t, b, q); !slices.Equal(p, []string{"c", "d"}) {
		t.Fatalf("pending %v", p)
	}
	if r := rdb.ZRange(ctx, q.Recovering, 0, -1).Val(); len(r) != 2 || rdb.HLen(ctx, q.Recovered).Val() != 2 || rdb.HExists(ctx, q.Recovered, "c").Val() {
		t.Fatalf("recovering %v, recovered %v", r, rdb.HGetAll(ctx, q.Recovered).Val())
	}
	// Marks are sent without waiting, so a task that kills its worker at once
	// looks unstarted: the second time it comes back so, it counts.
	register(t, b, q, "C", 30*time.Millisecond)
	fetch(t, b, "C", 30*time.Millisecond, broker.FetchRequest{Queue: q, N: 2, TokenBase: 50}) // c, d unmarked
	testredis.WaitFor(t, 5*time.Second, "C's lease to lapse", func() bool {
		pre, started, ok, err = b.Reclaim(ctx, q, "C")
		return ok || err != nil
	})
	if pre != 1 || started != 1 || !ok || err != nil {
		t.Fatalf("second reclaim = %d %d %v %v; want c counted on its second return, d back", pre, started, ok, err)
	}
	if rdb.HGet(ctx, q.Recovered, "c").Val() != "1" || rdb.HGet(ctx, q.Orphaned, "d").Val() != "1" || rdb.HExists(ctx, q.Orphaned, "c").Val() {
		t.Fatalf("recovered %v orphaned %v", rdb.HGetAll(ctx, q.Recovered).Val(), rdb.HGetAll(ctx, q.Orphaned).Val())
	}
	// A worker gets at most one recovering task per fetch.
	register(t, b, q, "B", time.Minute)
	got := fetch(t, b, "B", time.Minute, broker.FetchRequest{Queue: q, N: 10, Recovering: true})
	if len(got.Tasks) != 2 || got.Tasks[0].Recovered != 1 || got.Tasks[1].ID != "d" {
		t.Fatalf("fetch %+v", got.Tasks)
	}
	// An ack clears the counts.
	settle(t, b, broker.Settlement{Queue: q, Session: "B", Token: got.Tasks[1].Token, ID: "d", Outcome: broker.Ack})
	if rdb.HExists(ctx, q.Orphaned, "d").Val() {
		t.Fatal("the ack left d's orphan count")
	}
}

func TestDeadSetIsTrimmedWithItsRecords(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	var msgs []broker.Message
	for i := range 10 {
		msgs = append(msgs, msg(fmt.Sprint(i), 2048))
	}
	enqueue(t, b, q, msgs...)
	register(t, b, q, "S", time.Minute)
	fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 10})
	var ss []broker.Settlement
	for i := range 10 {
		ss = append(ss, broker.Settlement{Queue: q, Session: "S", Token: 1, ID: fmt.Sprint(i), Outcome: broker.Kill, Body: []byte("dead")})
	}
	if _, err := b.Settle(ctx, broker.DeadRetention{MaxAge: time.Hour, MaxLen: 4}, ss); err != nil {
		t.Fatal(err)
	}
	if n, r := rdb.ZCard(ctx, q.Dead).Val(), rdb.HLen(ctx, q.Records).Val(); n != 4 || r != 4 {
		t.Fatalf("dead set holds %d with %d records, want 4 and 4", n, r)
	}
}

// A task is found by id, without its queue, in every state.
func TestFindInEveryState(t *testing.T) {
	t.Parallel()
	b, q, _ := setup(t)
	ctx := context.Background()
	other := b.Queue("other")
	enqueue(t, b, q, msg("p", 2048), msg("a", 2048))
	enqueue(t, b, other, broker.Message{ID: "s", Slot: 2048, Delay: time.Hour, Body: []byte("s")}, msg("k", 2048))
	if err := b.RegisterQueues(ctx, []string{"q", "other"}); err != nil {
		t.Fatal(err)
	}
	register(t, b, q, "S", time.Minute)
	register(t, b, other, "S", time.Minute)
	fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 1})
	fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: other, N: 1, TokenBase: 5})
	settle(t, b, broker.Settlement{Queue: other, Session: "S", Token: 6, ID: "k", Outcome: broker.Kill, Body: []byte("k")})
	for id, want := range map[string]broker.State{"p": broker.StateActive, "a": broker.StatePending, "s": broker.StateScheduled, "k": broker.StateDead} {
		r, err := b.Find(ctx, id, nil)
		if err != nil || r.State != want {
			t.Errorf("find %s = %+v, %v; want %s", id, r, err, want)
		}
	}
	if r, _ := b.Find(ctx, "p", nil); r.Session != "S" || r.Queue != "q" {
		t.Errorf("active task found as %+v", r)
	}
	if _, err := b.Find(ctx, "nope", nil); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
}

// Every key of a queue shares its hash tag, so one queue lives in one cluster slot.
func TestKeysShareTheQueueSlot(t *testing.T) {
	t.Parallel()
	q := broker.New(nil, "ns").Queue("emails")
	for _, k := range []string{q.Records, q.Pending, q.Scheduled, q.Recovering, q.Recovered, q.Dead, q.Seq, q.Workers, q.Lease("w/1")} {
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
	for i := range 2 {
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		enqueue(t, b, q, msg(fmt.Sprint("a", i), 2048), msg(fmt.Sprint("b", i), 2048),
			broker.Message{ID: fmt.Sprint("later", i), Slot: 2048, Delay: time.Hour, Body: []byte("l")})
		if added, err := b.Enqueue1(ctx, q, msg(fmt.Sprint("c", i), 2048)); !added.Added() || err != nil {
			t.Fatal(added, err)
		}
	}
	if p, s := len(pendingIDs(t, b, q)), rdb.ZCard(ctx, q.Scheduled).Val(); p != 6 || s != 2 {
		t.Fatalf("pending %d scheduled %d, want 6 and 2", p, s)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	register(t, b, q, "S", time.Minute)
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	got := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 10})
	if len(got.Tasks) != 6 {
		t.Fatalf("fetch after SCRIPT FLUSH = %+v", got)
	}
	// The due time comes back relative to the server's clock.
	if got.NextDue < 59*time.Minute || got.NextDue > time.Hour {
		t.Fatalf("next due in %v, want about an hour", got.NextDue)
	}
}

// A pipeline that fails as a whole (no command carries the error)
// reports it: enqueues included.
func TestConnectionErrorsAreReported(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer rdb.Close()
	b := broker.New(rdb, "x")
	q := b.Queue("q")
	if _, err := b.Settle(context.Background(), keep, []broker.Settlement{{Queue: q, Session: "S", Token: 1, ID: "a", Outcome: broker.Ack}}); err == nil {
		t.Fatal("an ack on an unreachable Redis reported success")
	}
	// A dial that fails may follow an attempt go-redis already sent: the
	// outcome is unknown, and said so.
	if _, err := b.Enqueue(context.Background(), q, []broker.Message{msg("a", 2048)}); !errors.Is(err, broker.ErrOutcomeUnknown) {
		t.Fatalf("enqueue on an unreachable Redis: %v; want ErrOutcomeUnknown", err)
	}
}

// pendingIDs lists what waits in q's pending, in the order fetch takes it.
func pendingIDs(t *testing.T, b *broker.Broker, q *broker.Queue) []string {
	t.Helper()
	ids, err := b.PendingIDs(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := scriptsFS.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Idle workers wake when a queue goes from empty to non-empty, even after an
// enqueue that added nothing (a duplicate id) to the empty queue.
func TestWakeUpAfterADuplicateIntoAnEmptyQueue(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	ps := rdb.Subscribe(ctx, q.Channel)
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	enqueue(t, b, q, msg("a", 2048))
	if m, err := ps.ReceiveTimeout(ctx, 5*time.Second); err != nil {
		t.Fatalf("no wake-up for the first task: %v %v", m, err)
	}
	register(t, b, q, "S", time.Minute)
	fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 10}) // empties pending
	if added, err := b.Enqueue(ctx, q, []broker.Message{msg("a", 2048)}); err != nil || added[0].Added() {
		t.Fatalf("duplicate: %v %v", added, err)
	}
	if m, err := ps.ReceiveTimeout(ctx, 100*time.Millisecond); err == nil {
		t.Fatalf("a wake-up before anything was added: %v", m)
	}
	enqueue(t, b, q, msg("b", 2048))
	if m, err := ps.ReceiveTimeout(ctx, 5*time.Second); err != nil {
		t.Fatalf("no wake-up after the duplicate: %v %v", m, err)
	}
}

// A settle call whose reply was lost and which the worker sends again changes
// nothing the second time: every outcome answers "not held".
func TestSettleSentTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	enqueue(t, b, q, msg("a", 2048), msg("r", 2048), msg("k", 2048), msg("q", 2048))
	register(t, b, q, "S", time.Minute)
	fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 4, StartNow: 4})
	ss := []broker.Settlement{
		{Queue: q, Session: "S", Token: 1, ID: "a", Outcome: broker.Ack},
		{Queue: q, Session: "S", Token: 1, ID: "r", Outcome: broker.Retry, Body: []byte("r2"), Delay: time.Hour},
		{Queue: q, Session: "S", Token: 1, ID: "k", Outcome: broker.Kill, Body: []byte("k2")},
		{Queue: q, Session: "S", Token: 1, ID: "q", Outcome: broker.Requeue},
	}
	snapshot := func() string {
		var out []string
		for _, k := range []string{q.Records, q.Lease("S")} {
			out = append(out, fmt.Sprint(rdb.HGetAll(ctx, k).Val()))
		}
		for _, k := range []string{q.Pending, q.Scheduled, q.Dead} {
			out = append(out, fmt.Sprint(rdb.ZRange(ctx, k, 0, -1).Val()))
		}
		return strings.Join(out, " | ")
	}
	if held := settle(t, b, ss...); !slices.Equal(held, []bool{true, true, true, true}) {
		t.Fatalf("first run: %v", held)
	}
	after := snapshot()
	if held := settle(t, b, ss...); !slices.Equal(held, []bool{false, false, false, false}) {
		t.Fatalf("second run: %v", held)
	}
	if again := snapshot(); again != after {
		t.Fatalf("the second run changed\n%s\ninto\n%s", after, again)
	}
}

// Find reads a task in one moment: never its record without its meta, as a
// settle run between two of its reads would show (a finishing task seen
// waiting, with no retention: Wait then failed with ErrNotRetained). It loops,
// on the package's Redis and on a miniredis of its own, which serves each
// command of a pipeline on its own and so interleaves other clients' scripts
// between them far more often than redis-server does.
func TestFindNeverSeesHalfASettle(t *testing.T) {
	t.Parallel()
	servers := map[string]func(t testing.TB) *redis.Client{
		"package Redis": testredis.Client,
		"miniredis": func(t testing.TB) *redis.Client {
			mr := miniredis.RunT(t)
			c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
			t.Cleanup(func() { c.Close() })
			return c
		},
	}
	for name, client := range servers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rdb := client(t)
			b := broker.New(rdb, testredis.Namespace(t))
			q := b.Queue("q")
			ctx := context.Background()
			register(t, b, q, "S", time.Minute)
			deadline := time.Now().Add(20 * time.Second)
			for i := range 300 {
				if time.Now().After(deadline) {
					t.Logf("stopped after %d rounds: out of time", i)
					break
				}
				id := fmt.Sprintf("t%d", i)
				enqueue(t, b, q, broker.Message{ID: id, Slot: 2048, Body: []byte(id), Retention: time.Minute})
				got := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 1, TokenBase: uint64(i), StartNow: 1})
				if len(got.Tasks) != 1 {
					t.Fatalf("round %d: fetched %d tasks", i, len(got.Tasks))
				}
				settled := make(chan error, 1)
				go func() {
					_, err := b.Settle(ctx, keep, []broker.Settlement{{Queue: q, Session: "S", Token: got.Tasks[0].Token, ID: id,
						Outcome: broker.Ack, Attempt: &broker.Attempt{Started: time.Now(), Worker: "S", Result: []byte("r")}}})
					settled <- err
				}()
				for done := false; !done; {
					r, err := b.Find(ctx, id, []string{"q"})
					if err != nil {
						t.Fatalf("round %d: find: %v", i, err)
					}
					switch {
					case r.State == broker.StateFinished:
						done = true
					case r.State != broker.StateActive || r.Meta.Retention != time.Minute:
						t.Fatalf("round %d: found the task %s with retention %v: half settled", i, r.State, r.Meta.Retention)
					}
				}
				if err := <-settled; err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// Plain acks of one fetch's tasks go as one "m" outcome (settle.lua): each
// answers for itself, a task with a meta (here a unique lock) is finished as
// an ack is, a lease not held answers false, and an id acked twice in the
// run applies once.
func TestManyAcksInOneOutcome(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	locked := msg("u", 2048)
	locked.Lock, locked.LockTTL = broker.UniqueLock("digest"), time.Hour
	enqueue(t, b, q, msg("a", 2048), locked, msg("c", 2048))
	register(t, b, q, "S", time.Minute)
	got := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 3, TokenBase: 40, StartNow: 3})
	if len(got.Tasks) != 3 {
		t.Fatalf("fetched %v", ids(got.Tasks))
	}
	ack := func(id string, tok uint64) broker.Settlement {
		return broker.Settlement{Queue: q, Session: "S", Token: tok, ID: id, Outcome: broker.Ack}
	}
	held := settle(t, b, ack("a", 41), ack("u", 41), ack("gone", 41), ack("a", 41), ack("c", 41))
	if !slices.Equal(held, []bool{true, true, false, false, true}) {
		t.Fatalf("held %v, want a, u and c once, the unknown and the second a not", held)
	}
	if n := rdb.HLen(ctx, q.Records).Val(); n != 0 {
		t.Fatalf("%d records left", n)
	}
	if n := rdb.HLen(ctx, q.Lease("S")).Val(); n != 1 { // the fetch marker
		t.Fatalf("%d lease fields left, want the marker only", n)
	}
	if rdb.Exists(ctx, q.Prefix+"uniq:digest").Val() != 0 {
		t.Fatal("the unique lock of the acked task stayed")
	}
}

// Acks alone on a plain queue take settle.lua's short way (runs read and
// deleted straight from ARGV): an id acked twice applies once, runs of two
// fetches' tokens go in one call, and a lease not held sends the whole call
// the general way, which answers per outcome.
func TestPlainAcksTakeTheShortWay(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	enqueue(t, b, q, msg("a", 2048), msg("b", 2048), msg("c", 2048))
	register(t, b, q, "S", time.Minute)
	first := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 2, TokenBase: 10, StartNow: 2})
	second := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 1, TokenBase: 20, StartNow: 1})
	if !slices.Equal(ids(first.Tasks), []string{"a", "b"}) || !slices.Equal(ids(second.Tasks), []string{"c"}) {
		t.Fatalf("fetched %v, %v", ids(first.Tasks), ids(second.Tasks))
	}
	ack := func(id string, tok uint64) broker.Settlement {
		return broker.Settlement{Queue: q, Session: "S", Token: tok, ID: id, Outcome: broker.Ack}
	}
	if held := settle(t, b, ack("a", 11), ack("a", 11), ack("c", 21), ack("b", 11)); !slices.Equal(held, []bool{true, false, true, true}) {
		t.Fatalf("held %v, want the second a alone not held", held)
	}
	if n := rdb.HLen(ctx, q.Records).Val(); n != 0 {
		t.Fatalf("%d records left", n)
	}
	if n := rdb.HLen(ctx, q.Lease("S")).Val(); n != 1 { // the fetch marker
		t.Fatalf("%d lease fields left, want the marker only", n)
	}
	// A lease not held (acked above) among held ones: the general way.
	enqueue(t, b, q, msg("d", 2048))
	third := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 1, TokenBase: 30, StartNow: 1})
	if held := settle(t, b, ack("d", 31), ack("b", 11)); !slices.Equal(held, []bool{true, false}) || len(third.Tasks) != 1 {
		t.Fatalf("held %v, want d held and b not", held)
	}
	if n := rdb.HLen(ctx, q.Records).Val(); n != 0 {
		t.Fatalf("%d records left", n)
	}
}

// A fetch of one lane's plain tasks answers two arrays (ids, messages); when a
// record went missing meanwhile it takes the general way, which drops that
// task and leases the others, in order, with their messages.
func TestFetchDropsATaskWhoseRecordIsGone(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	flow := func(id string) broker.Message { m := msg(id, 2048); m.Flow = "f"; return m }
	enqueue(t, b, q, flow("a"), flow("b"), flow("c"), flow("d"))
	register(t, b, q, "S", time.Minute)
	got := fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 2, TokenBase: 0, StartNow: 1})
	if !slices.Equal(ids(got.Tasks), []string{"a", "b"}) || string(got.Tasks[1].Body) != "body-b" ||
		!got.Tasks[0].Started || got.Tasks[1].Started {
		t.Fatalf("fetched %+v", got.Tasks)
	}
	if err := rdb.HDel(ctx, q.Records, "c").Err(); err != nil {
		t.Fatal(err)
	}
	got = fetch(t, b, "S", time.Minute, broker.FetchRequest{Queue: q, N: 2, TokenBase: 2, StartNow: 2})
	if !slices.Equal(ids(got.Tasks), []string{"d"}) || string(got.Tasks[0].Body) != "body-d" {
		t.Fatalf("fetched %+v, want d alone", got.Tasks)
	}
	lease := rdb.HGetAll(ctx, q.Lease("S")).Val()
	if _, ok := lease["c"]; ok || len(lease) != 4 { // a, b, d and the marker
		t.Fatalf("leases %v", lease)
	}
}
