package broker_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq/internal/broker"
)

var fzLoose = map[string]bool{}
var fzMu = make(chan struct{}, 1)

type fzTask struct {
	slot int
	flow string
}

func fzCheck(t *testing.T, rdb *redis.Client, q *broker.Queue, model map[string]fzTask, step int, op string) {
	t.Helper()
	fzMu <- struct{}{}
	defer func() { <-fzMu }()
	ctx := context.Background()
	where := map[string][]string{}
	keys := rdb.Keys(ctx, q.Prefix+"*").Val()
	lanes := map[string]bool{}
	for _, z := range []string{q.PendingLanes, q.PendingBlocked, q.PendingSlots} {
		for _, s := range rdb.ZRange(ctx, z, 0, -1).Val() {
			lanes[s] = true
		}
	}
	for _, k := range keys {
		if strings.HasPrefix(k, q.Pending+":") && rdb.Type(ctx, k).Val() == "list" {
			lane := strings.TrimPrefix(k, q.Pending+":")
			l := rdb.LRange(ctx, k, 0, -1).Val()
			if len(l) > 0 && !lanes[lane] {
				t.Fatalf("step %d (%s): list of lane %q (%v) in no zset", step, op, lane, l)
			}
			for _, id := range l {
				where[id] = append(where[id], "lane "+lane)
				if m, ok := model[id]; ok {
					ws, wf := lane, ""
					if b := strings.IndexByte(lane, '|'); b >= 0 {
						ws, wf = lane[:b], lane[b+1:]
					}
					if wf == "" && wf != m.flow && fzLoose[q.Prefix] {
						m.flow = "?"
						model[id] = m
					}
					if ws != strconv.Itoa(m.slot) || (wf != m.flow && m.flow != "?") {
						t.Fatalf("step %d (%s): %s (slot %d flow %q) in lane %q", step, op, id, m.slot, m.flow, lane)
					}
				}
			}
		}
		if strings.HasPrefix(k, q.Prefix+"lease:") {
			sess := strings.TrimPrefix(k, q.Prefix+"lease:")
			for id, v := range rdb.HGetAll(ctx, k).Val() {
				if id == "" {
					continue
				}
				where[id] = append(where[id], "lease "+sess)
				parts := strings.SplitN(v, ":", 4)
				sc, _ := strconv.ParseFloat(parts[2], 64)
				slot := int(sc / float64(int64(1)<<41))
				flow := ""
				if len(parts) == 4 {
					flow = parts[3]
				}
				if m, ok := model[id]; ok && (slot != m.slot || (flow != m.flow && m.flow != "?")) {
					t.Fatalf("step %d (%s): %s (slot %d flow %q) leased as %q", step, op, id, m.slot, m.flow, v)
				}
			}
		}
	}
	for _, z := range []string{q.Pending, q.Scheduled, q.Recovering, q.Dead} {
		for _, id := range rdb.ZRange(ctx, z, 0, -1).Val() {
			where[id] = append(where[id], z)
		}
	}
	for id := range rdb.HGetAll(ctx, q.Records).Val() {
		if len(where[id]) != 1 {
			t.Fatalf("step %d (%s): %s is in %v", step, op, id, where[id])
		}
	}
	// lim:run equals the S leases.
	s := map[string]int{}
	for _, k := range keys {
		if strings.HasPrefix(k, q.Prefix+"lease:") {
			for id, v := range rdb.HGetAll(ctx, k).Val() {
				if id != "" && v[0] == 'S' {
					p := strings.SplitN(v, ":", 4)
					s[p[3]]++
				}
			}
		}
	}
	run := rdb.HGetAll(ctx, q.Prefix+"lim:run").Val()
	for f, n := range run {
		if strconv.Itoa(s[f]) != n {
			t.Fatalf("step %d (%s): lim:run %v, S leases %v", step, op, run, s)
		}
	}
	for f, n := range s {
		if run[f] != strconv.Itoa(n) {
			t.Fatalf("step %d (%s): lim:run %v, S leases %v", step, op, run, s)
		}
	}
	// A lane waiting for a slot: its flow is at its limit.
	for _, z := range rdb.ZRangeWithScores(ctx, q.PendingBlocked, 0, -1).Val() {
		lane := z.Member.(string)
		if z.Score == float64(int64(1)<<41) {
			flow := lane[strings.IndexByte(lane, '|')+1:]
			if !rdb.SIsMember(ctx, q.Prefix+"lim:cwait:"+flow, lane).Val() {
				t.Fatalf("step %d (%s): %s waits, not in cwait", step, op, lane)
			}
			n, _ := strconv.Atoi(run[flow])
			if n == 0 {
				t.Fatalf("step %d (%s): %s waits for a slot, none running (%v)", step, op, lane, run)
			}
		}
	}
}

