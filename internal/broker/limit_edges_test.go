package broker_test

// Review of the limits commit (159c085..14f62ac). Each test shows one bug.

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq/internal/broker"
)

// A task fired by a schedule (cron_fire: FireCron) loses its flow: FireCron
// passes m.Slot where enqueue.lua now takes the lane (Message.lane()), so
// the task waits in the slot's own lane and its type's limits never apply.
func TestCronFiredTaskKeepsItsFlow(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	setLimit(t, b, q, "a", broker.Limit{Concurrency: 1})
	for _, id := range []string{"c1", "c2"} {
		if _, err := b.FireCron(ctx, q, "sched", 0, false, flowMsg(id, "a")); err != nil {
			t.Fatal(err)
		}
	}
	if lanes := rdb.ZRange(ctx, q.PendingLanes, 0, -1).Val(); !slices.Equal(lanes, []string{"2048|a"}) {
		t.Errorf("lanes %v, want [2048|a]: the fired task lost its flow", lanes)
	}
	register(t, b, q, "A", time.Minute)
	got := fetch(t, b, "A", time.Minute, broker.FetchRequest{Queue: q, N: 10, StartNow: 10})
	if len(got.Tasks) != 1 {
		t.Fatalf("fetched %v; Concurrency(1) allows one", ids(got.Tasks))
	}
}

// A fetch that may start nothing (StartNow 0: every runner busy) passes over
// limited lanes; past 256 of them it stops and answers More, so the worker
// marks the queue ready and fetches again at once — the same 256 lanes, the
// same empty answer, More again: a hot loop of fetches while the runners are
// busy (e.g. 300 limit keys of one limited type with a backlog).
func TestPrefetchOverManyLimitedLanesDoesNotAskForMore(t *testing.T) {
	t.Parallel()
	b, q, _ := setup(t)
	setLimit(t, b, q, "a", broker.Limit{Rate: 1000, Per: time.Second})
	var ms []broker.Message
	for i := range 300 {
		ms = append(ms, flowMsg(fmt.Sprintf("k%d", i), fmt.Sprintf("a|k%d", i)))
	}
	enqueue(t, b, q, ms...)
	register(t, b, q, "A", time.Minute)
	for i := range 3 {
		f := fetch(t, b, "A", time.Minute, broker.FetchRequest{Queue: q, N: 10, TokenBase: uint64(100 * i), StartNow: 0})
		if len(f.Tasks) == 0 && f.More {
			t.Fatalf("fetch %d without a runner took nothing and can take nothing, yet answered More (WaitRunner %v): the worker fetches again at once, forever", i, f.WaitRunner)
		}
	}
}

// A fetch sent again (its reply lost) answers NextDue from scheduled only:
// the time a lane it blocked by its rate is looked at again is lost, and so
// are the WaitRunner / More flags. The worker then has no timer for the lane
// (until a heartbeat marks the queue ready).
func TestRepeatedFetchKeepsBlockedLaneDue(t *testing.T) {
	t.Parallel()
	b, q, _ := setup(t)
	setLimit(t, b, q, "a", broker.Limit{Rate: 1, Per: 10 * time.Second})
	enqueue(t, b, q, flowMsg("a1", "a"), flowMsg("a2", "a"))
	register(t, b, q, "A", time.Minute)
	r := broker.FetchRequest{Queue: q, N: 10, TokenBase: 7, StartNow: 10}
	first := fetch(t, b, "A", time.Minute, r)
	if len(first.Tasks) != 1 || first.NextDue < 9*time.Second {
		t.Fatalf("first fetch %v, NextDue %s", ids(first.Tasks), first.NextDue)
	}
	again := fetch(t, b, "A", time.Minute, r)
	if !again.Repeat {
		t.Fatal("not a repeat")
	}
	if again.NextDue < 9*time.Second {
		t.Fatalf("the repeated answer's NextDue = %s; the first said %s (the blocked lane's time)", again.NextDue, first.NextDue)
	}
}

