package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/internal/window"
	"github.com/rediq/rediq/worker"
)

// windowAhead is a window spec that opens at the second boundary `in` from
// now and lasts `length`, and its bounds.
func windowAhead(in, length time.Duration) (spec string, open, close time.Time) {
	open = time.Now().UTC().Truncate(time.Second).Add(time.Second + in)
	close = open.Add(length)
	// In the form a window is stored and answered in ("02:20-02:20:02 UTC"
	// when it opens on a whole minute), so that tests may compare with it.
	w, err := window.Parse(fmt.Sprintf("%s-%s UTC", open.Format(time.TimeOnly), close.Format(time.TimeOnly)))
	if err != nil {
		panic(err)
	}
	return w.String(), open, close
}

// A task with a run window starts only inside it: fetched before, it waits
// scheduled until the window opens (no attempt counted), and the first starts
// come within a second of the opening, without polling.
func TestRunWindowHoldsTasksUntilItOpens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	spec, open, closing := windowAhead(time.Second, 3*time.Second)
	log := &startLog{at: map[int]time.Time{}, retried: map[int]int{}}
	task := rediq.Register(e.app, "windowed", func(ctx context.Context, n int) (int, error) {
		log.add(n, rediq.Retried(ctx))
		return n, nil
	}, rediq.Queue("win"), rediq.RunWindow(spec))
	for n := range 20 {
		if _, err := task.Enqueue(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	e.start(e.app, worker.Config{Queues: []string{"win"}, SkipDefaultQueue: true, Concurrency: 4})
	testredis.WaitFor(t, 30*time.Second, "every task to run", func() bool { return log.len() == 20 })
	log.mu.Lock()
	defer log.mu.Unlock()
	first := closing
	for n, at := range log.at {
		if at.Before(open) || !at.Before(closing) {
			t.Errorf("task %d started at %v, outside [%v, %v)", n, at, open, closing)
		}
		if log.retried[n] != 0 {
			t.Errorf("task %d: %d attempts before; a wait is not an attempt", n, log.retried[n])
		}
		if at.Before(first) {
			first = at
		}
	}
	t.Logf("window %q: first start %v after it opened", spec, first.Sub(open))
	if first.Sub(open) > time.Second {
		t.Fatalf("first start %v after the window opened; want within 1s", first.Sub(open))
	}
}

// A queue's window (SetQueueWindow) holds all its tasks until it opens, on a
// worker started before it was set; "" lifts it at once.
func TestQueueWindow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	log := &startLog{at: map[int]time.Time{}, retried: map[int]int{}}
	task := rediq.Register(e.app, "q", func(ctx context.Context, n int) (int, error) {
		log.add(n, rediq.Retried(ctx))
		return n, nil
	}, rediq.Queue("qwin"))
	if err := e.app.SetQueueWindow(ctx, "qwin", "Mon-Fri 9-17"); err == nil {
		t.Fatal("a bad window was accepted")
	}
	e.start(e.app, worker.Config{Queues: []string{"qwin"}, SkipDefaultQueue: true, Concurrency: 4})
	spec, open, closing := windowAhead(time.Second, 2*time.Second)
	if err := e.app.SetQueueWindow(ctx, "qwin", spec); err != nil {
		t.Fatal(err)
	}
	if ws, err := e.app.QueueWindows(ctx, "qwin"); err != nil || ws["qwin"] != spec {
		t.Fatalf("windows %v, %v; want %q", ws, err, spec)
	}
	set := time.Now()
	for n := range 10 {
		if _, err := task.Enqueue(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	testredis.WaitFor(t, 30*time.Second, "every task to run", func() bool { return log.len() == 10 })
	first := closing
	log.mu.Lock()
	for n, at := range log.at {
		if at.Before(open) || !at.Before(closing) {
			t.Errorf("task %d started at %v, outside [%v, %v) (window set at %v)", n, at, open, closing, set)
		}
		if at.Before(first) {
			first = at
		}
	}
	log.mu.Unlock()
	t.Logf("queue window %q: first start %v after it opened", spec, first.Sub(open))
	if first.Sub(open) > time.Second {
		t.Fatalf("first start %v after the window opened; want within 1s", first.Sub(open))
	}
	// After it closes, tasks wait; clearing the window starts them.
	testredis.WaitFor(t, 30*time.Second, "the window to close", func() bool { return time.Now().After(closing) })
	for n := 100; n < 105; n++ {
		if _, err := task.Enqueue(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := e.app.QueueStats(ctx, "qwin"); err != nil || st[0].Pending != 5 || log.len() != 10 {
		t.Fatalf("after the window closed: %+v, %v, %d started", st, err, log.len())
	}
	if err := e.app.SetQueueWindow(ctx, "qwin", ""); err != nil {
		t.Fatal(err)
	}
	testredis.WaitFor(t, 30*time.Second, "the tasks after the window was cleared", func() bool { return log.len() == 15 })
}
