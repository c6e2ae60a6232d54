package worker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// Issue 12, defect 3: a task whose ExpireIn deadline passes while it waits in
// the prefetch buffer behind a busy runner never starts: it ends expired as
// one found expired at fetch does (Wait says ErrExpired, counted per queue,
// no attempt), alone or in a batch.
func TestExpiredInPrefetchBufferNeverStarts(t *testing.T) {
	t.Parallel()
	for _, batched := range []bool{false, true} {
		name := "plain"
		if batched {
			name = "batch"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ctx := context.Background()
			release := make(chan struct{})
			ran := newRecorder[int]()
			task := rediq.Register(e.app, "t", func(ctx context.Context, n int) (int, error) {
				ran.add(n)
				if n == 1 {
					select {
					case <-release:
					case <-ctx.Done():
						return 0, ctx.Err()
					}
				}
				return n, nil
			}, rediq.Retention(time.Minute))
			e.start(e.app, worker.Config{Concurrency: 1, Prefetch: 2})
			if _, err := task.Enqueue(ctx, 1); err != nil {
				t.Fatal(err)
			}
			ran.wait(t, 1, 10*time.Second) // the runner is busy
			var opts []rediq.EnqueueOption
			var b *rediq.Batch
			if batched {
				var err error
				if b, err = e.app.NewBatch(ctx, rediq.BatchOptions{Detached: true}); err != nil {
					t.Fatal(err)
				}
				opts = append(opts, rediq.InBatch(b))
			}
			const expireIn = 300 * time.Millisecond
			id, err := task.Enqueue(ctx, 2, append(opts, rediq.ExpireIn(expireIn))...)
			if err != nil {
				t.Fatal(err)
			}
			enqueued := time.Now()
			testredis.WaitFor(t, 5*time.Second, "the expiring task to be prefetched", func() bool {
				return e.active("default") == 2
			})
			if time.Since(enqueued) >= expireIn {
				t.Skip("the machine is too slow: the task was not prefetched before its deadline")
			}
			time.Sleep(time.Until(enqueued.Add(expireIn + 50*time.Millisecond))) // its deadline passes in the buffer
			close(release)
			if _, err := task.Wait(ctx, id); !errors.Is(err, rediq.ErrExpired) {
				t.Fatalf("Wait on the task expired in the buffer: %v", err)
			}
			if got := ran.get(); slices.Contains(got, 2) {
				t.Fatalf("the expired task ran: %v", got)
			}
			r, err := e.app.GetTask(ctx, id)
			if err != nil || r.State != rediq.StateExpired || r.Retried != 0 || !r.StartedAt.IsZero() {
				t.Fatalf("record %+v, %v; want expired, never started, no attempt", r, err)
			}
			if st, err := broker.New(e.rdb, e.ns).Stats(ctx, []string{"default"}); err != nil || st[0].Expired != 1 || st[0].Active != 0 {
				t.Fatalf("counts %+v, %v; want 1 expired, none active", st, err)
			}
			if batched {
				// Ended, unstarted: the batch completes with nothing started,
				// running or waiting.
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				st, err := b.Wait(wctx)
				if err != nil || st.Enqueued != 1 || st.Started != 0 || st.Succeeded != 0 || st.Running != 0 ||
					st.Unstarted != 0 || st.Finished.IsZero() {
					t.Fatalf("batch %+v, %v; want it complete with its one task ended unstarted", st, err)
				}
			}
		})
	}
}

// Issue 12, defect 7: a task bounced several times by a worker that does not
// know it runs within a few seconds once a worker that knows it is up, not
// after a retry backoff grown to many seconds.
func TestUnknownTaskRunsSoonOnceAWorkerKnowsIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	producer := e.sibling()
	report := rediq.Register(producer, "report", func(context.Context, int) (int, error) { return 0, nil })
	rediq.Register(e.app, "send_welcome_email", func(context.Context, int) (int, error) { return 0, nil })
	id, err := report.Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, stopOther := e.start(e.app, worker.Config{Name: "other-program"})
	q := e.queue("default")
	const bounces = 4
	testredis.WaitFor(t, 30*time.Second, "the other program's worker to bounce the task 4 times", func() bool {
		v, err := e.rdb.HGet(ctx, q.Records, string(id)).Result()
		if err != nil {
			return false
		}
		env, err := codec.Decode([]byte(v))
		return err == nil && env.Unknown >= bounces
	})
	stopOther()
	ran := newRecorder[rediq.TaskID]()
	knows := e.sibling()
	rediq.Register(knows, "report", func(ctx context.Context, _ int) (int, error) {
		info, _ := rediq.CurrentTask(ctx)
		ran.add(info.ID)
		return 0, nil
	})
	up := time.Now()
	e.start(knows, worker.Config{Name: "reporter"})
	// Its last bounce delayed it 2s (the cap is 3s); the backoff it used to
	// get had grown to 4–8s after 4 bounces.
	if got := ran.wait(t, 1, 10*time.Second); got[0] != id {
		t.Fatalf("ran %v", got)
	}
	if d := time.Since(up); d > 3500*time.Millisecond {
		t.Fatalf("the task ran %s after a worker that knows it was up; want within the 3s cap", d)
	}
}

