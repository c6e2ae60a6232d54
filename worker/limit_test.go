package worker_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// limitArgs is what the limited tasks of these tests take: how long to run.
type limitArgs struct {
	SleepMs int
}

// registerLimited registers the limited tasks on app, on the queue "limits".
// Each logs its start ("TYPE KEY ID PID UNIXNANO") in NS:starts and its end
// ("ID PID UNIXNANO") in NS:ends, and counts its run in the hash NS:done.
func registerLimited(app *rediq.App, ns string) map[string]*rediq.Task[limitArgs, int] {
	run := func(name string) func(context.Context, limitArgs) (int, error) {
		return func(ctx context.Context, a limitArgs) (int, error) {
			info, _ := rediq.CurrentTask(ctx)
			key := info.LimitKey
			if key == "" {
				key = "-"
			}
			start := fmt.Sprintf("%s %s %s %d %d", name, key, info.ID, os.Getpid(), time.Now().UnixNano())
			if err := app.Redis().RPush(ctx, ns+":starts", start).Err(); err != nil {
				return 0, err
			}
			select {
			case <-time.After(time.Duration(a.SleepMs) * time.Millisecond):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			end := fmt.Sprintf("%s %d %d", info.ID, os.Getpid(), time.Now().UnixNano())
			p := app.Redis().TxPipeline()
			p.RPush(ctx, ns+":ends", end)
			p.HIncrBy(ctx, ns+":done", string(info.ID), 1)
			_, err := p.Exec(ctx)
			return 0, err
		}
	}
	q := rediq.Queue("limits")
	return map[string]*rediq.Task[limitArgs, int]{
		"fast": rediq.Register(app, "lim.fast", run("lim.fast"), q, rediq.RateLimit(1000, time.Second)),
		"slow": rediq.Register(app, "lim.slow", run("lim.slow"), q, rediq.RateLimit(50, time.Second)),
		"conc": rediq.Register(app, "lim.conc", run("lim.conc"), q, rediq.Concurrency(5)),
		"key":  rediq.Register(app, "lim.key", run("lim.key"), q, rediq.Concurrency(1)),
		"warm": rediq.Register(app, "lim.warm", run("lim.warm"), q),
	}
}

func limitChild(app *rediq.App) int {
	registerLimited(app, os.Getenv("REDIQ_TEST_NS"))
	ttl := envDuration("REDIQ_TEST_LEASE_TTL")
	w, err := worker.New(app, worker.Config{Queues: []string{"limits"}, SkipDefaultQueue: true, Concurrency: 20,
		LeaseTTL: ttl, Name: "limit-" + strconv.Itoa(os.Getpid())})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	err = w.Run(context.Background()) // returns only if it fails: the parent kills us
	fmt.Fprintln(os.Stderr, "limit worker:", err)
	return 4
}

type limitStart struct {
	typ, key, id string
	pid          int
	at           int64 // Unix ns
}

func (e *env) limitStarts() []limitStart {
	var out []limitStart
	for _, s := range e.rdb.LRange(context.Background(), e.ns+":starts", 0, -1).Val() {
		f := strings.Fields(s)
		pid, _ := strconv.Atoi(f[3])
		at, _ := strconv.ParseInt(f[4], 10, 64)
		out = append(out, limitStart{f[0], f[1], f[2], pid, at})
	}
	slices.SortFunc(out, func(a, b limitStart) int { return int(a.at - b.at) })
	return out
}

// maxInWindow is the most starts of ats (sorted, ns) in any window [t, t+per).
func maxInWindow(ats []int64, per time.Duration) int {
	most, j := 0, 0
	for i := range ats {
		for j < len(ats) && ats[j] < ats[i]+per.Nanoseconds() {
			j++
		}
		most = max(most, j-i)
	}
	return most
}

// Rate limits hold across processes: five worker processes run tasks limited
// to 1000/s and 50/s from a backlog; in every sliding window of a second at
// most 1000 (50) start — the limit, no burst — and at least 95% of the limit
// is used while the backlog lasts: the mean time from a start to the n-th
// after it is at most per/0.95.
func TestRateLimitIsPreciseAcrossWorkers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tasks := registerLimited(e.app, e.ns)
	ctx := context.Background()
	for range 5 {
		startChild(t, e, "limit", "REDIQ_TEST_LEASE_TTL=5s")
	}
	// The workers are warmed up first (the first tasks of a new process start
	// late, their goroutines and connections new): the figures are the
	// limiter's, not a cold start's.
	warm := make([]limitArgs, 500)
	if _, err := tasks["warm"].EnqueueMany(ctx, warm); err != nil {
		t.Fatal(err)
	}
	testredis.WaitFor(t, 30*time.Second, "the warm-up tasks", func() bool {
		return e.rdb.HLen(ctx, e.ns+":done").Val() == int64(len(warm))
	})
	const seconds = 4
	fast := make([]limitArgs, 1000*seconds)
	slow := make([]limitArgs, 50*seconds)
	if _, err := tasks["fast"].EnqueueMany(ctx, fast); err != nil {
		t.Fatal(err)
	}
	if _, err := tasks["slow"].EnqueueMany(ctx, slow); err != nil {
		t.Fatal(err)
	}
	total := len(warm) + len(fast) + len(slow)
	lq := e.queue("limits")
	deadline := time.Now().Add(60 * time.Second)
	for e.rdb.HLen(ctx, e.ns+":done").Val() != int64(total) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d tasks ran in 60 s; lanes %v, blocked %v", e.rdb.HLen(ctx, e.ns+":done").Val(), total,
				e.rdb.ZRangeWithScores(ctx, lq.PendingLanes, 0, -1).Val(), e.rdb.ZRangeWithScores(ctx, lq.PendingBlocked, 0, -1).Val())
		}
		time.Sleep(20 * time.Millisecond)
	}
	starts := e.limitStarts()
	for _, c := range []struct {
		typ string
		n   int
	}{{"lim.fast", 1000}, {"lim.slow", 50}} {
		var ats []int64
		for _, s := range starts {
			if s.typ == c.typ {
				ats = append(ats, s.at)
			}
		}
		most := maxInWindow(ats, time.Second)
		// The rate while tasks waited: n starts per the mean time from a
		// start to the n-th after it (a window of exactly per is 100%).
		var gaps time.Duration
		for i := 0; i+c.n < len(ats); i++ {
			gaps += time.Duration(ats[i+c.n] - ats[i])
		}
		used := time.Second.Seconds() / (gaps.Seconds() / float64(len(ats)-c.n))
		span := time.Duration(ats[len(ats)-1] - ats[0])
		t.Logf("%s: %d starts in %s; most in any 1s window %d (limit %d, overshoot %.2f%%); %.1f%% of the limit used",
			c.typ, len(ats), span.Round(time.Millisecond), most, c.n, 100*float64(most-c.n)/float64(c.n), 100*used)
		if !testredis.Real() {
			// An in-process fake that shares the CPU with the whole suite:
			// the starts' spacing says little about the limit.
			t.Logf("%s: on miniredis the timing is not checked (run with redis-server for it)", c.typ)
			continue
		}
		// The limit is kept when tasks are fetched, with a margin of 2.5% of
		// the window for the time to their handlers. Under the race detector
		// five processes on a two-core machine start some handlers far later
		// than that (seen: up to 66 of 50 in a window; 54 and 59 at earlier
		// commits): there the check is only that the limit holds at all;
		// .ci/run runs this test again without the race detector, where the
		// precise bounds apply.
		over, use := 0.01, 0.95
		if raceDetector {
			over, use = 0.50, 0.80
		}
		if float64(most) > float64(c.n)*(1+over) {
			t.Errorf("%s: %d starts in a 1s window, limit %d (+%.0f%%)", c.typ, most, c.n, 100*over)
		}
		if used < use {
			t.Errorf("%s: %.1f%% of the limit used while tasks waited, want ≥ %.0f%%", c.typ, 100*used, 100*use)
		}
	}
}

