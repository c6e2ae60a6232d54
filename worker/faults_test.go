package worker_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// start is one handler start logged by a "record" child.
type start struct {
	id  string
	pid int
	at  time.Time
}

func (e *env) starts() []start {
	e.t.Helper()
	lines, err := e.rdb.LRange(context.Background(), e.ns+":starts", 0, -1).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	var out []start
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 3 {
			e.t.Fatalf("bad start entry %q", l)
		}
		pid, err1 := strconv.Atoi(f[1])
		ms, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || pid <= 0 {
			e.t.Fatalf("bad start entry %q", l)
		}
		out = append(out, start{f[0], pid, time.UnixMilli(ms)})
	}
	return out
}

// done returns how many times each task completed.
func (e *env) done() map[string]int {
	e.t.Helper()
	m, err := e.rdb.HGetAll(context.Background(), e.ns+":done").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]int{}
	for k, v := range m {
		out[k], _ = strconv.Atoi(v)
	}
	return out
}

func recordChild(t *testing.T, e *env, concurrency, prefetch int, ttl, jobTime time.Duration) *child {
	return startChild(t, e, "record", fmt.Sprint("REDIQ_TEST_CONCURRENCY=", concurrency),
		fmt.Sprint("REDIQ_TEST_PREFETCH=", prefetch), "REDIQ_TEST_LEASE_TTL="+ttl.String(), "REDIQ_TEST_JOB_TIME="+jobTime.String())
}

// A worker frozen (SIGSTOP) past its lease starts nothing it held
// once it thaws: another worker took those tasks over. Every task runs, none
// dead.
func TestFrozenWorkerStartsNothingItNoLongerHolds(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t)
	e := newEnv(t)
	task := rediq.Register(e.app, "job", func(context.Context, int) (int, error) { return 0, nil })
	const n = 8
	var ids []rediq.TaskID
	// The rescuer is healthy for a lease period before the freeze, so that it
	// may reclaim as soon as the frozen worker's lease runs out.
	rescuerApp := e.sibling()
	rescued := newRecorder[string]()
	rediq.Register(rescuerApp, "job", func(ctx context.Context, _ int) (int, error) {
		info, _ := rediq.CurrentTask(ctx)
		rescued.add(string(info.ID))
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		return 0, e.rdb.HIncrBy(ctx, e.ns+":done", string(info.ID), 1).Err()
	})
	// Its handlers take a second, so they are done when it thaws and its
	// runners turn at once to the prefetched tasks the rescuer took over.
	frozen := recordChild(t, e, 2, 6, time.Second, time.Second)
	testredis.WaitFor(t, 10*time.Second, "the child worker to register", func() bool {
		return e.rdb.ZCard(context.Background(), e.queue("default").Workers).Val() == 1
	})
	ids, err := task.EnqueueMany(context.Background(), make([]int, n))
	if err != nil {
		t.Fatal(err)
	}
	testredis.WaitFor(t, 10*time.Second, "the child to start 2 and prefetch 6", func() bool {
		return len(e.starts()) == 2 && e.active("default") == n
	})
	frozen.signal(t, syscall.SIGSTOP)
	e.start(rescuerApp, worker.Config{Name: "rescuer", Concurrency: n, LeaseTTL: time.Second})
	rescued.wait(t, n, 15*time.Second)
	thawed := time.Now()
	frozen.signal(t, syscall.SIGCONT)
	testredis.WaitFor(t, 10*time.Second, "every task done", func() bool { return len(e.done()) == n })
	// The thawed worker learns at its next heartbeat that its session was
	// reclaimed, and registers again; by then it has had every chance to start
	// a prefetched task it no longer holds.
	prefix := fmt.Sprintf(":%d/", frozen.cmd.Process.Pid)
	testredis.WaitFor(t, 10*time.Second, "the thawed worker to register again", func() bool {
		for _, s := range e.rdb.ZRange(context.Background(), e.queue("default").Workers, 0, -1).Val() {
			if strings.Contains(s, prefix) {
				return true
			}
		}
		return false
	})
	for _, s := range e.starts() {
		if s.pid == frozen.cmd.Process.Pid && s.at.After(thawed) {
			t.Errorf("the thawed worker started task %s, which the rescuer had taken over", s.id)
		}
	}
	for _, id := range ids {
		// The two handlers running when it froze may finish when it thaws:
		// they had started; what matters is that nothing new starts.
		if c := e.done()[string(id)]; c < 1 {
			t.Errorf("task %s never completed", id)
		}
	}
	if d := e.dead("default"); len(d) != 0 {
		t.Fatalf("%d tasks went to dead", len(d))
	}
}

// One task that kills its worker, run among many healthy ones by
// three workers that keep getting restarted, ends in dead as poison alone;
// every healthy task completes.
func TestTaskThatKillsItsWorkerIsBuriedAlone(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t)
	e := newEnv(t)
	task := rediq.Register(e.app, "job", func(context.Context, int) (int, error) { return 0, nil })
	args := make([]int, 200)
	for i := range args {
		args[i] = i
	}
	args[7] = -1 // the killer, near the front
	ids, err := task.EnqueueMany(context.Background(), args)
	if err != nil {
		t.Fatal(err)
	}
	killer := ids[7]
	workers := make([]*child, 3)
	for i := range workers {
		workers[i] = recordChild(t, e, 20, 20, time.Second, 20*time.Millisecond)
	}
	deaths := 0
	deadline := time.Now().Add(60 * time.Second)
	for {
		if len(e.done()) == len(ids)-1 && len(e.dead("default")) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60s: %d done, dead %v, %d worker deaths", len(e.done()), e.dead("default"), deaths)
		}
		for i, c := range workers {
			select {
			case <-c.exited:
				deaths++
				workers[i] = recordChild(t, e, 20, 20, time.Second, 20*time.Millisecond)
			default:
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	d := e.dead("default")
	if d[0].ID != string(killer) || !strings.Contains(d[0].Error, "poison") {
		t.Fatalf("dead: %s with %q; want only the killer %s as poison", d[0].ID, d[0].Error, killer)
	}
	t.Logf("the killer took down %d workers before it was buried; %d healthy tasks done", deaths, len(e.done()))
}