// runLog is a handler for "job" that logs its start and, if its context still
// stands when its work is done, its end ("ID PID UNIXMS" in NS:starts and
// NS:ends), as a handler with a side effect would: it checks its context
// before acting, and acts with it.
func runLog(app *rediq.App, ns string, jobTime time.Duration) func(context.Context, int) (int, error) {
	return func(ctx context.Context, n int) (int, error) {
		info, _ := rediq.CurrentTask(ctx)
		entry := func() string { return fmt.Sprintf("%s %d %d", info.ID, os.Getpid(), time.Now().UnixMilli()) }
		if err := app.Redis().RPush(ctx, ns+":starts", entry()).Err(); err != nil {
			return 0, err
		}
		select {
		case <-time.After(jobTime):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		return n, app.Redis().RPush(ctx, ns+":ends", entry()).Err()
	}
}

// runsChild is the "runs" child: a worker of runLog handlers.
func runsChild(app *rediq.App) int {
	rediq.Register(app, "job", runLog(app, os.Getenv("REDIQ_TEST_NS"), envDuration("REDIQ_TEST_JOB_TIME")))
	n, _ := strconv.Atoi(os.Getenv("REDIQ_TEST_CONCURRENCY"))
	w, err := worker.New(app, worker.Config{Concurrency: n, LeaseTTL: envDuration("REDIQ_TEST_LEASE_TTL")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	err = w.Run(context.Background())
	fmt.Fprintln(os.Stderr, "runs worker:", err)
	return 4
}

// entries reads a runLog list: task id -> pid -> times.
func (e *env) entries(key string) map[string]map[int][]time.Time {
	e.t.Helper()
	lines, err := e.rdb.LRange(context.Background(), e.ns+":"+key, 0, -1).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]map[int][]time.Time{}
	for _, l := range lines {
		var id string
		var pid int
		var ms int64
		if _, err := fmt.Sscan(l, &id, &pid, &ms); err != nil {
			e.t.Fatalf("bad entry %q: %v", l, err)
		}
		if out[id] == nil {
			out[id] = map[int][]time.Time{}
		}
		out[id][pid] = append(out[id][pid], time.UnixMilli(ms))
	}
	return out
}

// Issue 12, defect 10: a worker frozen (SIGSTOP) past its lease while its
// handlers run, whose tasks another worker took over, must not let those
// handlers act when it thaws — though their own timers fired during the
// freeze and the goroutines resume in any order — and its outcomes do not
// count. Every task runs to its end at least once, no two runs of a task
// overlap, none goes to dead.
func TestThawedWorkerNeverRunsBesideItsRescuer(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t)
	const (
		n       = 8
		ttl     = time.Second
		jobTime = 1500 * time.Millisecond
		rounds  = 2
	)
	for round := range rounds {
		t.Run(fmt.Sprint("round", round), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			task := rediq.Register(e.app, "job", func(context.Context, int) (int, error) { return 0, nil })
			frozen := startChild(t, e, "runs", fmt.Sprint("REDIQ_TEST_CONCURRENCY=", n),
				"REDIQ_TEST_LEASE_TTL="+ttl.String(), "REDIQ_TEST_JOB_TIME="+jobTime.String())
			testredis.WaitFor(t, 10*time.Second, "the child worker to register", func() bool {
				return e.rdb.ZCard(context.Background(), e.queue("default").Workers).Val() == 1
			})
			ids, err := task.EnqueueMany(context.Background(), make([]int, n))
			if err != nil {
				t.Fatal(err)
			}
			testredis.WaitFor(t, 10*time.Second, "the child to start every task", func() bool {
				return len(e.entries("starts")) == n
			})
			frozen.signal(t, syscall.SIGSTOP)
			frozenAt := time.Now()
			rescuerApp := e.sibling()
			rediq.Register(rescuerApp, "job", runLog(rescuerApp, e.ns, jobTime))
			e.start(rescuerApp, worker.Config{Name: "rescuer", Concurrency: n, LeaseTTL: ttl})
			me := os.Getpid()
			testredis.WaitFor(t, 15*time.Second, "the rescuer to take every task over", func() bool {
				s := e.entries("starts")
				for _, id := range ids {
					if len(s[string(id)][me]) == 0 {
						return false
					}
				}
				return true
			})
			// The child's handlers' timers fired while it was frozen: they
			// resume at once, beside the rescuer's runs of the same tasks.
			frozen.signal(t, syscall.SIGCONT)
			thawedAt := time.Now()
			testredis.WaitFor(t, 15*time.Second, "every task to end", func() bool {
				return len(e.entries("ends")) == n
			})
			// The thawed worker learns of its loss at its next heartbeat; by
			// then it has had every chance to act.
			prefix := fmt.Sprintf(":%d/", frozen.cmd.Process.Pid)
			testredis.WaitFor(t, 10*time.Second, "the thawed worker to register again", func() bool {
				for _, s := range e.rdb.ZRange(context.Background(), e.queue("default").Workers, 0, -1).Val() {
					if strings.Contains(s, prefix) {
						return true
					}
				}
				return false
			})
			starts, ends := e.entries("starts"), e.entries("ends")
			for _, id := range ids {
				taken := starts[string(id)][me][0]
				if len(ends[string(id)]) == 0 {
					t.Errorf("task %s never ran to its end", id)
				}
				for _, end := range ends[string(id)][frozen.cmd.Process.Pid] {
					if !end.Before(taken) {
						t.Errorf("task %s: the thawed worker's run (started %s, frozen %s, thawed %s) ended at %s, after the rescuer started it at %s: they overlapped",
							id, starts[string(id)][frozen.cmd.Process.Pid][0].Format("15:04:05.000"), frozenAt.Format("15:04:05.000"),
							thawedAt.Format("15:04:05.000"), end.Format("15:04:05.000"), taken.Format("15:04:05.000"))
					}
				}
				for pid, ts := range starts[string(id)] {
					if pid == frozen.cmd.Process.Pid && len(ts) > 1 {
						t.Errorf("task %s: the thawed worker started it again", id)
					}
				}
			}
			if d := e.dead("default"); len(d) != 0 {
				t.Fatalf("%d tasks went to dead", len(d))
			}
		})
	}
}
