package rediq_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
)

// WithID makes enqueue idempotent: the same id twice writes once, and the
// second call says it is a duplicate — in the same queue or another one.
func TestWithIDRefusesDuplicates(t *testing.T) {
	t.Parallel()
	app, rdb := newApp(t)
	ctx := context.Background()
	task := rediq.Register(app, "order", func(context.Context, int) (int, error) { return 0, nil })
	other := rediq.Register(app, "order-audit", func(context.Context, int) (int, error) { return 0, nil }, rediq.Queue("audit"))
	id, err := task.Enqueue(ctx, 1, rediq.WithID("order-123"))
	if err != nil || id != "order-123" {
		t.Fatalf("first enqueue = %q, %v", id, err)
	}
	_, err = task.Enqueue(ctx, 2, rediq.WithID("order-123"))
	var de *rediq.DuplicateError
	if !errors.Is(err, rediq.ErrDuplicate) || !errors.As(err, &de) || de.ExistingID != "order-123" || de.Queue != "default" {
		t.Fatalf("second enqueue: %v; want a *DuplicateError for order-123 in default", err)
	}
	if _, err := other.Enqueue(ctx, 3, rediq.WithID("order-123")); !errors.Is(err, rediq.ErrDuplicate) {
		t.Fatalf("same id in another queue: %v; want ErrDuplicate (ids are unique per namespace)", err)
	}
	if _, err := task.EnqueueMany(ctx, []int{4}, rediq.WithID("order-123"), rediq.Delay(time.Hour)); !errors.Is(err, rediq.ErrDuplicate) {
		t.Fatalf("EnqueueMany with a taken id: %v", err)
	}
	if _, err := task.EnqueueMany(ctx, []int{4, 5}, rediq.WithID("x")); !errors.Is(err, rediq.ErrInvalidOption) {
		t.Fatalf("EnqueueMany of two with one id: %v", err)
	}
	if n := rdb.HLen(ctx, app.Namespace()+":{default}:t").Val(); n != 1 {
		t.Fatalf("%d records, want 1", n)
	}
}

// Callers whose ctx ends while their enqueue waits for a combined
// call leave at once, never hang the others, and every enqueue that returned
// an id without error is in Redis.
func TestEnqueueWithShortDeadlinesNeverHangs(t *testing.T) {
	t.Parallel()
	app, rdb := newApp(t)
	task := rediq.Register(app, "t", func(context.Context, int) (int, error) { return 0, nil })
	const producers, each = 256, 20
	type outcome struct {
		id  rediq.TaskID
		err error
	}
	out := make(chan outcome, producers*each)
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if rand.IntN(20) == 0 { // 5% with a deadline of 0–2ms
					ctx, cancel = context.WithTimeout(ctx, time.Duration(rand.IntN(2000))*time.Microsecond)
				}
				id, err := task.Enqueue(ctx, p*each+i)
				cancel()
				out <- outcome{id, err}
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("enqueues hung")
	}
	close(out)
	ctx := context.Background()
	ok, gaveUp, unknown := 0, 0, 0
	for o := range out {
		switch {
		case o.err == nil:
			ok++
			if !rdb.HExists(ctx, app.Namespace()+":{default}:t", string(o.id)).Val() {
				t.Errorf("enqueue of %s succeeded but it is not in Redis", o.id)
			}
		case errors.Is(o.err, rediq.ErrOutcomeUnknown):
			unknown++
			if o.id == "" {
				t.Error("an unknown outcome without the task id to retry with")
			}
		case errors.Is(o.err, context.DeadlineExceeded):
			gaveUp++
		default:
			t.Errorf("unexpected error %v", o.err)
		}
	}
	t.Logf("%d enqueued, %d gave up before sending, %d left with the outcome unknown", ok, gaveUp, unknown)
	if gaveUp+unknown == 0 {
		t.Fatal("no enqueue was cut short by its deadline: the storm tested nothing")
	}
	// The combiner is not wedged: one more enqueue goes through at once.
	ctx2, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := task.Enqueue(ctx2, -1); err != nil {
		t.Fatalf("enqueue after the storm: %v", err)
	}
}