// Concurrency limits survive crashes: three worker processes are SIGKILLed at
// random while they run tasks limited to 5 at once and, per limit key, 1 at
// once. The handlers' own log shows no moment with more running than the
// limit (a killed process's tasks count as running until it died), every
// task ran, none is dead, and the slots a killed worker held are freed once
// its lease is reclaimed.
func TestConcurrencyLimitSurvivesKills(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tasks := registerLimited(e.app, e.ns)
	ctx := context.Background()
	const ttl = time.Second
	var want []string
	for i := range 250 {
		id, err := tasks["conc"].Enqueue(ctx, limitArgs{SleepMs: 30 + rand.IntN(70)})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, string(id))
		key := "k" + strconv.Itoa(i%5)
		id, err = tasks["key"].Enqueue(ctx, limitArgs{SleepMs: 20 + rand.IntN(40)}, rediq.LimitKey(key))
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, string(id))
	}
	children := make([]*child, 3)
	for i := range children {
		children[i] = startChild(t, e, "limit", "REDIQ_TEST_LEASE_TTL="+ttl.String())
	}
	died := map[int]int64{} // pid -> when it was killed (Unix ns)
	done := func() bool { return e.rdb.HLen(ctx, e.ns+":done").Val() == int64(len(want)) }
	deadline := time.Now().Add(90 * time.Second)
	kills := 0
	for !done() && time.Now().Before(deadline) && kills < 12 {
		time.Sleep(time.Duration(300+rand.IntN(500)) * time.Millisecond)
		i := rand.IntN(len(children))
		pid := children[i].cmd.Process.Pid
		if err := children[i].cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-children[i].exited
		died[pid] = time.Now().UnixNano()
		kills++
		children[i] = startChild(t, e, "limit", "REDIQ_TEST_LEASE_TTL="+ttl.String())
	}
	testredis.WaitFor(t, 60*time.Second, "every task to run", done)
	testredis.WaitFor(t, 3*ttl, "every concurrency slot to be freed", func() bool {
		return e.rdb.Exists(ctx, e.queue("limits").Prefix+"lim:run").Val() == 0
	})
	if n := e.rdb.ZCard(ctx, e.queue("limits").Dead).Val(); n != 0 {
		t.Fatalf("%d tasks dead", n)
	}
	ends := map[string]int64{} // "ID PID" -> end
	for _, s := range e.rdb.LRange(ctx, e.ns+":ends", 0, -1).Val() {
		f := strings.Fields(s)
		at, _ := strconv.ParseInt(f[2], 10, 64)
		ends[f[0]+" "+f[1]] = at
	}
	type edge struct {
		at    int64
		delta int
	}
	byFlow := map[string][]edge{}
	limit := map[string]int{}
	stall := time.Duration(0) // the longest wait of a flow after a kill took its slot
	starts := e.limitStarts()
	for i, s := range starts {
		if s.typ != "lim.conc" && s.typ != "lim.key" {
			continue
		}
		flow, lim := s.typ, 5
		if s.typ == "lim.key" {
			flow, lim = s.typ+"|"+s.key, 1
		}
		limit[flow] = lim
		end, ok := ends[s.id+" "+strconv.Itoa(s.pid)]
		if !ok {
			if end, ok = died[s.pid]; !ok {
				t.Fatalf("task %s started on %d, which neither ended it nor was killed", s.id, s.pid)
			}
			// The next start of its flow waited for the slot to be freed.
			for _, n := range starts[i+1:] {
				if n.typ == s.typ && n.key == s.key && n.at > end {
					stall = max(stall, time.Duration(n.at-end))
					break
				}
			}
		}
		byFlow[flow] = append(byFlow[flow], edge{s.at, 1}, edge{end, -1})
	}
	for flow, es := range byFlow {
		// Ends before starts at the same instant: a slot freed is taken.
		slices.SortFunc(es, func(a, b edge) int {
			if a.at != b.at {
				return int(a.at - b.at)
			}
			return a.delta - b.delta
		})
		n, most := 0, 0
		for _, x := range es {
			n += x.delta
			most = max(most, n)
		}
		if most > limit[flow] {
			t.Errorf("%s: %d running at once, limit %d", flow, most, limit[flow])
		}
		t.Logf("%s: %d runs, at most %d at once (limit %d)", flow, len(es)/2, most, limit[flow])
	}
	t.Logf("%d SIGKILLs; a flow whose slot a killed worker held started again at most %s after the kill (LeaseTTL %s)", kills, stall, ttl)
	if stall > 3*ttl {
		t.Errorf("a killed worker's slot was freed %s after the kill; LeaseTTL is %s", stall, ttl)
	}
}

