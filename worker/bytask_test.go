package worker_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// registerTaskByID registers the tasks the tests of issue 7 share with their
// child workers: "block" records its start (NS:starts) and waits for its ctx,
// recording how it ended (NS:ended: "ID cause unixms") and what
// AfterTaskFailure saw (NS:hook); "memo" counts its calls (NS:memo-calls) and
// returns n*2, memoized for memoTTL.
func registerTaskByID(app *rediq.App, ns string, memoTTL time.Duration) (block *rediq.Task[int, int], memo *rediq.Task[int, int]) {
	rdb := app.Redis()
	block = rediq.Register(app, "block", func(ctx context.Context, n int) (int, error) {
		info, _ := rediq.CurrentTask(ctx)
		rdb.RPush(context.Background(), ns+":starts", string(info.ID))
		<-ctx.Done()
		cause := context.Cause(ctx)
		rdb.RPush(context.Background(), ns+":ended", fmt.Sprintf("%s %v %d", info.ID, errors.Is(cause, rediq.ErrCancelled), time.Now().UnixMicro()))
		return 0, ctx.Err()
	}, rediq.Queue("block"), rediq.Retries(3), rediq.Retention(time.Minute))
	app.On(rediq.AfterTaskFailure, func(ctx context.Context) error {
		info, _ := rediq.CurrentTask(ctx)
		return rdb.RPush(context.Background(), ns+":hook", fmt.Sprintf("%s %v", info.ID, errors.Is(rediq.TaskError(ctx), rediq.ErrCancelled))).Err()
	})
	if memoTTL <= 0 {
		memoTTL = time.Minute
	}
	memo = rediq.Register(app, "memo", func(ctx context.Context, n int) (int, error) {
		rdb.Incr(context.Background(), ns+":memo-calls")
		time.Sleep(50 * time.Millisecond) // long enough for concurrent Runs to meet
		return n * 2, nil
	}, rediq.Queue("memo"), rediq.Memoize(memoTTL))
	return block, memo
}

// waitFor polls cond (a Redis read) until it holds, failing t after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *env) state(id rediq.TaskID) rediq.TaskState {
	e.t.Helper()
	r, err := e.app.GetTask(context.Background(), id)
	if err != nil {
		e.t.Fatalf("GetTask(%s): %v", id, err)
	}
	return r.State
}

