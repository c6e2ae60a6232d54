package worker_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

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
