package worker_test

import (
	"context"
	"errors"
	"fmt"
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

type batchArgs struct {
	N     int
	Lines int
	Sleep time.Duration
}

type batchRow struct {
	N    int
	Part string
}

// registerBatchTasks registers the batch tests' tasks, in the test and in its
// child workers: "echo" prints Lines lines ("n=N line=I at=UNIXMICRO"), sleeps,
// collects a row into table "extra" and returns two rows (table "rows");
// starts and ctx cancellations are recorded in NS:bstarts / NS:bcancelled.
// "done" (OnComplete) counts its runs in NS:oncomplete.
func registerBatchTasks(app *rediq.App) (echo *rediq.Task[batchArgs, []batchRow], done *rediq.Task[int64, int]) {
	ns := app.Namespace()
	rdb := app.Redis()
	echo = rediq.Register(app, "echo", func(ctx context.Context, a batchArgs) ([]batchRow, error) {
		info, _ := rediq.CurrentTask(ctx)
		rdb.RPush(context.Background(), ns+":bstarts", string(info.ID))
		rdb.HIncrBy(context.Background(), ns+":bexec", info.Worker, 1)
		for i := range a.Lines {
			rediq.Printf(ctx, "n=%d line=%d at=%d", a.N, i, time.Now().UnixMicro())
		}
		if a.Sleep > 0 {
			select {
			case <-time.After(a.Sleep):
			case <-ctx.Done():
				rdb.RPush(context.Background(), ns+":bcancelled", fmt.Sprintf("%s %v", info.ID, errors.Is(context.Cause(ctx), rediq.ErrBatchStopped)))
				return nil, ctx.Err()
			}
		}
		if err := rediq.Collect(ctx, "extra", batchRow{a.N, "collected"}); err != nil {
			return nil, err
		}
		return []batchRow{{a.N, "a"}, {a.N, "b"}}, nil
	}, rediq.Queue("batch"), rediq.ResultTable("rows"), rediq.Retries(0))
	done = rediq.Register(app, "done", func(ctx context.Context, id int64) (int, error) {
		return 0, rdb.Incr(context.Background(), ns+":oncomplete").Err()
	}, rediq.Queue("batch"))
	return echo, done
}

func TestBatchOutputTablesAndOnComplete(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	echo, done := registerBatchTasks(e.app)
	for range 2 {
		startChild(t, e, "batch")
	}
	e.start(e.app, worker.Config{Concurrency: 20}) // the third worker

	b1, err := e.app.NewBatch(ctx, rediq.BatchOptions{OnComplete: done.With(1)})
	if err != nil {
		t.Fatal(err)
	}
	defer b1.Close()
	b2, err := e.app.NewBatch(ctx, rediq.BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	if b2.ID() != b1.ID()+1 {
		t.Fatalf("batch ids %d, %d: want consecutive", b1.ID(), b2.ID())
	}
	type got struct {
		lines []rediq.OutputLine
		lat   []time.Duration
		err   error
	}
	follow := func(b *rediq.Batch) chan got {
		ch := make(chan got, 1)
		go func() {
			var g got
			fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			for l, err := range b.Lines(fctx) {
				if err != nil {
					g.err = err
					break
				}
				now := time.Now()
				g.lines = append(g.lines, l)
				if _, at, ok := strings.Cut(l.Text, " at="); ok {
					us, _ := strconv.ParseInt(at, 10, 64)
					g.lat = append(g.lat, now.Sub(time.UnixMicro(us)))
				}
			}
			ch <- g
		}()
		return ch
	}
	f1, f2 := follow(b1), follow(b2)
	args := make([]batchArgs, 200)
	for i := range args {
		args[i] = batchArgs{N: i, Lines: 3}
	}
	ids1, err := echo.EnqueueMany(ctx, args, rediq.InBatch(b1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := echo.EnqueueMany(ctx, args[:20], rediq.InBatch(b2)); err != nil {
		t.Fatal(err)
	}
	// Reading a table while the batch runs works.
	waitFor(t, 10*time.Second, "rows while the batch runs", func() bool {
		rows, err := rediq.ReadTable[batchRow](ctx, e.app, b1.ID(), "rows", rediq.TableOptions{Limit: 3})
		return err == nil && len(rows) > 0
	})
	st, err := b1.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b2.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	g1, g2 := <-f1, <-f2
	if g1.err != nil || g2.err != nil {
		t.Fatal(g1.err, g2.err)
	}
	if len(g1.lines) != 600 || len(g2.lines) != 60 {
		t.Fatalf("batch 1 got %d lines, batch 2 %d; want 600 and 60", len(g1.lines), len(g2.lines))
	}
	for _, l := range g1.lines {
		if l.Batch != b1.ID() || !slices.Contains(ids1, l.Task) || !strings.HasPrefix(l.String(), fmt.Sprintf("[%d:%s ", b1.ID(), l.Task)) {
			t.Fatalf("batch 1 received %v", l)
		}
	}
	slices.Sort(g1.lat)
	t.Logf("Print -> producer received the line: p50 %s, p99 %s (n=%d)", g1.lat[len(g1.lat)/2], g1.lat[len(g1.lat)*99/100], len(g1.lat))

	// The stat counts what the test counted.
	executed, workers := 0, 0
	for _, w := range st.Workers {
		executed += w.Executed
		if w.Executed > 0 {
			workers++
		}
	}
	if st.Enqueued != 200 || st.Succeeded != 200 || st.Started != 200 || st.Running != 0 || st.Unstarted != 0 ||
		st.Failed != 0 || st.Rows != 600 || executed != 200 || st.Stopped || st.Finished.IsZero() {
		t.Fatalf("stat %+v (executed %d)", st, executed)
	}
	t.Logf("batch 1: %d workers executed %d tasks", workers, executed)
	// Per worker, what the handlers counted (batch 2's 20 tasks are in there
	// too: subtract them through batch 2's own stat).
	st2, _ := e.app.BatchStat(ctx, b2.ID())
	counted := e.rdb.HGetAll(ctx, e.ns+":bexec").Val()
	for _, w := range st.Workers {
		want, _ := strconv.Atoi(counted[w.Worker])
		for _, w2 := range st2.Workers {
			if w2.Worker == w.Worker {
				want -= w2.Executed
			}
		}
		if w.Executed != want || w.Collected != 3*want || w.Failed != 0 {
			t.Fatalf("worker %s: stat %+v, the handlers counted %d executions", w.Worker, w, want)
		}
	}
	if again, err := e.app.BatchStat(ctx, b1.ID()); err != nil || again.Succeeded != 200 {
		t.Fatalf("BatchStat = %+v, %v", again, err)
	}
	if list, err := e.app.ListBatches(ctx, 2); err != nil || len(list) != 2 || list[0].ID != b2.ID() || list[1].ID != b1.ID() {
		t.Fatalf("ListBatches = %+v, %v", list, err)
	}
	// Tables: results (a row per element) and Collect; keep, then pop.
	rows, err := rediq.ReadTable[batchRow](ctx, e.app, b1.ID(), "rows", rediq.TableOptions{Limit: 1000})
	if err != nil || len(rows) != 400 {
		t.Fatalf("rows: %d, %v", len(rows), err)
	}
	extra, err := rediq.ReadTable[batchRow](ctx, e.app, b1.ID(), "extra", rediq.TableOptions{Pop: true, Limit: 150})
	if err != nil || len(extra) != 150 || extra[0].Part != "collected" {
		t.Fatalf("popped %d, %v", len(extra), err)
	}
	if rest, _ := rediq.ReadTable[batchRow](ctx, e.app, b1.ID(), "extra", rediq.TableOptions{Limit: 1000}); len(rest) != 50 {
		t.Fatalf("%d rows left after the pop, want 50", len(rest))
	}
	// OnComplete ran exactly once.
	waitFor(t, 10*time.Second, "OnComplete", func() bool { n, _ := e.rdb.Get(ctx, e.ns+":oncomplete").Int(); return n >= 1 })
	time.Sleep(300 * time.Millisecond) // the only way to see a second run does not come
	if n, _ := e.rdb.Get(ctx, e.ns+":oncomplete").Int(); n != 1 {
		t.Fatalf("OnComplete ran %d times", n)
	}
	if names, err := e.app.BatchTables(ctx, b1.ID()); err != nil || !slices.Equal(names, []string{"extra", "rows"}) {
		t.Fatalf("BatchTables = %v, %v", names, err)
	}
	n := 0
	for _, err := range e.app.BatchLines(ctx, b2.ID()) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 60 {
		t.Fatalf("BatchLines of batch 2: %d lines", n)
	}
	// Following again replays what is retained.
	var again strings.Builder
	if err := b1.Follow(ctx, &again); err != nil || strings.Count(again.String(), "\n") != 600 {
		t.Fatalf("Follow again: %d lines, %v", strings.Count(again.String(), "\n"), err)
	}
}

func TestBatchKeepAlive(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t) // the keep-alive key expires by TTL: miniredis only when told to
	e := newEnv(t)
	ctx := context.Background()
	echo, _ := registerBatchTasks(e.app)
	startChild(t, e, "batch") // 20 handlers
	producer := startChild(t, e, "producer", "REDIQ_TEST_KEEPALIVE=1s")
	// A detached batch from this process, beside it, runs to its end.
	sub, err := e.app.NewBatch(ctx, rediq.BatchOptions{Detached: true})
	if err != nil {
		t.Fatal(err)
	}
	args := make([]batchArgs, 10)
	for i := range args {
		args[i] = batchArgs{N: i, Lines: 1, Sleep: 100 * time.Millisecond}
	}
	if _, err := echo.EnqueueMany(ctx, args, rediq.InBatch(sub)); err != nil {
		t.Fatal(err)
	}
	var id int64
	waitFor(t, 10*time.Second, "the producer's batch", func() bool {
		n, err := e.rdb.Get(ctx, e.ns+":producer-batch").Int64()
		id = n
		return err == nil
	})
	waitFor(t, 10*time.Second, "its tasks to start", func() bool { return e.rdb.LLen(ctx, e.ns+":bstarts").Val() >= 15 })
	killed := time.Now()
	if err := producer.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	producer.wait(t, 5*time.Second)
	// Within KeepAliveTimeout + 1 s its running handlers see ctx cancelled.
	var stopped rediq.BatchStat
	waitFor(t, 10*time.Second, "the batch to stop", func() bool {
		stopped, err = e.app.BatchStat(ctx, id)
		return err == nil && stopped.Stopped
	})
	waitFor(t, 10*time.Second, "the running handlers to be cancelled", func() bool {
		return e.rdb.LLen(ctx, e.ns+":bcancelled").Val() >= 1
	})
	t.Logf("producer killed -> batch stopped and handlers cancelled: %s", time.Since(killed))
	for _, c := range e.rdb.LRange(ctx, e.ns+":bcancelled", 0, -1).Val() {
		if !strings.HasSuffix(c, " true") {
			t.Fatalf("cancelled %q: want cause ErrBatchStopped", c)
		}
	}
	if !strings.Contains(stopped.StopReason, "keep-alive") || stopped.Unstarted+stopped.Cancelled+stopped.Running < 20 {
		t.Fatalf("stat %+v", stopped)
	}
	// No task of it starts any more: every one ends, none started after the stop.
	waitFor(t, 30*time.Second, "every task of the stopped batch to end", func() bool {
		st, err := e.app.BatchStat(ctx, id)
		return err == nil && st.Running == 0 && st.Unstarted == 0 && st.Cancelled+st.Succeeded == 40
	})
	final, _ := e.app.BatchStat(ctx, id)
	t.Logf("stopped batch: %+v", final)
	if final.Started != stopped.Started {
		t.Fatalf("%d tasks started when the batch stopped, %d in the end", stopped.Started, final.Started)
	}
	if final.NeverStarted != 40-final.Started || stopped.NeverStarted != final.NeverStarted {
		t.Fatalf("never started: %d when it stopped, %d in the end; want %d", stopped.NeverStarted, final.NeverStarted, 40-final.Started)
	}
	if st, err := sub.Wait(ctx); err != nil || st.Succeeded != 10 {
		t.Fatalf("the detached batch: %+v, %v", st, err)
	}
}

func TestBatchRetention(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t) // keys expire by TTL
	e := newEnv(t)
	ctx := context.Background()
	echo, _ := registerBatchTasks(e.app)
	e.start(e.app, worker.Config{})
	b, err := e.app.NewBatch(ctx, rediq.BatchOptions{Retention: 400 * time.Millisecond, KeepAliveTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := echo.EnqueueMany(ctx, []batchArgs{{N: 1, Lines: 2}, {N: 2, Lines: 2}}, rediq.InBatch(b)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	pattern := fmt.Sprintf("%s:{b:%d}:*", e.ns, b.ID())
	if n := len(e.rdb.Keys(ctx, pattern).Val()); n < 5 {
		t.Fatalf("%d keys of the finished batch right after it ended", n)
	}
	waitFor(t, 5*time.Second, "the batch's keys to expire", func() bool { return len(e.rdb.Keys(ctx, pattern).Val()) == 0 })
	if _, err := e.app.BatchStat(ctx, b.ID()); !errors.Is(err, rediq.ErrBatchNotFound) {
		t.Fatalf("BatchStat after the retention: %v", err)
	}
	if list, err := e.app.ListBatches(ctx, 5); err != nil || len(list) != 0 {
		t.Fatalf("ListBatches after the retention: %v, %v", list, err)
	}
}

// A batch whose waiting tasks are cancelled or deleted still completes.
func TestBatchCompletesWhenTasksAreCancelled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	echo, _ := registerBatchTasks(e.app)
	b, err := e.app.NewBatch(ctx, rediq.BatchOptions{Detached: true})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := echo.EnqueueMany(ctx, []batchArgs{{N: 1}, {N: 2}, {N: 3}}, rediq.InBatch(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.app.CancelTask(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := e.app.DeleteTask(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	e.start(e.app, worker.Config{})
	st, err := b.Wait(ctx)
	if err != nil || st.Succeeded != 1 || st.Cancelled != 2 || st.Unstarted != 0 || st.Finished.IsZero() {
		t.Fatalf("stat %+v, %v", st, err)
	}
}

// Ends nobody counted (a worker that died between settling a task and
// counting it, an enqueue whose outcome was unknown and never landed) are
// found by Wait, which then completes the batch and enqueues its OnComplete.
func TestBatchWaitReconciles(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	echo, done := registerBatchTasks(e.app)
	b, err := e.app.NewBatch(ctx, rediq.BatchOptions{Detached: true, OnComplete: done.With(7)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := echo.EnqueueMany(ctx, []batchArgs{{N: 1}, {N: 2}}, rediq.InBatch(b)); err != nil {
		t.Fatal(err)
	}
	k := fmt.Sprintf("%s:{b:%d}:", e.ns, b.ID())
	e.must(e.rdb.SAdd(ctx, k+"members", "never-written")) // enqueued with an unknown outcome, and lost
	e.must(e.rdb.SAdd(ctx, k+"members", "ran-uncounted")) // a success whose count was lost
	e.must(e.rdb.SAdd(ctx, k+"started", "ran-uncounted"))
	e.start(e.app, worker.Config{})
	st, err := b.Wait(ctx)
	if err != nil || st.Enqueued != 4 || st.Succeeded != 3 || st.Cancelled != 1 || st.Finished.IsZero() {
		t.Fatalf("stat %+v, %v", st, err)
	}
	waitFor(t, 10*time.Second, "OnComplete", func() bool { n, _ := e.rdb.Get(ctx, e.ns+":oncomplete").Int(); return n == 1 })
	if err := rediq.FollowBatch(ctx, e.app, 999999, &strings.Builder{}); !errors.Is(err, rediq.ErrBatchNotFound) {
		t.Fatalf("following a batch that does not exist: %v", err)
	}
}

// A keep-alive batch whose producer went away after every task had ended
// (before it waited or closed) is stopped by the workers' sweep, so that its
// keys expire.
func TestAbandonedBatchIsStopped(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t) // the keep-alive key expires by TTL
	e := newEnv(t)
	ctx := context.Background()
	registerBatchTasks(e.app)
	producer := startChild(t, e, "producer", "REDIQ_TEST_KEEPALIVE=300ms", "REDIQ_TEST_BATCH_N=1", "REDIQ_TEST_BATCH_SLEEP=0s")
	e.start(e.app, worker.Config{LeaseTTL: 900 * time.Millisecond})
	var id int64
	waitFor(t, 10*time.Second, "the producer's batch", func() bool {
		n, err := e.rdb.Get(ctx, e.ns+":producer-batch").Int64()
		id = n
		return err == nil
	})
	waitFor(t, 10*time.Second, "its task to end", func() bool {
		st, err := e.app.BatchStat(ctx, id)
		return err == nil && st.Succeeded == 1
	})
	// Killed before it waited or closed: nothing of the batch runs any more.
	if err := producer.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the sweep to stop the batch", func() bool {
		st, err := e.app.BatchStat(ctx, id)
		return err == nil && st.Stopped
	})
	// Its keys now expire after its retention (7 days by default here).
	if ttl := e.rdb.PTTL(ctx, fmt.Sprintf("%s:{b:%d}:info", e.ns, id)).Val(); ttl <= 0 {
		t.Fatalf("the stopped batch's info has no expiry: %s", ttl)
	}
}
