package worker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// startLog records when each task's handler started, and how many attempts
// came before.
type startLog struct {
	mu      sync.Mutex
	at      map[int]time.Time
	retried map[int]int
}

func (l *startLog) add(n, retried int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at[n] = time.Now()
	l.retried[n] = retried
}

func (l *startLog) after(t time.Time) (n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, at := range l.at {
		if at.After(t) {
			n++
		}
	}
	return n
}

func (l *startLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.at)
}

// PauseQueue is immediate and durable: once it returns no task of the queue
// starts on any worker — the running ones finish, the prefetched ones go back
// unstarted (no attempt counted), a worker started later stays paused — and
// after ResumeQueue an idle worker starts the next task at once.
func TestPauseIsImmediateAndDurable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	log := &startLog{at: map[int]time.Time{}, retried: map[int]int{}}
	release := make(chan struct{})
	task := rediq.Register(e.app, "held", func(ctx context.Context, n int) (int, error) {
		log.add(n, rediq.Retried(ctx))
		if n < 100 {
			<-release // the first tasks run until the test lets them go
		}
		return n, nil
	}, rediq.Queue("p"))
	for n := range 10 {
		if _, err := task.Enqueue(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	cfg := worker.Config{Queues: []string{"p"}, SkipDefaultQueue: true, Concurrency: 2, Prefetch: 4}
	e.start(e.app, cfg)
	testredis.WaitFor(t, 30*time.Second, "two tasks running and four prefetched", func() bool {
		st, err := e.app.QueueStats(ctx, "p")
		return err == nil && log.len() == 2 && st[0].Active == 6
	})

	if err := e.app.PauseQueue(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	close(release) // the running ones finish
	testredis.WaitFor(t, 30*time.Second, "the prefetched tasks back in the queue", func() bool {
		st, err := e.app.QueueStats(ctx, "p")
		return err == nil && st[0].Active == 0 && st[0].Pending == 8
	})
	// Enqueued while paused: waits too. A worker started now stays paused.
	for n := 100; n < 110; n++ {
		if _, err := task.Enqueue(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Name = "late"
	e.start(e.sibling(), cfg)
	testredis.WaitFor(t, 30*time.Second, "the late worker to acknowledge the pause", func() bool {
		return e.rdb.HLen(ctx, e.ns+":{p}:pause:acks").Val() == 2
	})
	if st, err := e.app.QueueStats(ctx, "p"); err != nil || st[0].Active != 0 || st[0].Pending != 18 {
		t.Fatalf("stats while paused %+v, %v; want 18 pending, none active", st, err)
	}
	if n := log.after(paused); n != 0 || log.len() != 2 {
		t.Fatalf("%d tasks started after PauseQueue returned (%d in all); want none", n, log.len())
	}
	if p, err := e.app.PausedQueues(ctx, "p"); err != nil || !p["p"] {
		t.Fatalf("paused queues %v, %v", p, err)
	}

	resumed := time.Now()
	if err := e.app.ResumeQueue(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	testredis.WaitFor(t, 30*time.Second, "the first task after the resume", func() bool { return log.len() > 2 })
	first := time.Duration(1 << 62)
	log.mu.Lock()
	for n, at := range log.at {
		if at.After(resumed) && at.Sub(resumed) < first {
			first = at.Sub(resumed)
		}
		if log.retried[n] != 0 {
			t.Errorf("task %d started with %d attempts before it; want 0 (a give-back is no attempt)", n, log.retried[n])
		}
	}
	log.mu.Unlock()
	t.Logf("first start %v after ResumeQueue was called", first)
	testredis.WaitFor(t, 30*time.Second, "every task to run", func() bool { return log.len() == 20 })
}

// A pause gives back the queue's prefetched tasks even while every runner is
// busy with a long task (no runner would reach them: they would stay leased
// here, out of a purge's reach, for as long as the pause), and the other
// queues' prefetched tasks keep their places. An acknowledgement that Redis
// lost (a failover) is made good the next time the worker hears of the pause.
func TestPauseGivesBackPrefetchedWhileRunnersAreBusy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	log := &startLog{at: map[int]time.Time{}, retried: map[int]int{}}
	release := make(chan struct{})
	hold := func(ctx context.Context, n int) (int, error) {
		log.add(n, rediq.Retried(ctx))
		<-release
		return n, nil
	}
	task := rediq.Register(e.app, "long", hold, rediq.Queue("pb"))
	other := rediq.Register(e.app, "other", hold, rediq.Queue("pc"))
	for n := range 6 {
		if _, err := task.Enqueue(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	cfg := worker.Config{Queues: []string{"pb", "pc"}, SkipDefaultQueue: true, Concurrency: 2, Prefetch: 6}
	e.start(e.app, cfg)
	testredis.WaitFor(t, 30*time.Second, "two tasks running and four prefetched", func() bool {
		st, err := e.app.QueueStats(ctx, "pb")
		return err == nil && log.len() == 2 && st[0].Active == 6
	})
	for n := 10; n < 12; n++ {
		if _, err := other.Enqueue(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	testredis.WaitFor(t, 30*time.Second, "two tasks of another queue prefetched", func() bool {
		st, err := e.app.QueueStats(ctx, "pc")
		return err == nil && st[0].Active == 2
	})
	if err := e.app.PauseQueue(ctx, "pb"); err != nil {
		t.Fatal(err)
	}
	testredis.WaitFor(t, 30*time.Second, "the prefetched tasks back, the runners still busy", func() bool {
		st, err := e.app.QueueStats(ctx, "pb")
		return err == nil && st[0].Active == 2 && st[0].Pending == 4
	})
	if n, err := e.app.PurgeQueue(ctx, "pb", rediq.StatePending); err != nil || n != 4 {
		t.Fatalf("purge while paused = %d, %v; want the 4 given back", n, err)
	}
	// Redis loses the acknowledgement; pausing again must not wait for a
	// heartbeat, nor fail.
	if err := e.rdb.Del(ctx, e.ns+":{pb}:pause:acks").Err(); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := e.app.PauseQueue(pctx, "pb"); err != nil {
		t.Fatalf("pause again after the ack was lost: %v", err)
	}
	if st, err := e.app.QueueStats(ctx, "pc"); err != nil || st[0].Active != 2 {
		t.Fatalf("the other queue's prefetched tasks: %+v, %v; want still 2 held", st, err)
	}
	close(release)
	testredis.WaitFor(t, 30*time.Second, "the other queue's tasks to run", func() bool { return log.len() == 4 })
	log.mu.Lock()
	defer log.mu.Unlock()
	for n := range log.at {
		if n >= 2 && n < 10 {
			t.Errorf("task %d of the paused queue started", n)
		}
	}
}