// fuzzSeeds is how many seeds each limits fuzzer runs: 6, or REDIQ_TEST_FUZZ_SEEDS
// (the review that wrote them ran 40).
func fuzzSeeds() int {
	if n, err := strconv.Atoi(os.Getenv("REDIQ_TEST_FUZZ_SEEDS")); err == nil && n > 0 {
		return n
	}
	return 6
}

// fuzzCase shapes a fuzzer run.
type fuzzCase struct {
	steps      int  // random operations
	enqueueMax int  // tasks per enqueue call, at most
	manyKeys   bool // half the tasks get one of 300 limit keys per type
	fetchMax   int  // tasks per fetch, at most
	drainMax   int  // fetches to drain the queue, at most
	checkEvery int  // while draining, check the invariants every this many fetches
	// batch: settlements go in calls of 1 to 8, sorted by session and token as
	// the settler's flushes are (so plain acks of one fetch go as one "m"
	// outcome), now and then one sent twice in a call; repeat: one fetch in
	// three is sent again with its token base (its reply lost) and must answer
	// the same leases, field by field.
	batch, repeat bool
}

// TestFuzz runs random mixes of version-4 and version-3 enqueues and
// fetches, settles, reclaims, heartbeats, cancels, deletes, requeues, purges
// and limit changes on one queue, and checks after every step that each task
// is in exactly one place with its own slot and flow, every non-empty list is
// indexed, and lim:run equals the S leases; at the end every task drains.
func TestFuzz(t *testing.T) {
	runFuzz(t, fuzzCase{steps: 600, enqueueMax: 4, fetchMax: 6, drainMax: 200, checkEvery: 1})
}

// TestFuzzMany is TestFuzz with up to 300 limit keys per type and fetches
// of up to 300, so that fetch's caps on lanes looked at and passed over, its
// position and the lanes' turns are exercised.
func TestFuzzMany(t *testing.T) {
	runFuzz(t, fuzzCase{steps: 300, enqueueMax: 60, manyKeys: true, fetchMax: 300, drainMax: 3000, checkEvery: 50})
}

// TestFuzzBatched is TestFuzz with settlements in batches (runs of plain acks
// as settle.lua's "m") and fetches sent twice (written by a review of
// protocol version 5).
func TestFuzzBatched(t *testing.T) {
	runFuzz(t, fuzzCase{steps: 600, enqueueMax: 4, fetchMax: 6, drainMax: 200, checkEvery: 1, batch: true, repeat: true})
}

func runFuzz(t *testing.T, c fuzzCase) {
	for seed := range fuzzSeeds() {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			t.Parallel()
			fuzzOne(t, int64(seed), c)
		})
	}
}

