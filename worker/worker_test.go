package worker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

func TestPriorityThenFIFO(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ran := newRecorder[string]()
	task := rediq.Register(e.app, "order", func(ctx context.Context, label string) (struct{}, error) {
		ran.add(label)
		return struct{}{}, nil
	}, rediq.Queue("prio"))

	ctx := context.Background()
	// Interleave priorities; within one, the label's number is its enqueue order.
	var want []string
	byPrio := map[int][]string{}
	prios := []int{5, 0, -3, 5, 0, 2047, -2048, 0, 5, -3}
	for i, p := range prios {
		label := fmt.Sprintf("p%d-%02d", p, i)
		if _, err := task.Enqueue(ctx, label, rediq.Priority(p)); err != nil {
			t.Fatal(err)
		}
		byPrio[p] = append(byPrio[p], label)
	}
	batch := []string{"p1-b0", "p1-b1", "p1-b2", "p1-b3"}
	if _, err := task.EnqueueMany(ctx, batch, rediq.Priority(1)); err != nil {
		t.Fatal(err)
	}
	byPrio[1] = batch
	keys := make([]int, 0, len(byPrio))
	for p := range byPrio {
		keys = append(keys, p)
	}
	slices.Sort(keys)
	for _, p := range keys {
		want = append(want, byPrio[p]...)
	}

	e.start(e.app, worker.Config{Queues: []string{"prio"}, SkipDefaultQueue: true, Concurrency: 1, Prefetch: 1})
	got := ran.wait(t, len(want), 10*time.Second)
	if !slices.Equal(got, want) {
		t.Fatalf("run order\n got %v\nwant %v", got, want)
	}
}

// The six hooks fire in order and every accessor returns what it should where
// it should: the result only after success, the error only after a failure.
func TestHooksAndAccessors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	type seen struct {
		event   string
		task    string
		retried int
		result  any
		hasRes  bool
		err     string
	}
	log := newRecorder[seen]()
	note := func(event string) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			s := seen{event: event, retried: rediq.Retried(ctx)}
			if info, ok := rediq.CurrentTask(ctx); ok {
				s.task = info.Name
			}
			s.result, s.hasRes = rediq.TaskResult(ctx)
			if err := rediq.TaskError(ctx); err != nil {
				s.err = err.Error()
			}
			log.add(s)
			return nil
		}
	}
	for _, ev := range []rediq.Event{rediq.BeforeWorkerStartup, rediq.AfterWorkerShutdown, rediq.BeforeTaskStart,
		rediq.BeforeTaskRetry, rediq.AfterTaskSuccess, rediq.AfterTaskFailure} {
		e.app.On(ev, note(ev.String()))
	}
	// Hook errors and panics are logged and change nothing.
	e.app.On(rediq.BeforeTaskStart, func(context.Context) error { return errors.New("hook error") })
	e.app.On(rediq.AfterTaskSuccess, func(context.Context) error { panic("hook panic") })

	type infoSeen struct {
		info rediq.TaskInfo
		ok   bool
	}
	infos := newRecorder[infoSeen]()
	flaky := rediq.Register(e.app, "flaky", func(ctx context.Context, a struct{ N int }) (string, error) {
		info, ok := rediq.CurrentTask(ctx)
		infos.add(infoSeen{info, ok})
		if rediq.Retried(ctx) == 0 {
			return "", errors.New("first attempt fails")
		}
		return fmt.Sprintf("done %d", a.N), nil
	}, rediq.Queue("hooks"), rediq.Priority(7), rediq.Backoff(func(int) time.Duration { return time.Millisecond }))
	doomed := rediq.Register(e.app, "doomed", func(ctx context.Context, _ int) (int, error) {
		return 0, errors.New("always fails")
	}, rediq.Queue("hooks"), rediq.Retries(0))

	before := time.Now()
	id, err := flaky.Enqueue(context.Background(), struct{ N int }{42})
	if err != nil {
		t.Fatal(err)
	}
	_, stop := e.start(e.app, worker.Config{Name: "hook-worker", Queues: []string{"hooks"}, SkipDefaultQueue: true, Concurrency: 1})
	log.wait(t, 5, 10*time.Second) // startup, start, retry, start, success
	if _, err := doomed.Enqueue(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	log.wait(t, 7, 10*time.Second)
	stop()

	want := []seen{
		{event: "before_worker_startup"},
		{event: "before_task_start", task: "flaky"},
		{event: "before_task_retry", task: "flaky", err: "first attempt fails"},
		{event: "before_task_start", task: "flaky", retried: 1},
		{event: "after_task_success", task: "flaky", retried: 1, result: "done 42", hasRes: true},
		{event: "before_task_start", task: "doomed"},
		{event: "after_task_failure", task: "doomed", err: "always fails"},
		{event: "after_worker_shutdown"},
	}
	if got := log.get(); !slices.Equal(got, want) {
		t.Fatalf("hooks\n got %+v\nwant %+v", got, want)
	}
	for _, s := range infos.get() {
		in := s.info
		if !s.ok || in.ID != id || in.Name != "flaky" || in.Queue != "hooks" || in.Priority != 7 ||
			in.Worker != "hook-worker" || in.MaxRetries != rediq.DefaultRetries || in.Timeout != rediq.DefaultTimeout ||
			in.EnqueuedAt.Before(before.Truncate(time.Millisecond)) || time.Since(in.EnqueuedAt) > time.Minute || len(in.Args) == 0 {
			t.Fatalf("task info %+v (ok %v), want id %s", in, s.ok, id)
		}
	}
	if _, ok := rediq.CurrentTask(context.Background()); ok {
		t.Fatal("CurrentTask outside a task reported ok")
	}
}

func TestStartupHookErrorAbortsRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dbDown := errors.New("database unreachable")
	shutdownRan := false
	e.app.On(rediq.BeforeWorkerStartup, func(context.Context) error { return dbDown })
	e.app.On(rediq.AfterWorkerShutdown, func(context.Context) error { shutdownRan = true; return nil })
	w, err := worker.New(e.app, worker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(context.Background()); !errors.Is(err, dbDown) {
		t.Fatalf("Run = %v, want the startup hook's error", err)
	}
	if shutdownRan {
		t.Fatal("after_worker_shutdown ran for a worker that never started")
	}
}

func TestRetriesThenSuccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	attempts := newRecorder[int]()
	task := rediq.Register(e.app, "twice", func(ctx context.Context, _ int) (int, error) {
		r := rediq.Retried(ctx)
		attempts.add(r)
		if r < 2 {
			return 0, fmt.Errorf("attempt %d fails", r)
		}
		return r, nil
	}, rediq.Backoff(func(int) time.Duration { return 10 * time.Millisecond }))
	if _, err := task.Enqueue(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	_, stop := e.start(e.app, worker.Config{})
	attempts.wait(t, 3, 10*time.Second)
	stop()
	if got := attempts.get(); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("retried values %v, want [0 1 2]", got)
	}
	if n := len(e.dead("default")); n != 0 {
		t.Fatalf("%d dead, want 0", n)
	}
}

func TestFailuresEndInDead(t *testing.T) {
	t.Parallel()
	fast := rediq.Backoff(func(int) time.Duration { return time.Millisecond })
	cases := []struct {
		name      string
		handler   func(ctx context.Context, _ int) (int, error)
		opts      []rediq.TaskOption
		attempts  int
		wantErr   string
		wantStack bool
	}{
		{"error", func(context.Context, int) (int, error) { return 0, errors.New("boom") },
			[]rediq.TaskOption{rediq.Retries(2), fast}, 3, "boom", false},
		{"panic", func(context.Context, int) (int, error) { panic("kaboom") },
			[]rediq.TaskOption{rediq.Retries(1), fast}, 2, "rediq: panic: kaboom", true},
		{"skip retry", func(context.Context, int) (int, error) { return 0, rediq.SkipRetry(errors.New("bad input")) },
			[]rediq.TaskOption{rediq.Retries(5), fast}, 1, "bad input", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			runs := newRecorder[int]()
			failures := newRecorder[error]()
			task := rediq.Register(e.app, "fails", func(ctx context.Context, a int) (int, error) {
				runs.add(rediq.Retried(ctx))
				return c.handler(ctx, a)
			}, c.opts...)
			e.app.On(rediq.AfterTaskFailure, func(ctx context.Context) error {
				failures.add(rediq.TaskError(ctx))
				return nil
			})
			id, err := task.Enqueue(context.Background(), 0)
			if err != nil {
				t.Fatal(err)
			}
			_, stop := e.start(e.app, worker.Config{})
			failures.wait(t, 1, 10*time.Second)
			stop()
			if got := len(runs.get()); got != c.attempts {
				t.Fatalf("%d attempts, want %d", got, c.attempts)
			}
			if c.wantStack {
				var pe *rediq.PanicError
				if !errors.As(failures.get()[0], &pe) || len(pe.Stack) == 0 {
					t.Fatalf("failure %v is not a *PanicError with a stack", failures.get()[0])
				}
			}
			dead := e.dead("default")
			if len(dead) != 1 || dead[0].ID != string(id) || dead[0].Error != c.wantErr || dead[0].Retried != c.attempts-1 {
				t.Fatalf("dead = %+v, want %s with error %q", dead, id, c.wantErr)
			}
			if c.wantStack != strings.Contains(dead[0].Stack, "panic") {
				t.Fatalf("dead stack %q, want stack: %v", dead[0].Stack, c.wantStack)
			}
		})
	}
}

func TestTimeoutCancelsAndCountsAsFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctxErrs := newRecorder[error]()
	failures := newRecorder[error]()
	task := rediq.Register(e.app, "slow", func(ctx context.Context, _ int) (int, error) {
		<-ctx.Done()
		ctxErrs.add(ctx.Err())
		return 0, ctx.Err()
	}, rediq.Timeout(50*time.Millisecond), rediq.Retries(1), rediq.Backoff(func(int) time.Duration { return time.Millisecond }))
	e.app.On(rediq.AfterTaskFailure, func(ctx context.Context) error {
		failures.add(rediq.TaskError(ctx))
		return nil
	})
	// A per-call override is honoured too.
	if _, err := task.Enqueue(context.Background(), 0, rediq.Timeout(80*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, stop := e.start(e.app, worker.Config{})
	failures.wait(t, 1, 10*time.Second)
	stop()
	for _, err := range ctxErrs.get() {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("handler context ended with %v, want DeadlineExceeded", err)
		}
	}
	if n := len(ctxErrs.get()); n != 2 {
		t.Fatalf("%d attempts, want 2 (timeouts count as failed attempts)", n)
	}
	if err := failures.get()[0]; !errors.Is(err, rediq.ErrTimeout) || !strings.Contains(err.Error(), "80ms") {
		t.Fatalf("failure %v, want ErrTimeout after 80ms", err)
	}
}

func TestGarbageAndUnknownGoToDead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ran := newRecorder[int]()
	good := rediq.Register(e.app, "good", func(ctx context.Context, n int) (int, error) {
		ran.add(n)
		return n, nil
	})
	// A producer with a task the worker does not know.
	other := rediq.Register(e.sibling(), "unregistered", func(context.Context, int) (int, error) { return 0, nil })
	ctx := context.Background()
	garbage := "\xc1 this is not msgpack"
	if err := e.rdb.HSet(ctx, e.queue("default").Records, "g1", garbage).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.ZAdd(ctx, e.queue("default").Pending, redisZ(0, "g1")).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Enqueue(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := good.Enqueue(ctx, 7); err != nil {
		t.Fatal(err)
	}
	// An unknown task is retried first (a rolling deploy); here once.
	_, stop := e.start(e.app, worker.Config{Concurrency: 1, UnknownTaskRetries: 1})
	ran.wait(t, 1, 10*time.Second)
	testredis.WaitFor(t, 10*time.Second, "two dead messages", func() bool { return e.count(e.queue("default").Dead) == 2 })
	stop()
	var sawGarbage, sawUnknown bool
	for _, d := range e.dead("default") {
		switch {
		case string(d.Raw) == garbage && strings.Contains(d.Error, "undecodable message"):
			sawGarbage = true
		case d.Name == "unregistered" && strings.Contains(d.Error, "unknown task") && d.Unknown == 1 && d.Retried == 0:
			sawUnknown = true
		default:
			t.Errorf("unexpected dead message %+v", d)
		}
	}
	if !sawGarbage || !sawUnknown {
		t.Fatalf("dead set lacks the garbage (%v) or the unknown task (%v)", sawGarbage, sawUnknown)
	}
}

// Non-polling: an idle worker starts a task within milliseconds of its enqueue.
func TestIdleWorkerStartsTasksAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	started := make(chan time.Time, 1)
	task := rediq.Register(e.app, "ping", func(ctx context.Context, _ int) (int, error) {
		started <- time.Now()
		return 0, nil
	})
	e.start(e.app, worker.Config{})
	ctx := context.Background()
	var lat []time.Duration
	for i := range 40 {
		time.Sleep(5 * time.Millisecond) // let the worker go idle between tasks
		t0 := time.Now()
		if _, err := task.Enqueue(ctx, i); err != nil {
			t.Fatal(err)
		}
		select {
		case t1 := <-started:
			lat = append(lat, t1.Sub(t0))
		case <-time.After(5 * time.Second):
			t.Fatal("task not started within 5s")
		}
	}
	slices.Sort(lat)
	med := lat[len(lat)/2]
	t.Logf("enqueue-to-start latency of an idle worker: median %v, max %v (%d samples, real redis %v)",
		med, lat[len(lat)-1], len(lat), testredis.Real())
	if med > 50*time.Millisecond {
		t.Fatalf("median enqueue-to-start latency %v, want < 50ms: the worker is polling", med)
	}
}

func TestDelayedTaskRunsAtItsDueTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	started := make(chan time.Time, 1)
	task := rediq.Register(e.app, "later", func(ctx context.Context, _ int) (int, error) {
		started <- time.Now()
		return 0, nil
	})
	e.start(e.app, worker.Config{})
	const delay = 300 * time.Millisecond
	t0 := time.Now()
	if _, err := task.Enqueue(context.Background(), 0, rediq.Delay(delay)); err != nil {
		t.Fatal(err)
	}
	select {
	case t1 := <-started:
		late := t1.Sub(t0) - delay
		t.Logf("delayed task started %v after its due time", late)
		if late < -5*time.Millisecond { // the server's and our clocks agree to about a ms
			t.Fatalf("started %v before its due time", -late)
		}
		if late > time.Second {
			t.Fatalf("started %v after its due time: the worker is polling", late)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("delayed task never ran")
	}
}

// Fair sharing serves every queue; strict order serves the first to exhaustion.
func TestQueueSharing(t *testing.T) {
	t.Parallel()
	for _, strict := range []bool{false, true} {
		t.Run(fmt.Sprintf("strict=%v", strict), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ran := newRecorder[string]()
			var tasks []*rediq.Task[int, int]
			for _, q := range []string{"a", "b"} {
				tasks = append(tasks, rediq.Register(e.app, "t"+q, func(ctx context.Context, _ int) (int, error) {
					ran.add(q)
					return 0, nil
				}, rediq.Queue(q)))
			}
			for _, task := range tasks {
				if _, err := task.EnqueueMany(context.Background(), make([]int, 40)); err != nil {
					t.Fatal(err)
				}
			}
			e.start(e.app, worker.Config{Queues: []string{"a", "b"}, SkipDefaultQueue: true, StrictPriority: strict,
				Concurrency: 1, Prefetch: 3})
			got := ran.wait(t, 80, 10*time.Second)
			firstHalf := strings.Join(got[:40], "")
			if strict && firstHalf != strings.Repeat("a", 40) {
				t.Fatalf("strict: first 40 tasks came from %q, want queue a only", firstHalf)
			}
			if !strict && (strings.Count(firstHalf, "a") < 10 || strings.Count(firstHalf, "b") < 10) {
				t.Fatalf("fair: first 40 tasks came from %q, want both queues", firstHalf)
			}
		})
	}
}

