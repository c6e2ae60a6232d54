package worker_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
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

// A worker whose connections are cut while its handlers print loses no line
// (at least once: a send whose reply was lost may arrive twice), and the
// batch still completes with every count right.
func TestBatchOutputSurvivesCutConnections(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t)
	e := newEnv(t)
	ctx := context.Background()
	echo, _ := registerBatchTasks(e.app)
	proxy := testredis.NewProxy(t, strings.TrimPrefix(testredis.URL(), "redis://"))
	wapp, err := rediq.New(rediq.Config{RedisURL: proxy.URL(), Namespace: e.ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wapp.Close() }) // after the worker's stop (cleanups run last first)
	registerBatchTasks(wapp)
	e.start(wapp, worker.Config{Concurrency: 10})
	b, err := e.app.NewBatch(ctx, rediq.BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	args := make([]batchArgs, 100)
	for i := range args {
		args[i] = batchArgs{N: i, Lines: 3, Sleep: time.Duration(i%10) * 10 * time.Millisecond}
	}
	if _, err := echo.EnqueueMany(ctx, args, rediq.InBatch(b)); err != nil {
		t.Fatal(err)
	}
	stopCuts := make(chan struct{})
	cutsDone := make(chan struct{})
	go func() {
		defer close(cutsDone)
		for {
			select {
			case <-stopCuts:
				return
			case <-time.After(40 * time.Millisecond):
				proxy.CutAll()
			}
		}
	}()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	st, err := b.Wait(wctx)
	close(stopCuts)
	<-cutsDone
	if err != nil || st.Succeeded != 100 {
		errs, _ := e.app.BatchErrors(ctx, b.ID())
		t.Fatalf("stat %+v, %v; errors %+v", st, err, errs)
	}
	seen := map[string]bool{}
	for l, err := range b.Lines(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		text, _, _ := strings.Cut(l.Text, " at=")
		seen[text] = true
	}
	if len(seen) != 300 {
		t.Fatalf("%d distinct lines of 300 arrived", len(seen))
	}
}

// Collect while Redis is away for longer than go-redis retries a command:
// the rows go in once it is back, and the handler, which returns Collect's
// error, succeeds.
func TestCollectSurvivesRedisAway(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t)
	e := newEnv(t)
	ctx := context.Background()
	proxy := testredis.NewProxy(t, strings.TrimPrefix(testredis.URL(), "redis://"))
	wapp, err := rediq.New(rediq.Config{RedisURL: proxy.URL(), Namespace: e.ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wapp.Close() }) // after the worker's stop
	started, away := make(chan struct{}, 1), make(chan struct{})
	collect := func(app *rediq.App) *rediq.Task[int, int] {
		return rediq.Register(app, "collect", func(ctx context.Context, n int) (int, error) {
			select {
			case started <- struct{}{}:
			default:
			}
			<-away
			return n, rediq.Collect(ctx, "rows", batchRow{n, "collected"})
		}, rediq.Queue("batch"), rediq.Retries(0))
	}
	task := collect(e.app)
	collect(wapp)
	e.start(wapp, worker.Config{})
	b, err := e.app.NewBatch(ctx, rediq.BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := task.Enqueue(ctx, 7, rediq.InBatch(b)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		close(away)
		t.Fatal("the handler did not start")
	}
	proxy.Refuse(true)
	proxy.CutAll()
	close(away)
	// Away for longer than go-redis retries a command (3 retries, at most
	// 512 ms apart).
	time.Sleep(2 * time.Second)
	proxy.Refuse(false)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	st, err := b.Wait(wctx)
	if err != nil || st.Succeeded != 1 || st.Failed != 0 {
		errs, _ := e.app.BatchErrors(ctx, b.ID())
		t.Fatalf("stat %+v, %v; errors %+v", st, err, errs)
	}
	rows, err := rediq.ReadTable[batchRow](ctx, e.app, b.ID(), "rows", rediq.TableOptions{})
	if err != nil || len(rows) == 0 || rows[0] != (batchRow{7, "collected"}) {
		t.Fatalf("rows %+v, %v", rows, err)
	}
}

