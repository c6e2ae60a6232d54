package rediq_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rediq/rediq"
)

// PurgeQueue deletes the tasks of the states it is given, and only those:
// pending (the lists and what waits recovering), scheduled and retry apart
// though they share an index, dead, and retained finished records; a task of
// a batch that it deletes while waiting counts as dropped.
func TestPurgeQueueDeletesOnlyTheStatesNamed(t *testing.T) {
	t.Parallel()
	app, _ := newApp(t)
	ctx := context.Background()
	task := rediq.Register(app, "p", func(context.Context, int) (int, error) { return 0, nil }, rediq.Queue("purge"))
	for i := range 1200 { // more than a page
		if _, err := task.Enqueue(ctx, i, rediq.Priority(i%3)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		if _, err := task.Enqueue(ctx, i, rediq.Delay(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := app.PurgeQueue(ctx, "purge"); !errors.Is(err, rediq.ErrInvalidOption) {
		t.Fatalf("purge of no state = %v", err)
	}
	if _, err := app.PurgeQueue(ctx, "purge", rediq.StateActive); !errors.Is(err, rediq.ErrInvalidOption) {
		t.Fatalf("purge of active = %v", err)
	}
	n, err := app.PurgeQueue(ctx, "purge", rediq.StateRetry, rediq.StateDead)
	if err != nil || n != 0 {
		t.Fatalf("purge of retry and dead = %d, %v; want 0 (none)", n, err)
	}
	if st := stats(t, app, "purge"); st.Pending != 1200 || st.Scheduled != 3 {
		t.Fatalf("stats %+v", st)
	}
	n, err = app.PurgeQueue(ctx, "purge", rediq.StatePending)
	if err != nil || n != 1200 {
		t.Fatalf("purge of pending = %d, %v; want 1200", n, err)
	}
	if st := stats(t, app, "purge"); st.Pending != 0 || st.Scheduled != 3 {
		t.Fatalf("stats after purging pending %+v", st)
	}
	n, err = app.PurgeQueue(ctx, "purge", rediq.StateScheduled)
	if err != nil || n != 3 {
		t.Fatalf("purge of scheduled = %d, %v; want 3", n, err)
	}
	for _, k := range app.Redis().Keys(ctx, app.Namespace()+":{purge}:*").Val() {
		if !strings.Contains(k, ":call:") { // producers' call guards expire by themselves
			t.Fatalf("key left: %v", k)
		}
	}
}

func stats(t *testing.T, app *rediq.App, q string) rediq.QueueStats {
	t.Helper()
	st, err := app.QueueStats(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return st[0]
}