func TestShutdownSkippingTheWaitReturnsTasks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	running := newRecorder[int]()
	task := rediq.Register(e.app, "stubborn", func(ctx context.Context, n int) (int, error) {
		running.add(n)
		<-ctx.Done()
		return 0, ctx.Err()
	})
	if _, err := task.EnqueueMany(context.Background(), []int{1, 2, 3, 4, 5}); err != nil {
		t.Fatal(err)
	}
	w, _ := e.start(e.app, worker.Config{Concurrency: 2, Prefetch: 3})
	running.wait(t, 2, 10*time.Second)
	testredis.WaitFor(t, 10*time.Second, "all five leased", func() bool { return e.active("default") == 5 })
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Shutdown(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v, want context.Canceled", err)
	}
	if n := e.pendingLen("default"); n != 5 {
		t.Fatalf("%d pending after the stop, want all 5 back", n)
	}
	if n := e.active("default"); n != 0 {
		t.Fatalf("%d still leased, want 0", n)
	}
	if len(e.dead("default")) != 0 {
		t.Fatal("a cancelled task went to dead")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := map[string]worker.Config{
		"no queues":       {SkipDefaultQueue: true},
		"bad queue name":  {Queues: []string{"a b"}},
		"weight no queue": {Weights: map[string]int{"zzz": 2}},
		"zero weight":     {Queues: []string{"a"}, Weights: map[string]int{"a": 0}},
		"tiny lease":      {LeaseTTL: time.Millisecond},
		"negative":        {Concurrency: -1},
	}
	for name, cfg := range cases {
		if _, err := worker.New(e.app, cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

// A task that keeps killing its workers goes to dead as poison instead of
// looping forever.
func TestPoisonTaskGoesToDead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ran := newRecorder[int]()
	task := rediq.Register(e.app, "p", func(ctx context.Context, n int) (int, error) {
		ran.add(n)
		return n, nil
	})
	ctx := context.Background()
	if _, err := task.EnqueueMany(ctx, []int{1, 2}); err != nil {
		t.Fatal(err)
	}
	q := e.queue("default")
	members := e.pendingIDs(q.Name) // ids, in order
	// As if the first had been reclaimed from 4 dead workers, the second from 3.
	e.must(e.rdb.HSet(ctx, q.Recovered, members[0], 4, members[1], 3))
	e.start(e.app, worker.Config{MaxRecoveries: 3})
	ran.wait(t, 1, 10*time.Second)
	testredis.WaitFor(t, 10*time.Second, "the poison task in dead", func() bool { return e.count(q.Dead) == 1 })
	if d := e.dead("default")[0]; !strings.Contains(d.Error, "poison") {
		t.Fatalf("dead reason %q", d.Error)
	}
	if got := ran.get(); !slices.Equal(got, []int{2}) {
		t.Fatalf("ran %v, want only the task under the limit", got)
	}
	testredis.WaitFor(t, 5*time.Second, "recovery counts to clear", func() bool {
		return e.rdb.Exists(ctx, q.Recovered).Val() == 0
	})
}

// A worker that stalled past its lease (here: its session is expired and
// reclaimed behind its back) cancels what it was running; the task runs again.
func TestLostLeaseCancelsTheTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	runs := newRecorder[int]()
	cancelled := make(chan error, 1)
	task := rediq.Register(e.app, "stall", func(ctx context.Context, _ int) (int, error) {
		n := len(runs.get())
		runs.add(n)
		if n == 0 {
			<-ctx.Done()
			cancelled <- ctx.Err()
			return 0, ctx.Err()
		}
		return n, nil
	})
	if _, err := task.Enqueue(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	e.start(e.app, worker.Config{LeaseTTL: 600 * time.Millisecond})
	runs.wait(t, 1, 10*time.Second)

	ctx := context.Background()
	q := e.queue("default")
	sessions := e.rdb.ZRange(ctx, q.Workers, 0, -1).Val()
	if len(sessions) != 1 {
		t.Fatalf("sessions %v", sessions)
	}
	e.must(e.rdb.ZAdd(ctx, q.Workers, redisZ(1, sessions[0]))) // its lease ran out long ago
	if pre, started, ok, err := broker.New(e.rdb, e.ns).Reclaim(ctx, q, sessions[0]); pre != 0 || started != 1 || !ok || err != nil {
		t.Fatalf("reclaim = %d, %d, %v, %v; want the one started task", pre, started, ok, err)
	}
	select {
	case err := <-cancelled:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("stalled handler's context ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler of a lost lease was not cancelled")
	}
	runs.wait(t, 2, 10*time.Second)
	testredis.WaitFor(t, 5*time.Second, "the rerun to settle", func() bool {
		return e.pendingLen(q.Name) == 0 && e.active("default") == 0
	})
	if len(e.dead("default")) != 0 {
		t.Fatal("a task whose lease was lost went to dead")
	}
}

// Each attempt on a runner gets its own timeout: the handler's context
// reports it as its deadline, and a short timeout of an earlier attempt on
// the same runner does not end a later one (the runner's timer is set again
// for each attempt).
func TestHandlerTimeoutIsPerAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	type seen struct {
		left time.Duration // deadline less the start
		err  error         // the context's error after the handler's work
	}
	quick := newRecorder[seen]()
	slow := newRecorder[seen]()
	q := rediq.Register(e.app, "quick", func(ctx context.Context, _ int) (int, error) {
		d, ok := ctx.Deadline()
		if !ok {
			return 0, errors.New("no deadline")
		}
		quick.add(seen{left: time.Until(d), err: ctx.Err()})
		return 0, nil
	}, rediq.Timeout(30*time.Millisecond))
	s := rediq.Register(e.app, "slow", func(ctx context.Context, _ int) (int, error) {
		d, _ := ctx.Deadline()
		time.Sleep(150 * time.Millisecond) // past every quick attempt's timeout
		slow.add(seen{left: time.Until(d), err: ctx.Err()})
		return 0, nil
	}, rediq.Timeout(5*time.Second))
	ctx := context.Background()
	for i := range 5 {
		if _, err := q.Enqueue(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Enqueue(ctx, 0); err != nil {
		t.Fatal(err)
	}
	_, stop := e.start(e.app, worker.Config{Concurrency: 1})
	slow.wait(t, 1, 10*time.Second)
	stop()
	for _, x := range quick.get() {
		if x.left <= 0 || x.left > 30*time.Millisecond || x.err != nil {
			t.Fatalf("quick attempt: deadline in %v, err %v; want within 30ms, nil", x.left, x.err)
		}
	}
	if x := slow.get()[0]; x.err != nil || x.left < 4*time.Second {
		t.Fatalf("slow attempt after quick ones: err %v, deadline in %v; want nil, about 5s less 150ms", x.err, x.left)
	}
}
