package worker_test

import (
	"context"
	"errors"
	"hash/fnv"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// OverlapSkip must fire again once the previous tick's task has ended. A task
// that ended dead (its retries used up) neither waits nor runs, but its
// record stays in NS:{Q}:records (the dead set keeps records), and
// cron_claim.lua's "HEXISTS records task" then skips every later tick for as
// long as the dead entry is kept (30 days by default).
func TestOverlapSkipFiresAgainAfterADeadTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var mu sync.Mutex
	runs := 0
	task := rediq.Register(e.app, "deadjob", func(ctx context.Context, _ int) (int, error) {
		mu.Lock()
		runs++
		first := runs == 1
		mu.Unlock()
		if first {
			return 0, errors.New("boom: this run goes dead")
		}
		return 0, nil
	}, rediq.Queue("skipdead"), rediq.Retries(0))
	if err := e.app.Schedule("skipdead", "@every 200ms", task.With(0), rediq.WithOverlap(rediq.OverlapSkip)); err != nil {
		t.Fatal(err)
	}
	e.start(e.app, worker.Config{Queues: []string{"skipdead"}, SkipDefaultQueue: true, Concurrency: 2})
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return runs
	}
	testredis.WaitFor(t, 10*time.Second, "the first run", func() bool { return count() >= 1 })
	// The first run failed with no retries left: it is dead, not waiting or
	// running. Ticks every 200 ms must fire again.
	deadline := time.Now().Add(5 * time.Second)
	for count() < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := count(); n < 2 {
		skipped, _ := e.rdb.HGet(context.Background(), e.ns+":{skipdead}:cron:skipdead", "skipped").Result()
		t.Fatalf("OverlapSkip schedule ran %d time(s) in 5 s of 200 ms ticks after its task went dead; last skipped tick %s", n, skipped)
	}
}

// tickJitter is the delay worker.cronDue gives a tick (jitter shorter than the interval).
func tickJitter(id string, tick time.Time, jitter time.Duration) time.Duration {
	h := fnv.New64a()
	h.Write([]byte(id))
	h.Write([]byte(strconv.FormatInt(tick.UnixMilli(), 10)))
	return time.Duration(h.Sum64() % uint64(jitter))
}

// A worker that starts after a tick is due but before its jittered firing
// time (every worker restarted: a deploy, or the only worker) must still fire
// that tick: it is not late. cronLoop's start-up check compares now with the
// tick without its jitter, takes it for an outage older than cronLate, and
// with CatchUpNone never fires it (with CatchUpLatest it fires it at once,
// ignoring the jitter).
func TestJitteredTickFiresAfterARestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const every, jitter = 10 * time.Second, 9 * time.Second
	// The worker's clock is skewed so that it starts 6 s after tick T1
	// (past cronLate, 5 s) whose jitter is at least 8 s: T1 is due to fire
	// 2-3 s after the worker starts.
	real := time.Now()
	t1 := real.Truncate(every).Add(-100 * every)
	var id string
	for i := 0; ; i++ {
		id = "jit" + strconv.Itoa(i)
		if j := tickJitter(id, t1, jitter); j >= 8*time.Second {
			break
		}
	}
	task := rediq.Register(e.app, "jitjob", func(context.Context, int) (int, error) { return 0, nil }, rediq.Queue("jitq"))
	if err := e.app.Schedule(id, "@every 10s", task.With(0), rediq.Jitter(jitter), rediq.CatchUp(rediq.CatchUpNone)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	key := e.ns + ":{jitq}:cron:" + id
	// T0 was fired: the schedule is live, nothing was missed.
	e.rdb.HSet(ctx, key, "last", t1.Add(-every).UnixMilli())
	skew := t1.Add(6 * time.Second).Sub(time.Now())
	e.start(e.app, worker.WithClockSkew(worker.Config{Queues: []string{"jitq"}, SkipDefaultQueue: true, Concurrency: 1}, skew))
	want := t1.UnixMilli()
	deadline := time.Now().Add(8 * time.Second) // T1 fires ≤ 3 s after the start; T2 not before 10 s
	var last int64
	for time.Now().Before(deadline) {
		last, _ = e.rdb.HGet(ctx, key, "last").Int64()
		if last >= want {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if last != want {
		t.Fatalf("tick %d (jitter %v, the worker started %v after it) was not fired within 8 s; last claimed %d",
			want, tickJitter(id, t1, jitter), 6*time.Second, last)
	}
}

// Jitter larger than the schedule's interval (accepted by App.Schedule) loses
// ticks in steady state, with every worker up: cronLoop fires tick N at
// N+j(N), then finds tick N+1's time N+1+j(N+1) more than cronLate in the
// past and takes the "slept through ticks" path, which with CatchUpNone fires
// nothing (with CatchUpLatest only Prev(now)). Ticks are fired in order, so a
// jitter past the interval must not make the next tick "late".
func TestJitterLongerThanTheIntervalLosesNoTick(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const every, jitter = time.Second, 8 * time.Second
	t1 := time.Now().Truncate(every).Add(3 * every)
	t2 := t1.Add(every)
	var id string
	for i := 0; ; i++ {
		id = "big" + strconv.Itoa(i)
		if tickJitter(id, t1, jitter) >= 7*time.Second && tickJitter(id, t2, jitter) < 500*time.Millisecond {
			break
		}
	}
	var mu sync.Mutex
	ran := map[int64]bool{}
	task := rediq.Register(e.app, "bigjob", func(ctx context.Context, _ int) (int, error) {
		_, at, _ := rediq.ScheduledTick(ctx)
		mu.Lock()
		ran[at.UnixMilli()] = true
		mu.Unlock()
		return 0, nil
	}, rediq.Queue("bigq"))
	if err := e.app.Schedule(id, "@every 1s", task.With(0), rediq.Jitter(jitter), rediq.CatchUp(rediq.CatchUpNone)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The tick before T1 was fired: the worker goes on from there, in order.
	e.rdb.HSet(ctx, e.ns+":{bigq}:cron:"+id, "last", t1.Add(-every).UnixMilli())
	e.start(e.app, worker.Config{Queues: []string{"bigq"}, SkipDefaultQueue: true, Concurrency: 2})
	has := func(tk time.Time) bool {
		mu.Lock()
		defer mu.Unlock()
		return ran[tk.UnixMilli()]
	}
	testredis.WaitFor(t, 20*time.Second, "tick T1", func() bool { return has(t1) })
	deadline := time.Now().Add(3 * time.Second)
	for !has(t2) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !has(t2) {
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("tick T2 %d (jitter %v) never fired after T1 %d (jitter %v); ticks run: %v",
			t2.UnixMilli(), tickJitter(id, t2, jitter), t1.UnixMilli(), tickJitter(id, t1, jitter), ran)
	}
}