func fuzzOne(t *testing.T, seed int64, c fuzzCase) {
	b, q, rdb := setup(t)
	ctx := context.Background()
	r := rand.New(rand.NewSource(seed))
	v3enqueue := oldScript(t, "enqueue", false)
	v3fetch := oldScript(t, "fetch", true)
	setLimit(t, b, q, "a", broker.Limit{Concurrency: 2})
	setLimit(t, b, q, "b", broker.Limit{Rate: 3, Per: 300 * time.Millisecond})
	setLimit(t, b, q, "d", broker.Limit{Rate: 2, Per: time.Second, Concurrency: 1})
	flows := []string{"", "", "a", "a|k1", "a|k:2", "b", "b|x", "c", "d", "a|k|z"}
	slots := []int{0, 2048, 2048, 4095}
	model := map[string]fzTask{}
	sessions := []string{"A", "B"}
	for _, s := range append(sessions, "old") {
		register(t, b, q, s, time.Minute)
	}
	type held struct {
		sess string
		tok  uint64
		id   string
	}
	var leases []held
	base := map[string]uint64{}
	n := 0
	for step := range c.steps {
		op := ""
		switch k := r.Intn(19); {
		case k >= 17:
			nn := 1 + r.Intn(4)
			rec := "0"
			if r.Intn(2) == 0 {
				rec = "1"
			}
			res, err := v3fetch.Run(ctx, rdb,
				[]string{q.Records, q.Pending, q.Scheduled, q.Recovering, q.Recovered, q.Workers, q.Lease("old"), q.Seq},
				nn, base["old"], "old", 60000, q.Channel, broker.Epoch, rec, r.Intn(nn+1), q.Prefix).Slice()
			if err != nil {
				t.Fatal(err)
			}
			for i := 3; i+5 < len(res); i += 6 {
				leases = append(leases, held{"old", uint64(res[i].(int64)), res[i+1].(string)})
				m := model[res[i+1].(string)]
				m.flow = "?"
				model[res[i+1].(string)] = m
			}
			base["old"] += uint64(nn)
			op = fmt.Sprintf("v3 fetch %v", res)
			fzMu <- struct{}{}
			fzLoose[q.Prefix] = true
			<-fzMu

		case k == 12:
			id := fmt.Sprintf("t%d", 1+r.Intn(n+1))
			var err error
			if r.Intn(2) == 0 {
				_, err = b.Cancel(ctx, q, id)
				op = "cancel " + id
			} else {
				err = b.Delete(ctx, q, id)
				op = "delete " + id
			}
			if err != nil && !errors.Is(err, broker.ErrNotFound) && !errors.Is(err, broker.ErrFinished) && !errors.Is(err, broker.ErrActive) {
				t.Fatalf("%s: %v", op, err)
			}
		case k == 13:
			for _, id := range rdb.ZRange(ctx, q.Dead, 0, 2).Val() {
				m := model[id]
				if _, err := b.Requeue(ctx, q, []broker.Requeued{{ID: id, Slot: m.slot, Flow: m.flow, Body: []byte("y")}}); err != nil {
					t.Fatal(err)
				}
			}
			op = "requeue"
		case k == 14:
			if _, err := b.PurgePending(ctx, q, 1+r.Intn(3)); err != nil {
				t.Fatal(err)
			}
			op = "purge"
		case k == 15:
			typ := []string{"a", "b", "d", "c"}[r.Intn(4)]
			l := []broker.Limit{{}, {Concurrency: 1}, {Concurrency: 3}, {Rate: 2, Per: 200 * time.Millisecond}, {Rate: 1, Per: time.Second, Concurrency: 2}}[r.Intn(5)]
			if _, err := b.SetLimit(ctx, q, typ, l); err != nil {
				t.Fatal(err)
			}
			op = fmt.Sprintf("limit %s %+v", typ, l)
		case k == 16:
			var ms []broker.Message
			for range 1 + r.Intn(3) {
				n++
				m := msg(fmt.Sprintf("t%d", n), slots[r.Intn(len(slots))])
				m.Flow = flows[r.Intn(len(flows))]
				m.ExpireIn = time.Duration(1+r.Intn(40)) * time.Millisecond
				model[m.ID] = fzTask{m.Slot, m.Flow}
				ms = append(ms, m)
			}
			enqueue(t, b, q, ms...)
			op = "enqueue expiring"

		case k < 3:
			var ms []broker.Message
			for range 1 + r.Intn(c.enqueueMax) {
				n++
				m := msg(fmt.Sprintf("t%d", n), slots[r.Intn(len(slots))])
				m.Flow = flows[r.Intn(len(flows))]
				if c.manyKeys && r.Intn(2) == 0 {
					m.Flow = fmt.Sprintf("%s|k%d", []string{"a", "b", "c", "d"}[r.Intn(4)], r.Intn(300))
				}
				if r.Intn(6) == 0 {
					m.Delay = time.Duration(r.Intn(30)) * time.Millisecond
				}
				model[m.ID] = fzTask{m.Slot, m.Flow}
				ms = append(ms, m)
			}
			enqueue(t, b, q, ms...)
			op = "enqueue"
		case k == 3:
			n++
			id := fmt.Sprintf("t%d", n)
			slot := slots[r.Intn(len(slots))]
			model[id] = fzTask{slot, ""}
			if _, err := v3enqueue.Run(ctx, rdb, []string{q.Records, q.Pending, q.Scheduled, q.Seq},
				q.Channel, "", broker.Epoch, q.Prefix, id, slot, 0, "body-"+id, "").Result(); err != nil {
				t.Fatal(err)
			}
			op = "v3 enqueue"
		case k == 4:
			n++
			id := fmt.Sprintf("t%d", n)
			slot := slots[r.Intn(len(slots))]
			model[id] = fzTask{slot, ""}
			seq := rdb.Incr(ctx, q.Seq).Val()
			rdb.HSet(ctx, q.Records, id, "body-"+id)
			rdb.ZAdd(ctx, q.Pending, redis.Z{Score: float64(int64(slot)<<41 + seq), Member: id})
			op = "v2 enqueue"
		case k < 8:
			s := sessions[r.Intn(len(sessions))]
			nn := 1 + r.Intn(c.fetchMax)
			req := broker.FetchRequest{Queue: q, N: nn, TokenBase: base[s], StartNow: r.Intn(nn + 1), Recovering: r.Intn(2) == 0}
			base[s] += uint64(nn)
			got := fetch(t, b, s, time.Minute, req)
			for _, tk := range got.Tasks {
				leases = append(leases, held{s, tk.Token, tk.ID})
			}
			if c.repeat && len(got.Tasks) > 0 && r.Intn(3) == 0 {
				again := fetch(t, b, s, time.Minute, req)
				if !again.Repeat || len(again.Tasks) != len(got.Tasks) {
					t.Fatalf("step %d: repeat of %v answered %v (repeat %v)", step, ids(got.Tasks), ids(again.Tasks), again.Repeat)
				}
				first := map[string]broker.Leased{}
				for _, tk := range got.Tasks {
					first[tk.ID] = tk
				}
				for _, tk := range again.Tasks {
					f, ok := first[tk.ID]
					if !ok || f.Token != tk.Token || f.Started != tk.Started || f.Recovered != tk.Recovered ||
						(f.ExpiresIn >= 0) != (tk.ExpiresIn >= 0) || string(f.Body) != string(tk.Body) {
						t.Fatalf("step %d: repeat answered %+v for %+v", step, tk, f)
					}
				}
			}
			op = fmt.Sprintf("fetch %s n=%d start=%d rec=%v -> %v", s, nn, req.StartNow, req.Recovering, ids(got.Tasks))
		case k < 10:
			if len(leases) == 0 {
				continue
			}
			var ss []broker.Settlement
			outs := []broker.Outcome{broker.Ack, broker.Requeue, broker.Retry, broker.Kill, broker.Start}
			calls := 1
			if c.batch {
				outs = append(outs, broker.Ack, broker.Ack) // runs of acks
				calls = 1 + r.Intn(8)
			}
			for range calls {
				if len(leases) == 0 {
					break
				}
				i := r.Intn(len(leases))
				h := leases[i]
				o := outs[r.Intn(len(outs))]
				if o != broker.Start {
					leases = append(leases[:i], leases[i+1:]...)
				}
				ss = append(ss, broker.Settlement{Queue: q, Session: h.sess, Token: h.tok, ID: h.id, Outcome: o, Body: []byte("x")})
				if c.batch && r.Intn(6) == 0 { // sent twice in the call
					ss = append(ss, ss[len(ss)-1])
				}
			}
			if c.batch {
				slices.SortStableFunc(ss, func(x, y broker.Settlement) int {
					return cmp.Or(strings.Compare(x.Session, y.Session), cmp.Compare(x.Token, y.Token))
				})
			}
			settle(t, b, ss...)
			op = fmt.Sprintf("settle %v", ss)
		case k == 10:
			// a session dies and is reclaimed
			s := sessions[r.Intn(len(sessions))]
			rdb.ZAdd(ctx, q.Workers, redis.Z{Score: 0, Member: s})
			if _, _, ok, err := b.Reclaim(ctx, q, s); !ok || err != nil {
				t.Fatal(ok, err)
			}
			var keep []held
			for _, h := range leases {
				if h.sess != s {
					keep = append(keep, h)
				}
			}
			leases = keep
			register(t, b, q, s, time.Minute)
			op = "reclaim " + s
		default:
			rdb.Del(ctx, q.Prefix+"lim:recount")
			register(t, b, q, sessions[r.Intn(len(sessions))], time.Minute)
			op = "heartbeat"
		}
		fzCheck(t, rdb, q, model, step, op)
		if r.Intn(20) == 0 {
			time.Sleep(40 * time.Millisecond)
		}
	}
	// Drain: every task comes out.
	for _, typ := range []string{"a", "b", "c", "d"} {
		if _, err := b.SetLimit(ctx, q, typ, broker.Limit{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range leases {
		settle(t, b, broker.Settlement{Queue: q, Session: h.sess, Token: h.tok, ID: h.id, Outcome: broker.Ack})
	}
	time.Sleep(50 * time.Millisecond)
	for i := range c.drainMax {
		got := fetch(t, b, "A", time.Minute, broker.FetchRequest{Queue: q, N: 50, TokenBase: base["A"], StartNow: 50, Recovering: true})
		base["A"] += 50
		for _, tk := range got.Tasks {
			settle(t, b, broker.Settlement{Queue: q, Session: "A", Token: tk.Token, ID: tk.ID, Outcome: broker.Ack})
		}
		if i%c.checkEvery == 0 {
			fzCheck(t, rdb, q, model, 1000+i, "drain")
		}
		if len(got.Tasks) == 0 && rdb.Exists(ctx, q.Scheduled, q.Recovering).Val() == 0 {
			break
		}
		if len(got.Tasks) == 0 { // until the earliest scheduled task or blocked lane is due
			time.Sleep(min(max(got.NextDue, time.Millisecond), 50*time.Millisecond))
		}
	}
	dead := rdb.ZCard(ctx, q.Dead).Val()
	if left := rdb.HLen(ctx, q.Records).Val(); left != dead {
		for id := range rdb.HGetAll(ctx, q.Records).Val() {
			for _, k := range rdb.Keys(ctx, q.Prefix+"lease:*").Val() {
				if v := rdb.HGet(ctx, k, id).Val(); v != "" {
					t.Logf("%s in %s: %s", id, k, v)
				}
			}
			for _, z := range []string{q.Pending, q.Scheduled, q.Recovering, q.Dead} {
				if rdb.ZScore(ctx, z, id).Err() == nil {
					t.Logf("%s in %s", id, z)
				}
			}
			t.Logf("%s: keys %v", id, rdb.Keys(ctx, q.Prefix+"pending*").Val())
			break
		}
		t.Fatalf("after draining, %d records left (%d dead): lanes %v blocked %v slots %v", left, dead,
			rdb.ZRange(ctx, q.PendingLanes, 0, -1).Val(), rdb.ZRangeWithScores(ctx, q.PendingBlocked, 0, -1).Val(), rdb.ZRange(ctx, q.PendingSlots, 0, -1).Val())
	}
}