// No head-of-line blocking: a backlog of a million tasks of one limit key,
// held back by its limit, stands before each trial's task of another key and
// of another (unlimited) task in the same queue; each starts within 10 ms
// (p99 of 100 trials) on an idle worker. REDIQ_TEST_HOL_N sets the backlog
// (1,000,000 on a real redis-server, 20,000 on miniredis).
func TestLimitedBacklogDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	n := 1_000_000
	if !testredis.Real() {
		n = 20_000
	}
	if v, err := strconv.Atoi(os.Getenv("REDIQ_TEST_HOL_N")); err == nil && v > 0 {
		n = v
	}
	started := make(chan time.Time, 10)
	run := func(ctx context.Context, a limitArgs) (int, error) {
		if a.SleepMs >= 0 {
			started <- time.Now()
		}
		return 0, nil
	}
	q := rediq.Queue("hol")
	held := rediq.Register(e.app, "hol.limited", run, q, rediq.RateLimit(1, time.Hour))
	other := rediq.Register(e.app, "hol.other", run, q)
	backlog := make([]limitArgs, 10_000)
	for i := range backlog {
		backlog[i].SleepMs = -1 // not reported
	}
	begin := time.Now()
	for i := 0; i < n; i += len(backlog) {
		if _, err := held.EnqueueMany(ctx, backlog[:min(len(backlog), n-i)], rediq.LimitKey("big")); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d tasks of key big enqueued in %s", n, time.Since(begin).Round(time.Millisecond))
	e.start(e.app, worker.Config{Queues: []string{"hol"}, SkipDefaultQueue: true, Concurrency: 10})
	testredis.WaitFor(t, 30*time.Second, "the backlog's one allowed start", func() bool {
		return e.rdb.Exists(ctx, e.queue("hol").PendingBlocked).Val() == 1
	})
	// 100 trials; a second 100 if the first's p99 is over: a machine busy
	// with other tests delays the odd start by itself, while a backlog in the
	// way would slow every trial of both.
	trial := 0
	for round := range 2 {
		var lat []time.Duration
		for range 100 {
			trial++
			sent := time.Now()
			var err error
			if trial%2 == 0 {
				_, err = held.Enqueue(ctx, limitArgs{}, rediq.LimitKey("trial"+strconv.Itoa(trial)))
			} else {
				_, err = other.Enqueue(ctx, limitArgs{})
			}
			if err != nil {
				t.Fatal(err)
			}
			select {
			case at := <-started:
				lat = append(lat, at.Sub(sent))
			case <-time.After(10 * time.Second):
				t.Fatalf("trial %d: the task did not start within 10 s", trial)
			}
		}
		slices.Sort(lat)
		p99 := lat[len(lat)*99/100]
		t.Logf("behind %d held tasks: enqueue to start p50 %s, p99 %s, max %s", n, lat[len(lat)/2], p99, lat[len(lat)-1])
		// Under the race detector, beside the other packages' tests, a
		// trial now and then waits on a collection of the million tasks'
		// garbage: a blocked head of line would take seconds, not this.
		want := 10 * time.Millisecond
		if raceDetector {
			want = 150 * time.Millisecond
		}
		if p99 <= want || !testredis.Real() { // miniredis: timing not checked
			break
		}
		if round == 1 {
			t.Errorf("p99 %s behind the held backlog, in two rounds of 100; want ≤ %s", p99, want)
		}
	}
	if pending := e.pendingLen("hol"); pending != int64(n-1) {
		t.Errorf("%d pending; want the backlog less its one start (%d)", pending, n-1)
	}
}