// The tasks of a stopped batch end cancelled with the batch's reason.
func TestStoppedBatchTasksEndWithTheReason(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	echo, _ := registerBatchTasks(e.app)
	b, err := e.app.NewBatch(ctx, rediq.BatchOptions{Detached: true})
	if err != nil {
		t.Fatal(err)
	}
	id, err := echo.Enqueue(ctx, batchArgs{N: 1}, rediq.InBatch(b), rediq.Retention(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.app.StopBatch(ctx, b.ID()); err != nil {
		t.Fatal(err)
	}
	e.start(e.app, worker.Config{})
	waitFor(t, 10*time.Second, "the task to end", func() bool { return e.state(id) == rediq.StateCancelled })
	r, _ := e.app.GetTask(ctx, id)
	if !strings.Contains(r.LastError, "batch stopped: stopped by StopBatch") {
		t.Fatalf("reason %q", r.LastError)
	}
	if st, err := e.app.BatchStat(ctx, b.ID()); err != nil || st.Cancelled != 1 || st.Unstarted != 0 || st.Started != 0 {
		t.Fatalf("stat %+v, %v", st, err)
	}
	if starts := e.rdb.LLen(ctx, e.ns+":bstarts").Val(); starts != 0 {
		t.Fatalf("the handler ran %d times", starts)
	}
}

// A detached batch completes when its tasks have ended, though its producer
// never said it had added its last (no Close, no Wait): its App was closed,
// its Batch dropped, or its process exited (its keep-alive then lapses). The
// OnComplete runs once; FollowBatch returns.
func TestDetachedBatchCompletesWithoutItsProducer(t *testing.T) {
	t.Parallel()
	// submit opens a detached batch in producer, enqueues 20 tasks and drops
	// the Batch, returning its id.
	submit := func(t *testing.T, producer *rediq.App) int64 {
		echo, done := registerBatchTasks(producer)
		b, err := producer.NewBatch(context.Background(), rediq.BatchOptions{Detached: true, OnComplete: done.With(1)})
		if err != nil {
			t.Fatal(err)
		}
		args := make([]batchArgs, 20)
		for i := range args {
			args[i] = batchArgs{N: i, Lines: 1}
		}
		if _, err := echo.EnqueueMany(context.Background(), args, rediq.InBatch(b)); err != nil {
			t.Fatal(err)
		}
		return b.ID()
	}
	for _, tc := range []struct {
		name string
		real bool // needs keys that expire by TTL
		run  func(t *testing.T, e *env) int64
	}{
		{name: "its App closed", run: func(t *testing.T, e *env) int64 {
			producer, err := rediq.New(rediq.Config{RedisURL: testredis.URL(), Namespace: e.ns})
			if err != nil {
				t.Fatal(err)
			}
			id := submit(t, producer)
			if err := producer.Close(); err != nil {
				t.Fatal(err)
			}
			return id
		}},
		{name: "its Batch dropped", run: func(t *testing.T, e *env) int64 {
			id := submit(t, e.sibling()) // the App stays open
			// Nothing refers to the Batch any more: a collection ends its hold.
			waitFor(t, 20*time.Second, "the dropped batch to be sealed", func() bool {
				runtime.GC()
				time.Sleep(20 * time.Millisecond)
				return e.rdb.HGet(context.Background(), fmt.Sprintf("%s:{b:%d}:info", e.ns, id), "sealed").Val() == "1"
			})
			return id
		}},
		{name: "its process exited", real: true, run: func(t *testing.T, e *env) int64 {
			producer := startChild(t, e, "submit", "REDIQ_TEST_KEEPALIVE=300ms")
			producer.wait(t, 10*time.Second)
			id, err := e.rdb.Get(context.Background(), e.ns+":producer-batch").Int64()
			if err != nil {
				t.Fatalf("the producer's batch: %v", err)
			}
			return id
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.real {
				testredis.RequireReal(t)
			}
			e := newEnv(t)
			ctx := context.Background()
			registerBatchTasks(e.app)
			e.start(e.app, worker.Config{Concurrency: 5, LeaseTTL: 900 * time.Millisecond})
			id := tc.run(t, e)
			fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			var out strings.Builder
			if err := rediq.FollowBatch(fctx, e.app, id, &out); err != nil {
				st, _ := e.app.BatchStat(ctx, id)
				t.Fatalf("FollowBatch: %v; stat %+v", err, st)
			}
			st, err := e.app.BatchStat(ctx, id)
			if err != nil || st.Finished.IsZero() || st.Stopped || st.Enqueued != 20 || st.Succeeded != 20 || st.Running != 0 {
				t.Fatalf("stat %+v, %v", st, err)
			}
			if n := strings.Count(out.String(), "\n"); n != 20 {
				t.Fatalf("%d lines followed, want 20:\n%s", n, out.String())
			}
			waitFor(t, 10*time.Second, "OnComplete", func() bool { n, _ := e.rdb.Get(ctx, e.ns+":oncomplete").Int(); return n >= 1 })
			// Once: several sweeps later (one per heartbeat, every 300 ms) it is still 1.
			for range 10 {
				if n, _ := e.rdb.Get(ctx, e.ns+":oncomplete").Int(); n != 1 {
					t.Fatalf("OnComplete ran %d times", n)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

// A detached batch whose producer is alive and holds it open does not
// complete, however long it pauses after its tasks have ended: it may add
// more.
func TestDetachedBatchWaitsForItsLiveProducer(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t) // the keep-alive key expires by TTL
	e := newEnv(t)
	ctx := context.Background()
	echo, done := registerBatchTasks(e.app)
	e.start(e.app, worker.Config{LeaseTTL: 900 * time.Millisecond}) // a sweep every 300 ms
	b, err := e.app.NewBatch(ctx, rediq.BatchOptions{Detached: true, KeepAliveTimeout: 300 * time.Millisecond, OnComplete: done.With(2)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := echo.Enqueue(ctx, batchArgs{N: 1}, rediq.InBatch(b)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the first task to end", func() bool {
		st, err := e.app.BatchStat(ctx, b.ID())
		return err == nil && st.Succeeded == 1
	})
	// Several keep-alive periods and sweeps: still open.
	for range 15 {
		if st, err := e.app.BatchStat(ctx, b.ID()); err != nil || !st.Finished.IsZero() {
			t.Fatalf("the batch ended under its producer: %+v, %v", st, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := echo.Enqueue(ctx, batchArgs{N: 2}, rediq.InBatch(b)); err != nil {
		t.Fatal(err)
	}
	st, err := b.Wait(ctx)
	if err != nil || st.Succeeded != 2 || st.Finished.IsZero() {
		t.Fatalf("stat %+v, %v", st, err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "OnComplete", func() bool { n, _ := e.rdb.Get(ctx, e.ns+":oncomplete").Int(); return n == 1 })
}

// After a stop, what Wait returns is what BatchStat says once every task of
// the batch has ended: the running ones cancelled, the rest never started.
func TestStoppedBatchCountsAgree(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	echo, _ := registerBatchTasks(e.app)
	e.start(e.app, worker.Config{Concurrency: 4})
	b, err := e.app.NewBatch(ctx, rediq.BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	args := make([]batchArgs, 24)
	for i := range args {
		args[i] = batchArgs{N: i, Sleep: time.Minute}
	}
	if _, err := echo.EnqueueMany(ctx, args, rediq.InBatch(b)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "4 tasks to start", func() bool { return e.rdb.LLen(ctx, e.ns+":bstarts").Val() == 4 })
	type waited struct {
		st  rediq.BatchStat
		err error
	}
	wc := make(chan waited, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		st, err := b.Wait(wctx)
		wc <- waited{st, err}
	}()
	info := fmt.Sprintf("%s:{b:%d}:info", e.ns, b.ID())
	waitFor(t, 10*time.Second, "Wait to seal the batch", func() bool { return e.rdb.HGet(ctx, info, "sealed").Val() == "1" })
	if err := e.app.StopBatch(ctx, b.ID()); err != nil {
		t.Fatal(err)
	}
	var w waited
	select {
	case w = <-wc:
	case <-time.After(40 * time.Second):
		t.Fatal("Wait did not return")
	}
	waitFor(t, 30*time.Second, "every task of the batch to end", func() bool {
		return e.rdb.SCard(ctx, fmt.Sprintf("%s:{b:%d}:ended", e.ns, b.ID())).Val() == 24
	})
	st, err := e.app.BatchStat(ctx, b.ID())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(w.st, st) {
		t.Errorf("Wait returned %+v\nBatchStat says %+v", w.st, st)
	}
	if !errors.Is(w.err, rediq.ErrBatchStopped) || w.err.Error() != fmt.Sprintf("rediq: batch %d stopped: stopped by StopBatch", b.ID()) {
		t.Errorf("Wait's error %q", w.err)
	}
	if st.Started != 4 || st.NeverStarted != 20 || st.Running != 0 || st.Unstarted != 0 || st.Cancelled != 24 || st.Succeeded != 0 || !st.Stopped {
		t.Errorf("stat %+v", st)
	}
}

// A stopped batch's task that waits for a retry will never run again: it ends
// cancelled at the stop (StopBatch) or when the batch is waited for (WaitBatch,
// Batch.Wait), instead of counting as running until it falls due — a Wait
// that hung for the whole backoff.
func TestStoppedBatchEndsItsRetryWaitingTasks(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"StopBatch", "Close then WaitBatch"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ctx := context.Background()
			flaky := rediq.Register(e.app, "flaky", func(ctx context.Context, n int) (int, error) {
				return 0, errors.New("not yet")
			}, rediq.Queue("batch"), rediq.Retries(3), rediq.Backoff(func(int) time.Duration { return time.Hour }))
			e.start(e.app, worker.Config{Concurrency: 2})
			b, err := e.app.NewBatch(ctx, rediq.BatchOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			id, err := flaky.Enqueue(ctx, 1, rediq.InBatch(b))
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, "the task to wait for its retry", func() bool {
				rec, err := e.app.GetTask(ctx, id)
				return err == nil && rec.State == rediq.StateRetry
			})
			wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			var st rediq.BatchStat
			switch how {
			case "StopBatch":
				if err := e.app.StopBatch(wctx, b.ID()); err != nil {
					t.Fatal(err)
				}
				if st, err = e.app.BatchStat(wctx, b.ID()); err != nil {
					t.Fatal(err)
				}
			default:
				if err := b.Close(); err != nil {
					t.Fatal(err)
				}
				st, err = e.app.WaitBatch(wctx, b.ID())
				if !errors.Is(err, rediq.ErrBatchStopped) {
					t.Fatalf("WaitBatch = %+v, %v; want ErrBatchStopped", st, err)
				}
			}
			if st.Running != 0 || st.Cancelled != 1 || st.NeverStarted != 0 || st.Started != 1 || !st.Stopped {
				t.Errorf("stat %+v; want the retry-waiting task cancelled, none running", st)
			}
			rec, err := e.app.GetTask(ctx, id)
			if err == nil && rec.State != rediq.StateCancelled {
				t.Errorf("the task is %s; want cancelled (or gone)", rec.State)
			}
		})
	}
}

// No task is added to a batch its producer closed, or whose keep-alive lapsed
// (the producer was frozen or cut off past its timeout, and the batch stopped
// or completed without it): the Enqueue fails and writes nothing.
func TestNoTaskJoinsAClosedOrLapsedBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	echo, _ := registerBatchTasks(e.app)

	closed, err := e.app.NewBatch(ctx, rediq.BatchOptions{Detached: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := echo.Enqueue(ctx, batchArgs{N: 1}, rediq.InBatch(closed)); err != nil {
		t.Fatal(err)
	}
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	if id, err := echo.Enqueue(ctx, batchArgs{N: 2}, rediq.InBatch(closed)); !errors.Is(err, rediq.ErrInvalidOption) || id != "" {
		t.Fatalf("Enqueue into a closed batch = %q, %v; want ErrInvalidOption", id, err)
	}

	lapsed, err := e.app.NewBatch(ctx, rediq.BatchOptions{Detached: true, KeepAliveTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer lapsed.Close()
	// The keep-alive key gone, as after a freeze past the timeout.
	e.rdb.Del(ctx, fmt.Sprintf("%s:{b:%d}:alive", e.ns, lapsed.ID()))
	var last error
	waitFor(t, 10*time.Second, "an Enqueue into the lapsed batch to be refused", func() bool {
		_, last = echo.Enqueue(ctx, batchArgs{N: 3}, rediq.InBatch(lapsed), rediq.Delay(time.Hour))
		return last != nil
	})
	if !errors.Is(last, rediq.ErrInvalidOption) || !strings.Contains(last.Error(), "keep-alive lapsed") {
		t.Errorf("Enqueue into a lapsed batch: %v", last)
	}
	if n := e.rdb.Exists(ctx, fmt.Sprintf("%s:{b:%d}:alive", e.ns, lapsed.ID())).Val(); n != 0 {
		t.Errorf("the hold made the lapsed keep-alive key again")
	}
}
