package worker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// A worker serving q1, q2, q3 dies holding started tasks
// of q2 and q3; the survivor must run the recovered tasks of both promptly —
// not those of q2 and then sit idle while q3's wait — one recovered task at a
// time.
func TestRecoveredTasksOnSeveralQueuesAllRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	recoverOnSeveralQueues(t, e.app, e.rdb, e.ns)
}

func TestRecoveredTasksOnSeveralQueuesAllRunOnACluster(t *testing.T) {
	t.Parallel()
	addrs := testredis.StartCluster(t)
	ns := testredis.Namespace(t)
	app, err := rediq.New(rediq.Config{RedisURL: "redis+cluster://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2], Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	recoverOnSeveralQueues(t, app, app.Redis(), ns)
}

// recoveredRun is one run of a handler in recoverOnSeveralQueues.
type recoveredRun struct {
	id         rediq.TaskID
	recovered  int
	start, end time.Time
}

func (r recoveredRun) String() string { return fmt.Sprintf("%s(recovered %d)", r.id, r.recovered) }

func recoverOnSeveralQueues(t *testing.T, app *rediq.App, rdb redis.UniversalClient, ns string) {
	ctx := context.Background()
	queues := []string{"q1", "q2", "q3"}
	const (
		deadTTL = time.Second
		// The survivor's heartbeats come every second: recovered tasks that
		// waited for them, one per heartbeat, would take far longer than the
		// bound below.
		leaseTTL = 3 * time.Second
		jobTime  = 20 * time.Millisecond
	)
	runs := newRecorder[recoveredRun]()
	var mu sync.Mutex
	recoveredNow, recoveredMax := 0, 0
	tasks := map[string]*rediq.Task[int, int]{}
	for _, q := range queues {
		tasks[q] = rediq.Register(app, "job-"+q, func(ctx context.Context, n int) (int, error) {
			info, _ := rediq.CurrentTask(ctx)
			rec := rediq.Recovered(ctx)
			start := time.Now()
			if rec > 0 {
				mu.Lock()
				recoveredNow++
				recoveredMax = max(recoveredMax, recoveredNow)
				mu.Unlock()
			}
			select {
			case <-time.After(jobTime):
			case <-ctx.Done():
			}
			if rec > 0 {
				mu.Lock()
				recoveredNow--
				mu.Unlock()
			}
			runs.add(recoveredRun{info.ID, rec, start, time.Now()})
			return n, nil
		}, rediq.Queue(q))
	}

	// The dead worker: a session on the three queues that fetched and started
	// 4 tasks of q2 and 4 of q3, then stopped renewing its lease (killed).
	b := broker.New(rdb, ns)
	bqs := make([]*broker.Queue, len(queues))
	for i, q := range queues {
		bqs[i] = b.Queue(q)
	}
	if err := b.RegisterQueues(ctx, queues); err != nil {
		t.Fatal(err)
	}
	const dead = "dead/session"
	if _, err := b.Heartbeat(ctx, dead, deadTTL, true, bqs); err != nil {
		t.Fatal(err)
	}
	held := map[rediq.TaskID]bool{}
	var ids []rediq.TaskID
	for i, q := range queues[1:] {
		got, err := tasks[q].EnqueueMany(ctx, make([]int, 4))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got...)
		f, err := b.Fetch(ctx, dead, deadTTL, []broker.FetchRequest{{Queue: bqs[1+i], N: 4, TokenBase: uint64(4 * i), StartNow: 4}})
		if err != nil || f[0].Err != nil || len(f[0].Tasks) != 4 {
			t.Fatalf("the dead worker's fetch from %s: %+v, %v", q, f, err)
		}
		for _, l := range f[0].Tasks {
			held[rediq.TaskID(l.ID)] = true
		}
	}

	w, err := worker.New(app, worker.Config{Name: "survivor", Queues: queues, SkipDefaultQueue: true, Concurrency: 4, LeaseTTL: leaseTTL})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- w.Run(wctx) }()
	defer func() {
		stop()
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("worker: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("the worker did not stop within 30s")
		}
	}()
	// Tasks that were never started, on every queue, beside them.
	for _, q := range queues {
		got, err := tasks[q].EnqueueMany(ctx, make([]int, 5))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got...)
	}

	// The survivor reclaims once it has been healthy for a lease period.
	all := runs.wait(t, len(ids), 3*leaseTTL+10*time.Second)
	ran := map[rediq.TaskID]int{}
	var first, last time.Time
	for _, r := range all {
		ran[r.id]++
		if (r.recovered > 0) != held[r.id] {
			t.Errorf("task %s ran with recovered count %d; held by the dead worker: %v", r.id, r.recovered, held[r.id])
		}
		if r.recovered > 0 {
			if first.IsZero() || r.start.Before(first) {
				first = r.start
			}
			if r.end.After(last) {
				last = r.end
			}
		}
	}
	for _, id := range ids {
		if ran[id] != 1 {
			t.Errorf("task %s ran %d times, want once", id, ran[id])
		}
	}
	// One after the other, each as soon as the one before ended: far less
	// than a heartbeat each.
	took := last.Sub(first)
	t.Logf("the %d recovered tasks ran in %v", len(held), took)
	if took > leaseTTL {
		t.Errorf("the %d recovered tasks took %v from the first start to the last end; want them one after the other, well within %v",
			len(held), took, leaseTTL)
	}
	mu.Lock()
	if recoveredMax != 1 {
		t.Errorf("up to %d recovered tasks ran at once; want one at a time", recoveredMax)
	}
	mu.Unlock()
	testredis.WaitFor(t, 10*time.Second, "every queue to be empty, nothing dead", func() bool {
		st, err := b.Stats(ctx, queues)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st {
			if s.Dead != 0 {
				t.Fatalf("dead tasks: %+v", st)
			}
			if s.Pending != 0 || s.Active != 0 {
				return false
			}
		}
		return true
	})
}

// A handler can tell that it is a re-run after a recovery.
func TestRecoveredCountIsExposed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	seen := newRecorder[int]()
	task := rediq.Register(e.app, "r", func(ctx context.Context, _ int) (int, error) {
		info, _ := rediq.CurrentTask(ctx)
		if info.Recovered != rediq.Recovered(ctx) {
			return 0, errors.New("accessors disagree")
		}
		seen.add(rediq.Recovered(ctx))
		return 0, nil
	})
	ctx := context.Background()
	id, err := task.Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	e.must(e.rdb.HSet(ctx, e.queue("default").Recovered, string(id), 2))
	e.start(e.app, worker.Config{})
	if got := seen.wait(t, 1, 10*time.Second); got[0] != 2 {
		t.Fatalf("Recovered = %d, want 2", got[0])
	}
}
