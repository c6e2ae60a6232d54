package rediq_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
)

// enqueueUnreachable enqueues with a 10s deadline and reports the error and how
// long Enqueue and EnqueueMany took.
func enqueueUnreachable(t *testing.T, url string) {
	t.Helper()
	app, err := rediq.New(rediq.Config{RedisURL: url, Namespace: testredis.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	task := rediq.Register(app, "t", func(context.Context, int) (int, error) { return 0, nil })
	for _, c := range []struct {
		name    string
		enqueue func(context.Context) (rediq.TaskID, error)
	}{
		{"Enqueue", func(ctx context.Context) (rediq.TaskID, error) { return task.Enqueue(ctx, 1) }},
		{"EnqueueMany", func(ctx context.Context) (rediq.TaskID, error) {
			ids, err := task.EnqueueMany(ctx, []int{1, 2})
			if len(ids) > 0 {
				return ids[0], err
			}
			return "", err
		}},
		{"Enqueue WithID", func(ctx context.Context) (rediq.TaskID, error) {
			return task.Enqueue(ctx, 1, rediq.WithID("order-1"))
		}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		began := time.Now()
		id, err := c.enqueue(ctx)
		took := time.Since(began)
		cancel()
		t.Logf("%s: returned after %s: %q, %v", c.name, took.Round(time.Millisecond), id, err)
		if err == nil {
			t.Fatalf("%s: succeeded on an unreachable Redis", c.name)
		}
		if errors.Is(err, rediq.ErrOutcomeUnknown) || errors.Is(err, context.DeadlineExceeded) || id != "" {
			t.Errorf("%s: %q, %v; want a definite error: nothing was sent", c.name, id, err)
		}
		if !errors.Is(err, rediq.ErrUnreachable) {
			t.Errorf("%s: %v; want it to match ErrUnreachable", c.name, err)
		}
		// Milliseconds in fact; the bound leaves room for a loaded machine.
		if took > 2*time.Second {
			t.Errorf("%s: took %s; want it to fail at once", c.name, took.Round(time.Millisecond))
		}
	}
}

// An Enqueue to a closed port fails at once with a definite
// error. It used to retry for 10s and then say "outcome unknown".
func TestEnqueueRefusedFailsFast(t *testing.T) {
	t.Parallel()
	enqueueUnreachable(t, "redis://"+testredis.ClosedPort(t))
}

// A plain redis:// URL to a port that speaks only TLS fails
// at once, and says what is likely wrong. It used to wait out its deadline and
// say "outcome unknown".
func TestEnqueuePlainToTLSPortFailsFast(t *testing.T) {
	t.Parallel()
	s := testredis.StartTLS(t)
	app, err := rediq.New(rediq.Config{RedisURL: "redis://" + s.Addr, Namespace: testredis.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	enqueueUnreachable(t, "redis://"+s.Addr)
	task := rediq.Register(app, "t", func(context.Context, int) (int, error) { return 0, nil })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = task.Enqueue(ctx, 1)
	if err == nil || !strings.Contains(err.Error(), "rediss://") {
		t.Fatalf("%v; want it to suggest rediss://", err)
	}
}
