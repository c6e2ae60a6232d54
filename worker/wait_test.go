package worker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// The scripts that end tasks build keys from the queue's prefix (lib.lua):
// they carry its hash tag, so they live in its cluster slot. A real 3-node
// cluster checks that, on queues spread over the nodes.
func TestTasksByIDOnACluster(t *testing.T) {
	t.Parallel()
	addrs := testredis.StartCluster(t)
	ns := testredis.Namespace(t)
	app, err := rediq.New(rediq.Config{RedisURL: "redis+cluster://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2], Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	ctx := context.Background()
	calls := newRecorder[string]()
	var tasks []*rediq.Task[int, int]
	var queues []string
	for _, q := range []string{"a", "b", "c", "d"} {
		queues = append(queues, q)
		tasks = append(tasks, rediq.Register(app, "t"+q, func(ctx context.Context, n int) (int, error) {
			calls.add(q)
			return n + 1, nil
		}, rediq.Queue(q), rediq.Memoize(time.Minute), rediq.Unique(time.Minute)))
	}
	w, err := worker.New(app, worker.Config{Queues: queues, SkipDefaultQueue: true})
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- w.Run(wctx) }()
	defer func() {
		stop()
		if err := <-errc; err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	for i, task := range tasks {
		if got, err := task.Run(ctx, i); err != nil || got != i+1 {
			t.Fatalf("Run on queue %s = %d, %v", queues[i], got, err)
		}
		if got, err := task.Run(ctx, i); err != nil || got != i+1 { // memoized
			t.Fatalf("memoized Run on queue %s = %d, %v", queues[i], got, err)
		}
		late, err := task.Enqueue(ctx, 100+i, rediq.Delay(time.Hour), rediq.Retention(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := task.Enqueue(ctx, 100+i); !errors.Is(err, rediq.ErrDuplicate) {
			t.Fatalf("unique on queue %s: %v", queues[i], err)
		}
		if err := app.CancelTask(ctx, late); err != nil {
			t.Fatal(err)
		}
		if r, err := app.GetTask(ctx, late); err != nil || r.State != rediq.StateCancelled || r.Queue != queues[i] {
			t.Fatalf("cancelled task on queue %s: %+v, %v", queues[i], r, err)
		}
		if err := app.DeleteTask(ctx, late); err != nil {
			t.Fatal(err)
		}
	}
	if got := calls.get(); len(got) != 4 {
		t.Fatalf("handler calls %v: want one per queue", got)
	}
}

// Waiters whose connections are cut while tasks finish still get every
// result: a lost wake-up costs a look after the re-subscription, not a hang.
func TestWaitSurvivesCutConnections(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t)
	e := newEnv(t)
	ctx := context.Background()
	task := rediq.Register(e.app, "t", func(ctx context.Context, n int) (int, error) { return n * 3, nil },
		rediq.Retention(time.Minute))
	e.start(e.app, worker.Config{})
	proxy := testredis.NewProxy(t, strings.TrimPrefix(testredis.URL(), "redis://"))
	waiter, err := rediq.New(rediq.Config{RedisURL: proxy.URL(), Namespace: e.ns})
	if err != nil {
		t.Fatal(err)
	}
	defer waiter.Close()
	wtask := rediq.Register(waiter, "t", func(ctx context.Context, n int) (int, error) { return 0, nil })
	const n = 30
	ids := make([]rediq.TaskID, n)
	for i := range n {
		if ids[i], err = task.Enqueue(ctx, i, rediq.Delay(time.Duration(100+20*i)*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, n)
	for i := range n {
		go func() {
			wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			got, err := wtask.Wait(wctx, ids[i])
			if err == nil && got != 3*i {
				err = fmt.Errorf("task %d: got %d", i, got)
			}
			errs <- err
		}()
	}
	// Cut every connection of the waiters, again and again, while the tasks
	// fall due and finish.
	for range 10 {
		time.Sleep(70 * time.Millisecond)
		proxy.CutAll()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// A Redis that is away — connections cut, new ones refused — does not end a
// Wait: it tries again until Redis is back or its ctx ends, and then finds a
// task that finished meanwhile, whether it was looking or already subscribed.
func TestWaitRetriesWhileRedisIsAway(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t)
	e := newEnv(t)
	ctx := context.Background()
	gate := make(chan struct{})
	release := sync.OnceFunc(func() { close(gate) })
	defer release() // before the worker stops
	task := rediq.Register(e.app, "t", func(ctx context.Context, n int) (int, error) {
		select {
		case <-gate:
			return n * 3, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}, rediq.Retention(time.Minute))
	e.start(e.app, worker.Config{})
	proxy := testredis.NewProxy(t, strings.TrimPrefix(testredis.URL(), "redis://"))
	waiter, err := rediq.New(rediq.Config{RedisURL: proxy.URL(), Namespace: e.ns})
	if err != nil {
		t.Fatal(err)
	}
	defer waiter.Close()
	wtask := rediq.Register(waiter, "t", func(ctx context.Context, n int) (int, error) { return 0, nil })
	type result struct {
		n   int
		err error
	}
	wait := func(ctx context.Context, id rediq.TaskID) chan result {
		done := make(chan result, 1)
		go func() {
			n, err := wtask.Wait(ctx, id)
			done <- result{n, err}
		}()
		return done
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()

	// Subscribed before Redis goes away; the task finishes while it is away,
	// so the message is lost.
	subscribed, err := task.Enqueue(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	early := wait(wctx, subscribed)
	fin := e.queue("default").FinChannel(string(subscribed))
	waitFor(t, 10*time.Second, "the waiter to subscribe", func() bool {
		return e.rdb.PubSubNumSub(ctx, fin).Val()[fin] == 1
	})
	proxy.Refuse(true)
	proxy.CutAll()
	// Looking while Redis is away: it keeps trying.
	looking, err := task.Enqueue(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	conns := proxy.Conns()
	late := wait(wctx, looking)
	waitFor(t, 10*time.Second, "the waiter to try again", func() bool { return proxy.Conns() >= conns+3 })
	// A ctx that ends while Redis is away: its error.
	sctx, scancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer scancel()
	if r := <-wait(sctx, looking); !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("Wait with a ctx ending while Redis is away = %v, %v; want its deadline", r.n, r.err)
	}
	// Away for longer than go-redis retries a command (3 retries, at most
	// 512 ms apart): the waiters must not give up.
	select {
	case r := <-early:
		t.Fatalf("Wait (subscribed) returned while Redis was away: %v, %v", r.n, r.err)
	case r := <-late:
		t.Fatalf("Wait (looking) returned while Redis was away: %v, %v", r.n, r.err)
	case <-time.After(2500 * time.Millisecond):
	}
	release()
	for _, id := range []rediq.TaskID{subscribed, looking} {
		waitFor(t, 10*time.Second, "the task to succeed", func() bool { return e.state(id) == rediq.StateSucceeded })
	}
	proxy.Refuse(false)
	for i, done := range []chan result{early, late} {
		if r := <-done; r.err != nil || r.n != 3*(i+1) {
			t.Fatalf("Wait after Redis came back = %v, %v; want %d", r.n, r.err, 3*(i+1))
		}
	}
}

// A Redis that takes connections and answers nothing (a partition, a frozen
// server) gives Wait i/o timeouts: it tries again, and returns the result
// once Redis answers.
func TestWaitRetriesTimeouts(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t)
	e := newEnv(t)
	ctx := context.Background()
	task := rediq.Register(e.app, "t", func(ctx context.Context, n int) (int, error) { return n * 3, nil },
		rediq.Retention(time.Minute))
	proxy := testredis.NewProxy(t, strings.TrimPrefix(testredis.URL(), "redis://"))
	waiter, err := rediq.New(rediq.Config{RedisURL: proxy.URL() + "?read_timeout=300ms&write_timeout=300ms", Namespace: e.ns})
	if err != nil {
		t.Fatal(err)
	}
	defer waiter.Close()
	wtask := rediq.Register(waiter, "t", func(ctx context.Context, n int) (int, error) { return 0, nil })
	id, err := task.Enqueue(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	proxy.Blackhole(true)
	done := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		got, err := wtask.Wait(wctx, id)
		if err == nil && got != 15 {
			err = fmt.Errorf("got %d, want 15", got)
		}
		done <- err
	}()
	// Longer than go-redis's read timeout with its retries.
	select {
	case err := <-done:
		t.Fatalf("Wait returned while Redis answered nothing: %v", err)
	case <-time.After(2500 * time.Millisecond):
	}
	e.start(e.app, worker.Config{})
	waitFor(t, 10*time.Second, "the task to succeed", func() bool { return e.state(id) == rediq.StateSucceeded })
	proxy.Blackhole(false)
	if err := <-done; err != nil {
		t.Fatalf("Wait after Redis answered again: %v", err)
	}
}

func TestWaitEdges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	task := rediq.Register(e.app, "t", func(ctx context.Context, n int) (int, error) { return n, nil }, rediq.Retention(time.Minute))
	// Deleted while waited for: Wait says so at once.
	id, _ := task.Enqueue(ctx, 1, rediq.Delay(time.Hour))
	errc := make(chan error, 1)
	go func() {
		_, err := task.Wait(ctx, id)
		errc <- err
	}()
	waitFor(t, 5*time.Second, "the waiter to subscribe", func() bool {
		return e.rdb.PubSubNumSub(ctx, e.queue("default").FinChannel(string(id))).Val()[e.queue("default").FinChannel(string(id))] == 1
	})
	if err := e.app.DeleteTask(ctx, id); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, rediq.ErrTaskNotFound) {
			t.Fatalf("Wait on a deleted task: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait on a deleted task did not return")
	}
	// The App closed while waiting: Wait returns an error, no panic, no hang.
	other := e.sibling()
	otherTask := rediq.Register(other, "t", func(ctx context.Context, n int) (int, error) { return n, nil })
	id, _ = task.Enqueue(ctx, 2, rediq.Delay(time.Hour))
	go func() {
		_, err := otherTask.Wait(ctx, id)
		errc <- err
	}()
	ch := e.queue("default").FinChannel(string(id))
	waitFor(t, 5*time.Second, "the waiter to subscribe", func() bool { return e.rdb.PubSubNumSub(ctx, ch).Val()[ch] == 1 })
	other.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Wait after Close returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return when its App closed")
	}
}

// Run always gets its result, on the miniredis the quickstart embeds too: its
// Wait once read a task's record and meta in separate commands, and a settle
// landing between them showed the task without the retention Run gave it
// (ErrNotRetained, 3% of quickstart runs). It loops, on the package's Redis
// and on a miniredis of its own, where the interleaving is frequent.
func TestRunGetsItsResultEveryTime(t *testing.T) {
	t.Parallel()
	for _, onMiniredis := range []bool{false, true} {
		t.Run(fmt.Sprintf("miniredis=%v", onMiniredis), func(t *testing.T) {
			t.Parallel()
			url := testredis.URL()
			if onMiniredis {
				url = "redis://" + miniredis.RunT(t).Addr()
			}
			ns := testredis.Namespace(t)
			app, err := rediq.New(rediq.Config{RedisURL: url, Namespace: ns})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { app.Close() })
			e := &env{t: t, app: app, rdb: testredis.ClientFor(t, url), ns: ns}
			double := rediq.Register(app, "double", func(ctx context.Context, n int) (int, error) { return 2 * n, nil })
			e.start(app, worker.Config{Concurrency: 4})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for i := range 200 {
				got, err := double.Run(ctx, i)
				if err != nil || got != 2*i {
					t.Fatalf("run %d: Run = %d, %v; want %d", i, got, err, 2*i)
				}
			}
		})
	}
}

// Wait refuses the id of another task, in every state it may find it in,
// instead of decoding that task's result as its own.
func TestWaitRefusesAnotherTasksID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	thumb := rediq.Register(e.app, "thumb", func(ctx context.Context, n int) (string, error) {
		if n < 0 {
			return "", rediq.SkipRetry(errors.New("negative"))
		}
		return fmt.Sprintf("thumb-%d", n), nil
	}, rediq.Retention(time.Minute))
	report := rediq.Register(e.app, "report", func(ctx context.Context, n int) (int, error) { return n, nil },
		rediq.Retention(time.Minute))
	waiting, err := thumb.Enqueue(ctx, 1, rediq.Delay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	wrong := func(t *testing.T, id rediq.TaskID) {
		t.Helper()
		got, err := report.Wait(ctx, id)
		var we *rediq.WrongTaskError
		if !errors.Is(err, rediq.ErrWrongTask) || !errors.As(err, &we) || we.ID != id || we.Want != "report" || we.Found != "thumb" {
			t.Fatalf("report.Wait(a thumb task's id) = %v, %v; want a *WrongTaskError matching ErrWrongTask", got, err)
		}
	}
	wrong(t, waiting) // waiting: at once, without waiting for it to finish
	e.start(e.app, worker.Config{})
	done, err := thumb.Enqueue(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := thumb.Wait(ctx, done); err != nil || got != "thumb-2" {
		t.Fatalf("thumb.Wait = %q, %v", got, err)
	}
	wrong(t, done) // finished: its result is not decoded
	dead, err := thumb.Enqueue(ctx, -1)
	if err != nil {
		t.Fatal(err)
	}
	var failed *rediq.TaskFailedError
	if _, err := thumb.Wait(ctx, dead); !errors.As(err, &failed) {
		t.Fatalf("thumb.Wait on a dead task: %v", err)
	}
	wrong(t, dead) // dead: not its failure either
	if got, err := report.Run(ctx, 7); err != nil || got != 7 {
		t.Fatalf("report.Run = %d, %v", got, err)
	}
}