// A producer with a wrong password gets an error from every kind of
// enqueue, never a success for a task that was not written.
func TestWrongPasswordFailsEveryEnqueue(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t)
	u, err := url.Parse(testredis.URL())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("nobody", "wrong")
	app, err := rediq.New(rediq.Config{RedisURL: u.String(), Namespace: testredis.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	task := rediq.Register(app, "t", func(context.Context, int) (int, error) { return 0, nil })
	ctx := context.Background()
	check := func(what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s with a wrong password reported success", what)
		} else if errors.Is(err, rediq.ErrOutcomeUnknown) {
			t.Errorf("%s: %v; an auth failure is known not to have written", what, err)
		} else if !strings.Contains(err.Error(), "WRONGPASS") && !strings.Contains(err.Error(), "NOAUTH") {
			t.Errorf("%s: %v; want the auth error", what, err)
		}
	}
	for range 2 {
		_, err := task.Enqueue(ctx, 1)
		check("Enqueue", err)
		_, err = task.EnqueueMany(ctx, []int{1, 2})
		check("EnqueueMany", err)
		_, err = task.Enqueue(ctx, 1, rediq.Delay(time.Minute))
		check("delayed Enqueue", err)
	}
}

// Defects 6 and 17: a delay past what a score can hold and an oversize
// message are refused before anything is written.
func TestEnqueueRefusesWhatItCannotStore(t *testing.T) {
	t.Parallel()
	app, rdb := newApp(t)
	task := rediq.Register(app, "t", func(context.Context, []byte) (int, error) { return 0, nil })
	ctx := context.Background()
	if _, err := task.Enqueue(ctx, nil, rediq.ProcessAt(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))); !errors.Is(err, rediq.ErrInvalidOption) {
		t.Fatalf("due in 2100: %v; want ErrInvalidOption", err)
	}
	_, err := task.Enqueue(ctx, make([]byte, 2<<20))
	var te *rediq.TooLargeError
	if !errors.Is(err, rediq.ErrTooLarge) || !errors.As(err, &te) || te.Limit != rediq.DefaultMaxMessageBytes || te.Size < 2<<20 {
		t.Fatalf("2 MiB of args: %v; want a *TooLargeError", err)
	}
	if ks := keys(t, app, rdb); len(ks) != 0 {
		t.Fatalf("refused enqueues wrote %v", ks)
	}
	small, err := rediq.New(rediq.Config{RedisURL: testredis.URL(), Namespace: app.Namespace(), MaxMessageBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	st := rediq.Register(small, "t", func(context.Context, []byte) (int, error) { return 0, nil })
	if _, err := st.Enqueue(ctx, make([]byte, 200)); !errors.Is(err, rediq.ErrTooLarge) {
		t.Fatalf("limit 100: %v", err)
	}
}

// Enqueue returns when its ctx ends, even while Redis stalls, and
// says when the task may have been written; enqueueing again with the id
// then writes nothing twice.
func TestEnqueueHonoursItsDeadline(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t)
	proxy := testredis.NewProxy(t, strings.TrimPrefix(testredis.URL(), "redis://"))
	ns := testredis.Namespace(t)
	app, err := rediq.New(rediq.Config{RedisURL: proxy.URL(), Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	rdb := testredis.Client(t)
	task := rediq.Register(app, "t", func(context.Context, int) (int, error) { return 0, nil })
	ctx := context.Background()
	if _, err := task.Enqueue(ctx, 0); err != nil { // warm: the queue is indexed, the script loaded
		t.Fatal(err)
	}
	proxy.SetLatency(1500 * time.Millisecond)
	for _, many := range []bool{false, true} {
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		began := time.Now()
		var id rediq.TaskID
		if many {
			var ids []rediq.TaskID
			ids, err = task.EnqueueMany(short, []int{1})
			if len(ids) == 1 {
				id = ids[0]
			}
		} else {
			id, err = task.Enqueue(short, 1)
		}
		took := time.Since(began)
		cancel()
		if took > time.Second {
			t.Errorf("many=%v: returned after %v with a 200ms ctx", many, took)
		}
		if !errors.Is(err, rediq.ErrOutcomeUnknown) || !errors.Is(err, context.DeadlineExceeded) || id == "" {
			t.Fatalf("many=%v: %q, %v; want ErrOutcomeUnknown with the id", many, id, err)
		}
		// The stalled call lands; the retry with the same id writes nothing.
		testredis.WaitFor(t, 10*time.Second, "the stalled enqueue to land", func() bool {
			return rdb.HExists(ctx, ns+":{default}:t", string(id)).Val()
		})
		retry, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = task.Enqueue(retry, 1, rediq.WithID(string(id)))
		cancel()
		if !errors.Is(err, rediq.ErrDuplicate) {
			t.Fatalf("many=%v: retry with the id: %v; want ErrDuplicate", many, err)
		}
	}
	if n := rdb.HLen(ctx, ns+":{default}:t").Val(); n != 3 {
		t.Fatalf("%d records, want 3", n)
	}
}