func TestGetTaskInEveryState(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	hold := make(chan struct{})
	defer close(hold)
	started := newRecorder[string]()
	type out struct{ V string }
	ok := rediq.Register(e.app, "ok", func(ctx context.Context, s string) (out, error) { return out{s + "!"}, nil },
		rediq.Queue("run"), rediq.Retention(time.Minute))
	fail := rediq.Register(e.app, "fail", func(ctx context.Context, n int) (int, error) { return 0, errors.New("boom") },
		rediq.Queue("run"), rediq.Retries(0))
	retry := rediq.Register(e.app, "retry", func(ctx context.Context, n int) (int, error) { return 0, errors.New("again") },
		rediq.Queue("run"), rediq.Retries(2), rediq.Backoff(func(int) time.Duration { return time.Hour }))
	slow := rediq.Register(e.app, "slow", func(ctx context.Context, n int) (int, error) {
		info, _ := rediq.CurrentTask(ctx)
		started.add(string(info.ID))
		select {
		case <-hold:
		case <-ctx.Done():
		}
		return 0, nil
	}, rediq.Queue("run"))
	idle := rediq.Register(e.app, "idle", func(ctx context.Context, n int) (int, error) { return n, nil },
		rediq.Queue("idle"), rediq.Retention(time.Minute))

	mustID := func(id rediq.TaskID, err error) rediq.TaskID {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	scheduled := mustID(idle.Enqueue(ctx, 1, rediq.Delay(time.Hour)))
	pending := mustID(idle.Enqueue(ctx, 2))
	cancelled := mustID(idle.Enqueue(ctx, 3))
	if err := e.app.CancelTask(ctx, cancelled); err != nil {
		t.Fatal(err)
	}
	expired := mustID(ok.Enqueue(ctx, "late", rediq.ExpireIn(time.Millisecond), rediq.Delay(20*time.Millisecond)))
	succeeded := mustID(ok.Enqueue(ctx, "hi"))
	dead := mustID(fail.Enqueue(ctx, 1))
	retrying := mustID(retry.Enqueue(ctx, 1))
	active := mustID(slow.Enqueue(ctx, 1))
	e.start(e.app, worker.Config{Queues: []string{"run"}, SkipDefaultQueue: true, Concurrency: 4})
	started.wait(t, 1, 10*time.Second)
	want := map[rediq.TaskID]rediq.TaskState{scheduled: rediq.StateScheduled, pending: rediq.StatePending,
		active: rediq.StateActive, retrying: rediq.StateRetry, dead: rediq.StateDead, succeeded: rediq.StateSucceeded,
		cancelled: rediq.StateCancelled, expired: rediq.StateExpired}
	for id, st := range want {
		waitFor(t, 10*time.Second, fmt.Sprintf("%s to be %s", id, st), func() bool {
			r, err := e.app.GetTask(ctx, id)
			return err == nil && r.State == st
		})
	}
	r, _ := e.app.GetTask(ctx, succeeded)
	var res out
	if err := decodeMsgpack(r.Result, &res); err != nil || res.V != "hi!" || r.Queue != "run" || r.Name != "ok" ||
		r.FinishedAt.IsZero() || r.StartedAt.IsZero() || r.Worker == "" {
		t.Fatalf("succeeded record %+v (result %v, %v)", r, res, err)
	}
	if r, _ := e.app.GetTask(ctx, dead); r.LastError != "boom" || r.FinishedAt.IsZero() {
		t.Fatalf("dead record %+v", r)
	}
	if r, _ := e.app.GetTask(ctx, retrying); r.Retried != 1 || r.MaxRetries != 2 || r.DueAt.Before(time.Now().Add(50*time.Minute)) {
		t.Fatalf("retry record %+v", r)
	}
	if r, _ := e.app.GetTask(ctx, active); !strings.HasPrefix(r.Worker, "w-") {
		t.Fatalf("active record %+v", r)
	}
	if r, _ := e.app.GetTask(ctx, scheduled); r.DueAt.Before(time.Now().Add(50*time.Minute)) || r.Queue != "idle" {
		t.Fatalf("scheduled record %+v", r)
	}
	if _, err := e.app.GetTask(ctx, "no-such-task"); !errors.Is(err, rediq.ErrTaskNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
	// The states list in their order.
	list, total, err := e.app.ListTasks(ctx, "idle", rediq.StatePending, rediq.ListOptions{})
	if err != nil || total != 1 || len(list) != 1 || list[0].ID != pending {
		t.Fatalf("ListTasks pending = %v, %d, %v", list, total, err)
	}
	for st, id := range map[rediq.TaskState]rediq.TaskID{rediq.StateDead: dead, rediq.StateRetry: retrying,
		rediq.StateSucceeded: succeeded, rediq.StateExpired: expired, rediq.StateActive: active} {
		list, total, err := e.app.ListTasks(ctx, "run", st, rediq.ListOptions{Limit: 10})
		if err != nil || total != 1 || len(list) != 1 || list[0].ID != id || list[0].State != st {
			t.Fatalf("ListTasks %s = %+v, %d, %v", st, list, total, err)
		}
	}
	if _, total, _ := e.app.ListTasks(ctx, "run", rediq.StateScheduled, rediq.ListOptions{}); total != 0 {
		t.Fatalf("run has %d scheduled (the retry is not one)", total)
	}
}

func TestWaitAndRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	type sum struct{ N int }
	var mu sync.Mutex
	finished := map[rediq.TaskID]time.Time{}
	add := rediq.Register(e.app, "add", func(ctx context.Context, n []int) (sum, error) {
		s := 0
		for _, v := range n {
			s += v
		}
		info, _ := rediq.CurrentTask(ctx)
		mu.Lock()
		finished[info.ID] = time.Now()
		mu.Unlock()
		return sum{s}, nil
	}, rediq.Retention(time.Minute))
	fail := rediq.Register(e.app, "fail", func(ctx context.Context, n int) (int, error) { return 0, errors.New("no way") },
		rediq.Retries(1), rediq.Backoff(func(int) time.Duration { return time.Millisecond }), rediq.Retention(time.Minute))
	plain := rediq.Register(e.app, "plain", func(ctx context.Context, n int) (int, error) { return n, nil })
	e.start(e.app, worker.Config{Concurrency: 4})

	// Wait on tasks that finish later, from another App: completion to return.
	other := e.sibling()
	otherAdd := rediq.Register(other, "add", func(context.Context, []int) (sum, error) { return sum{}, nil })
	var lat []time.Duration
	for i := range 60 {
		id, err := add.Enqueue(ctx, []int{i, 1}, rediq.Delay(20*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		got, err := otherAdd.Wait(ctx, id)
		back := time.Now()
		if err != nil || got.N != i+1 {
			t.Fatalf("Wait = %v, %v", got, err)
		}
		mu.Lock()
		lat = append(lat, back.Sub(finished[id]))
		mu.Unlock()
	}
	slices.Sort(lat)
	t.Logf("handler return -> Wait return: p50 %s, p99 %s (n=%d)", lat[len(lat)/2], lat[len(lat)*99/100], len(lat))

	// Run: enqueue and wait.
	if got, err := add.Run(ctx, []int{2, 3}); err != nil || got.N != 5 {
		t.Fatalf("Run = %v, %v", got, err)
	}
	// A task that dies.
	id, _ := fail.Enqueue(ctx, 1)
	_, err := fail.Wait(ctx, id)
	var fe *rediq.TaskFailedError
	if !errors.As(err, &fe) || fe.ID != id || fe.Retried != 1 || fe.Err != "no way" {
		t.Fatalf("Wait on a dead task: %v", err)
	}
	// A short ctx.
	id, _ = add.Enqueue(ctx, []int{1}, rediq.Delay(time.Hour))
	sctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	if _, err := add.Wait(sctx, id); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with a short ctx: %v", err)
	}
	// Without retention: said at once.
	id, _ = plain.Enqueue(ctx, 1, rediq.Delay(time.Hour))
	if _, err := plain.Wait(ctx, id); !errors.Is(err, rediq.ErrNotRetained) {
		t.Fatalf("Wait without retention: %v", err)
	}
	// Plain tasks can still be Run: Run gives them a retention.
	if got, err := plain.Run(ctx, 7); err != nil || got != 7 {
		t.Fatalf("Run of a plain task = %v, %v", got, err)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	block, _ := registerTaskByID(e.app, e.ns, 0)
	retry := rediq.Register(e.app, "retry", func(ctx context.Context, n int) (int, error) {
		e.rdb.RPush(context.Background(), e.ns+":retry-runs", n)
		return 0, errors.New("fails")
	}, rediq.Queue("retryq"), rediq.Retention(time.Minute), rediq.Retries(3), rediq.Backoff(func(int) time.Duration { return 300 * time.Millisecond }))
	e.start(e.app, worker.Config{Queues: []string{"retryq"}, SkipDefaultQueue: true})

	// Waiting tasks never run.
	pending, _ := block.Enqueue(ctx, 1)
	scheduled, _ := block.Enqueue(ctx, 2, rediq.Delay(100*time.Millisecond))
	retrying, _ := retry.Enqueue(ctx, 3)
	if err := e.app.CancelTask(ctx, pending); err != nil {
		t.Fatal(err)
	}
	if err := e.app.CancelTask(ctx, scheduled); err != nil {
		t.Fatal(err)
	}
	c := startChild(t, e, "tasks")
	_ = c
	waitFor(t, 10*time.Second, "the retry's first attempt", func() bool { return e.rdb.LLen(ctx, e.ns+":retry-runs").Val() == 1 })
	waitFor(t, 5*time.Second, "the task to wait for its retry", func() bool { return e.state(retrying) == rediq.StateRetry })
	if err := e.app.CancelTask(ctx, retrying); err != nil {
		t.Fatal(err)
	}
	// A running handler in another process.
	running, _ := block.Enqueue(ctx, 4)
	waitFor(t, 10*time.Second, "the handler to start", func() bool {
		return slices.Contains(e.rdb.LRange(ctx, e.ns+":starts", 0, -1).Val(), string(running))
	})
	asked := time.Now()
	if err := e.app.CancelTask(ctx, running); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the handler to see its ctx cancelled", func() bool { return e.rdb.LLen(ctx, e.ns+":ended").Val() == 1 })
	f := strings.Fields(e.rdb.LIndex(ctx, e.ns+":ended", 0).Val())
	us, _ := strconv.ParseInt(f[2], 10, 64)
	t.Logf("CancelTask -> handler's ctx cancelled in another process: %s", time.UnixMicro(us).Sub(asked))
	if f[0] != string(running) || f[1] != "true" {
		t.Fatalf("ended %v: want %s with cause ErrCancelled", f, running)
	}
	waitFor(t, 10*time.Second, "the task to end cancelled", func() bool { return e.state(running) == rediq.StateCancelled })
	for _, id := range []rediq.TaskID{pending, scheduled, retrying} {
		if st := e.state(id); st != rediq.StateCancelled {
			t.Fatalf("%s is %s", id, st)
		}
	}
	if err := e.app.CancelTask(ctx, running); !errors.Is(err, rediq.ErrTaskFinished) {
		t.Fatalf("cancel a cancelled task: %v", err)
	}
	if _, err := block.Wait(ctx, running); !errors.Is(err, rediq.ErrCancelled) {
		t.Fatalf("Wait on a cancelled task: %v", err)
	}
	// Past the scheduled due time and the retry's backoff: nothing else ran,
	// and the cancelled handler was not retried.
	time.Sleep(400 * time.Millisecond) // the only way to see that something does NOT happen
	if starts := e.rdb.LRange(ctx, e.ns+":starts", 0, -1).Val(); !slices.Equal(starts, []string{string(running)}) {
		t.Fatalf("started: %v, want only %s", starts, running)
	}
	if n := e.rdb.LLen(ctx, e.ns+":retry-runs").Val(); n != 1 {
		t.Fatalf("the retry-waiting task ran %d times after it was cancelled", n-1)
	}
	if hook := e.rdb.LRange(ctx, e.ns+":hook", 0, -1).Val(); !slices.Contains(hook, string(running)+" true") {
		t.Fatalf("AfterTaskFailure saw %v", hook)
	}
	nb, _ := e.rdb.HGet(ctx, e.queue("block").Prefix+"stats", "cancelled").Int()
	nr, _ := e.rdb.HGet(ctx, e.queue("retryq").Prefix+"stats", "cancelled").Int()
	if nb != 3 || nr != 1 {
		t.Fatalf("cancelled counts %d and %d, want 3 and 1", nb, nr)
	}
}

func TestUniqueUnderConcurrency(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	runs := newRecorder[int]()
	task := rediq.Register(e.app, "once", func(ctx context.Context, n int) (int, error) {
		runs.add(n)
		return n, nil
	}, rediq.Unique(time.Minute))
	var mu sync.Mutex
	var ok []rediq.TaskID
	existing := map[rediq.TaskID]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				id, err := task.Enqueue(ctx, 42)
				var dup *rediq.DuplicateError
				mu.Lock()
				switch {
				case err == nil:
					ok = append(ok, id)
				case errors.As(err, &dup) && errors.Is(err, rediq.ErrDuplicate):
					existing[dup.ExistingID]++
				default:
					t.Errorf("Enqueue: %v", err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(ok) != 1 || len(existing) != 1 || existing[ok[0]] != 99 {
		t.Fatalf("written %v, duplicates %v", ok, existing)
	}
	// Another key is its own lock; UniqueKey replaces the arguments.
	if _, err := task.Enqueue(ctx, 43); err != nil {
		t.Fatal(err)
	}
	if _, err := task.Enqueue(ctx, 44, rediq.UniqueKey("k")); err != nil {
		t.Fatal(err)
	}
	if _, err := task.Enqueue(ctx, 45, rediq.UniqueKey("k")); !errors.Is(err, rediq.ErrDuplicate) {
		t.Fatalf("same UniqueKey: %v", err)
	}
	e.start(e.app, worker.Config{})
	got := runs.wait(t, 3, 10*time.Second)
	slices.Sort(got)
	if !slices.Equal(got, []int{42, 43, 44}) {
		t.Fatalf("ran %v", got)
	}
	// Released on success: the same arguments may be enqueued again.
	waitFor(t, 5*time.Second, "the lock to be released", func() bool {
		_, err := task.Enqueue(ctx, 42)
		return err == nil
	})
}

func TestExpireInBehindABusyQueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	ran := newRecorder[int]()
	task := rediq.Register(e.app, "t", func(ctx context.Context, n int) (int, error) {
		ran.add(n)
		time.Sleep(200 * time.Millisecond)
		return n, nil
	}, rediq.Retention(time.Minute))
	if _, err := task.EnqueueMany(ctx, []int{1, 2}); err != nil {
		t.Fatal(err)
	}
	id, err := task.Enqueue(ctx, 3, rediq.ExpireIn(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	e.start(e.app, worker.Config{Concurrency: 1, Prefetch: 1})
	if _, err := task.Wait(ctx, id); !errors.Is(err, rediq.ErrExpired) {
		t.Fatalf("Wait on the expired task: %v", err)
	}
	if got := ran.get(); slices.Contains(got, 3) {
		t.Fatalf("the expired task ran: %v", got)
	}
	if st := e.state(id); st != rediq.StateExpired {
		t.Fatalf("state %s", st)
	}
	if st, err := broker.New(e.rdb, e.ns).Stats(ctx, []string{"default"}); err != nil || st[0].Expired != 1 || st[0].Cancelled != 0 {
		t.Fatalf("counts %+v, %v; want 1 expired", st, err)
	}
}

func TestMemoize(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t) // keys expire by TTL: miniredis only expires them when told to
	e := newEnv(t)
	ctx := context.Background()
	_, memo := registerTaskByID(e.app, e.ns, 700*time.Millisecond)
	calls := func() int { n, _ := e.rdb.Get(ctx, e.ns+":memo-calls").Int(); return n }
	for range 3 {
		startChild(t, e, "tasks", "REDIQ_TEST_MEMO_TTL=700ms")
	}
	// 20 concurrent Runs of the same arguments: one handler call.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := memo.Run(ctx, 21)
			if err == nil && got != 42 {
				err = fmt.Errorf("got %d", got)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := calls(); n != 1 {
		t.Fatalf("20 concurrent Runs called the handler %d times", n)
	}
	// Within the ttl: cached.
	if got, err := memo.Run(ctx, 21); err != nil || got != 42 || calls() != 1 {
		t.Fatalf("second Run = %d, %v; %d calls", got, err, calls())
	}
	// Other arguments run.
	if got, err := memo.Run(ctx, 5); err != nil || got != 10 || calls() != 2 {
		t.Fatalf("Run(5) = %d, %v; %d calls", got, err, calls())
	}
	// After the ttl: runs again.
	waitFor(t, 5*time.Second, "the memo to expire", func() bool {
		return e.rdb.Exists(ctx, e.queue("memo").Prefix+"memo:"+memoDigest(t, "memo", 21)).Val() == 0
	})
	if got, err := memo.Run(ctx, 21); err != nil || got != 42 || calls() != 3 {
		t.Fatalf("Run after the ttl = %d, %v; %d calls", got, err, calls())
	}
}

func TestRetentionEndsByTTL(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t) // keys expire by TTL: miniredis only expires them when told to
	e := newEnv(t)
	ctx := context.Background()
	task := rediq.Register(e.app, "t", func(ctx context.Context, n int) ([]int, error) { return []int{n, n}, nil },
		rediq.Queue("ret"))
	e.start(e.app, worker.Config{Queues: []string{"ret"}, SkipDefaultQueue: true})
	// The namespace's keys, but for the producer's call guards (NS:{Q}:call:LANE,
	// one per lane: at most 4 per queue and process, each kept 5 minutes so a
	// re-sent enqueue is answered from it): how many lanes a burst of enqueues
	// uses is the combiner's business, not retention's.
	keys := func() []string {
		ks, err := e.rdb.Keys(ctx, e.ns+":*").Result()
		if err != nil {
			t.Fatal(err)
		}
		ks = slices.DeleteFunc(ks, func(k string) bool { return strings.Contains(k, ":call:") })
		sort.Strings(ks)
		return ks
	}
	base := len(keys()) // the worker's keys
	// A warm-up makes the queue's standing keys (the queue index; its sequence
	// counter is deleted when pending empties).
	if id, err := task.Enqueue(ctx, 0, rediq.Retention(time.Millisecond)); err != nil {
		t.Fatal(err)
	} else if _, err := task.Wait(ctx, id); err != nil && !errors.Is(err, rediq.ErrTaskNotFound) {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the warm-up's record to go", func() bool {
		return e.rdb.Exists(ctx, e.queue("ret").Prefix+"succeeded").Val() == 0
	})
	base = len(keys())
	var ids []rediq.TaskID
	for i := range 20 {
		id, err := task.Enqueue(ctx, i, rediq.Retention(400*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for i, id := range ids {
		got, err := task.Wait(ctx, id)
		if err != nil || !slices.Equal(got, []int{i, i}) {
			t.Fatalf("Wait %d = %v, %v", i, got, err)
		}
	}
	if n := len(keys()); n < base+20 {
		t.Fatalf("%d keys with results kept, baseline %d", n, base)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(keys()) != base {
		if time.Now().After(deadline) {
			t.Fatalf("keys did not return to the baseline of %d: %v", base, keys())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, id := range ids {
		if _, err := e.app.GetTask(ctx, id); !errors.Is(err, rediq.ErrTaskNotFound) {
			t.Fatalf("GetTask after its retention: %v", err)
		}
	}
	all, _ := e.rdb.Keys(ctx, e.ns+":*").Result()
	t.Logf("keys left: %d (queue structures and call guards)", len(all))
}

func TestDeleteAndRequeue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	task, runs, mend := breakable(e, rediq.Unique(time.Hour))
	ids, err := task.EnqueueMany(ctx, []int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	_, stop := e.start(e.app, worker.Config{})
	runs.wait(t, 3, 10*time.Second)
	waitFor(t, 5*time.Second, "three dead", func() bool { return e.count(e.queue("default").Dead) == 3 })
	stop()
	// Dead tasks keep their Unique lock; deleting one frees it.
	if _, err := task.Enqueue(ctx, 1); !errors.Is(err, rediq.ErrDuplicate) {
		t.Fatalf("enqueue beside a dead unique task: %v", err)
	}
	if err := e.app.DeleteTask(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := e.app.GetTask(ctx, ids[0]); !errors.Is(err, rediq.ErrTaskNotFound) {
		t.Fatalf("deleted task: %v", err)
	}
	if err := e.app.DeleteTask(ctx, ids[0]); !errors.Is(err, rediq.ErrTaskNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	if err := e.app.RequeueTask(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	if r, _ := e.app.GetTask(ctx, ids[1]); r.State != rediq.StatePending || r.Retried != 0 || r.LastError != "" {
		t.Fatalf("requeued %+v", r)
	}
	if err := e.app.RequeueTask(ctx, ids[1]); err == nil {
		t.Fatal("requeue of a pending task succeeded")
	}
	if n, err := e.app.RequeueDead(ctx, "default"); n != 1 || err != nil {
		t.Fatalf("RequeueDead = %d, %v", n, err)
	}
	mend()
	e.start(e.app, worker.Config{})
	got := runs.wait(t, 5, 10*time.Second)
	slices.Sort(got[3:])
	if !slices.Equal(got[3:], []int{2, 3}) {
		t.Fatalf("runs %v", got)
	}
	waitFor(t, 5*time.Second, "the queue to empty", func() bool { return e.count(e.queue("default").Dead) == 0 })
}

func decodeMsgpack(b []byte, v any) error { return msgpack.Unmarshal(b, v) }

// memoDigest is the digest rediq names a Memoize lock with (task.go's lockDigest).
func memoDigest(t *testing.T, name string, args any) string {
	b, err := msgpack.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	h.Write([]byte(name + "\x00a\x00"))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)[:16])
}
