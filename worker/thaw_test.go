package worker_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

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

// A worker frozen (SIGSTOP) past its lease while its
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