// A lane in pending:slots whose list is gone (evicted, deleted by hand) used
// to be dropped by fetch (version 3: DEL + ZREM). For a rate-limited flow,
// fetch now calls account(flow, l, 0): RPUSH with no value, an error — after
// the lanes before it were already LTRIMmed: their tasks are in no list and
// under no lease.
func TestEmptyLimitedLaneDoesNotLoseTasks(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	setLimit(t, b, q, "a", broker.Limit{Rate: 10, Per: time.Second})
	enqueue(t, b, q, flowMsg("b1", "b"))
	// A lane of a whose list is gone, behind b's.
	rdb.ZAdd(ctx, q.PendingLanes, redis.Z{Score: 2048*(1<<40) + (1<<40 - 1), Member: "2048|a"})
	register(t, b, q, "A", time.Minute)
	got, err := b.Fetch(ctx, "A", time.Minute, []broker.FetchRequest{{Queue: q, N: 10, StartNow: 10}})
	if err != nil {
		t.Errorf("fetch: %v", err)
	}
	if err == nil && slices.Equal(ids(got[0].Tasks), []string{"b1"}) {
		return
	}
	leased := rdb.HExists(ctx, q.Lease("A"), "b1").Val()
	inList := slices.Contains(rdb.LRange(ctx, q.PendingList("2048|b"), 0, -1).Val(), "b1")
	t.Fatalf("b1 leased %v, in its lane %v: lost", leased, inList)
}

// oldScript is a script of the previous protocol version (version 3, commit
// 90de399), with its lib.lua, as a worker or producer of that version runs it.
func oldScript(t *testing.T, name string, withLib bool) *redis.Script {
	t.Helper()
	read := func(f string) string {
		out, err := exec.Command("git", "-C", "../..", "show", "90de399:internal/broker/scripts/"+f+".lua").Output()
		if err != nil {
			t.Skipf("git show of the version-3 %s.lua: %v", f, err)
		}
		return string(out)
	}
	src := read(name) + "\n"
	if withLib {
		src = read("lib") + "\n" + src
	}
	return redis.NewScript(src)
}

// A worker of version 3 still running when a producer of version 4 enqueues
// (lanes "SLOT|FLOW"): its fetch pops a recovering task (ZPOPMIN), reaches
// the lane, computes tonumber("2048|a") * P and fails — the popped task is
// in no index and under no lease: lost. (Every fetch of that worker fails
// from then on.)
func TestVersion3FetchBesideVersion4Lanes(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	// r1: started by a worker that died, now in recovering.
	enqueue(t, b, q, msg("r1", 2048))
	register(t, b, q, "dead", time.Minute)
	fetch(t, b, "dead", time.Minute, broker.FetchRequest{Queue: q, N: 1, StartNow: 1})
	rdb.ZAdd(ctx, q.Workers, redis.Z{Score: 0, Member: "dead"})
	if _, _, ok, err := b.Reclaim(ctx, q, "dead"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	// A version-4 producer's task.
	enqueue(t, b, q, flowMsg("a1", "a"))
	register(t, b, q, "old", time.Minute)
	v3fetch := oldScript(t, "fetch", true)
	_, err := v3fetch.Run(ctx, rdb,
		[]string{q.Records, q.Pending, q.Scheduled, q.Recovering, q.Recovered, q.Workers, q.Lease("old"), q.Seq},
		10, 0, "old", 60000, q.Channel, broker.Epoch, "1", 10, q.Prefix).Result()
	t.Logf("version-3 fetch: %v", err)
	rec := rdb.ZScore(ctx, q.Recovering, "r1").Err() == nil
	leased := rdb.HExists(ctx, q.Lease("old"), "r1").Val()
	if !rec && !leased {
		t.Fatalf("r1 is in no index and under no lease after the version-3 fetch (err %v): lost", err)
	}
}

// A version-3 worker reclaiming a version-4 session reads "S:TOK:SCORE:FLOW"
// as an unstarted lease at the default priority and never frees the
// concurrency slot: lim:run keeps it for good, and at the limit the flow's
// lanes stay blocked forever.
func TestVersion3ReclaimFreesConcurrencySlot(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	setLimit(t, b, q, "a", broker.Limit{Concurrency: 1})
	enqueue(t, b, q, flowMsg("a1", "a"), flowMsg("a2", "a"))
	register(t, b, q, "new", time.Minute)
	if got := fetch(t, b, "new", time.Minute, broker.FetchRequest{Queue: q, N: 10, StartNow: 10}); len(got.Tasks) != 1 {
		t.Fatalf("fetched %v", ids(got.Tasks))
	}
	rdb.ZAdd(ctx, q.Workers, redis.Z{Score: 0, Member: "new"})
	v3reclaim := oldScript(t, "reclaim", true)
	if _, err := v3reclaim.Run(ctx, rdb,
		[]string{q.Workers, q.Lease("new"), q.Pending, q.Recovering, q.Recovered, q.Orphaned, q.Prefix + "workers", q.Prefix + "active"},
		"new", q.Channel, broker.Epoch).Result(); err != nil {
		t.Fatal(err)
	}
	// The next heartbeat of a version-4 worker counts the slots again.
	register(t, b, q, "other", time.Minute)
	if r := running(t, b, q); len(r) != 0 {
		t.Fatalf("running %v after the session was reclaimed (by a version-3 worker): the slot leaked, a2 never runs", r)
	}
	if got := fetch(t, b, "other", time.Minute, broker.FetchRequest{Queue: q, N: 10, StartNow: 10}); len(got.Tasks) != 2 {
		t.Fatalf("fetched %v; want a2 and a1 (given back by the version-3 reclaim)", ids(got.Tasks))
	}
}

// A version-3 producer (still deployed while workers run version 4) adds
// its slot's lane with score SLOT (enqueue.lua of version 3: ZADD slots s s);
// version 4 orders lanes by SLOT*2^40 + ms, so a version-3 lane of the
// lowest priority comes before a version-4 lane of the highest.
func TestVersion3ProducerKeepsPriorityOrder(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	high := flowMsg("high", "a")
	high.Slot = 0
	enqueue(t, b, q, high) // a version-4 producer, highest priority
	v3enqueue := oldScript(t, "enqueue", false)
	if _, err := v3enqueue.Run(ctx, rdb, []string{q.Records, q.Pending, q.Scheduled, q.Seq},
		q.Channel, "", broker.Epoch, q.Prefix, "low", 4095, 0, "body-low", "").Result(); err != nil {
		t.Fatal(err)
	}
	register(t, b, q, "A", time.Minute)
	got := fetch(t, b, "A", time.Minute, broker.FetchRequest{Queue: q, N: 1, StartNow: 1})
	if !slices.Equal(ids(got.Tasks), []string{"high"}) {
		t.Fatalf("fetched %v first; want the priority-0 task (lanes %v)", ids(got.Tasks),
			rdb.ZRangeWithScores(ctx, q.PendingLanes, 0, -1).Val())
	}
}

// An enqueue into a lane that is blocked by its limit wakes every idle
// worker when no lane is fetchable (wasEmpty = EXISTS pending:slots == 0):
// each enqueue into a rate-limited backlog makes every idle worker fetch,
// for nothing (the lane stays blocked).
func TestEnqueueIntoBlockedLaneDoesNotWake(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	setLimit(t, b, q, "a", broker.Limit{Rate: 1, Per: time.Hour})
	enqueue(t, b, q, flowMsg("a1", "a"), flowMsg("a2", "a"))
	register(t, b, q, "A", time.Minute)
	fetch(t, b, "A", time.Minute, broker.FetchRequest{Queue: q, N: 10, StartNow: 10})
	if bl := rdb.ZRange(ctx, q.PendingBlocked, 0, -1).Val(); len(bl) != 1 {
		t.Fatalf("blocked %v", bl)
	}
	sub := rdb.Subscribe(ctx, q.Channel)
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		enqueue(t, b, q, flowMsg(fmt.Sprintf("a%d", 3+i), "a"))
	}
	n := 0
	for {
		m, err := sub.ReceiveTimeout(ctx, 200*time.Millisecond)
		if err != nil {
			break
		}
		if _, ok := m.(*redis.Message); ok {
			n++
		}
	}
	if n > 0 {
		t.Fatalf("%d wake-ups for 5 tasks enqueued into a blocked lane (nothing became fetchable)", n)
	}
}
