package rediq_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/rediq/rediq"
)

// Queues and QueueStats count what was enqueued, per queue and state, for the
// named queues or every queue; a bad queue name is refused.
func TestQueueStatsCountsByState(t *testing.T) {
	t.Parallel()
	app, _ := newApp(t)
	ctx := context.Background()
	now := rediq.Register(app, "now", func(context.Context, int) (int, error) { return 0, nil }, rediq.Queue("a"))
	later := rediq.Register(app, "later", func(context.Context, int) (int, error) { return 0, nil }, rediq.Queue("b"))
	if _, err := now.EnqueueMany(ctx, []int{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := later.Enqueue(ctx, 1, rediq.Delay(time.Hour)); err != nil {
		t.Fatal(err)
	}
	names, err := app.Queues(ctx)
	if err != nil || !slices.Equal(names, []string{"a", "b"}) {
		t.Fatalf("Queues = %v, %v; want [a b]", names, err)
	}
	all, err := app.QueueStats(ctx)
	want := []rediq.QueueStats{{Name: "a", Pending: 3}, {Name: "b", Scheduled: 1}}
	if err != nil || !slices.Equal(all, want) {
		t.Fatalf("QueueStats() = %+v, %v; want %+v", all, err, want)
	}
	one, err := app.QueueStats(ctx, "b")
	if err != nil || !slices.Equal(one, want[1:]) {
		t.Fatalf("QueueStats(b) = %+v, %v; want %+v", one, err, want[1:])
	}
	if _, err := app.QueueStats(ctx, "no{good}"); err == nil {
		t.Fatal("QueueStats of a bad queue name: no error")
	}
}

// DeleteNamespace leaves none of the App's keys and says how many it deleted.
func TestDeleteNamespaceLeavesNoKey(t *testing.T) {
	t.Parallel()
	app, rdb := newApp(t)
	ctx := context.Background()
	task := rediq.Register(app, "t", func(context.Context, int) (int, error) { return 0, nil })
	if _, err := task.EnqueueMany(ctx, make([]int, 1200)); err != nil {
		t.Fatal(err)
	}
	before := len(keys(t, app, rdb))
	n, err := app.DeleteNamespace(ctx)
	if err != nil || n != before || before == 0 {
		t.Fatalf("DeleteNamespace = %d, %v; want %d keys deleted", n, err, before)
	}
	if left := keys(t, app, rdb); len(left) != 0 {
		t.Fatalf("keys left: %v", left)
	}
}

// BatchOutput of a batch nobody ran is empty; of an unknown batch,
// ErrBatchNotFound. The checks refuse what New would refuse.
func TestBatchOutputAndChecks(t *testing.T) {
	t.Parallel()
	app, _ := newApp(t)
	ctx := context.Background()
	b, err := app.NewBatch(ctx, rediq.BatchOptions{Detached: true})
	if err != nil {
		t.Fatal(err)
	}
	for l, err := range app.BatchOutput(ctx, b.ID()) {
		t.Fatalf("BatchOutput of a silent batch yielded %v, %v", l, err)
	}
	for _, err := range app.BatchOutput(ctx, b.ID()+1000) {
		if !errors.Is(err, rediq.ErrBatchNotFound) {
			t.Fatalf("BatchOutput of an unknown batch: %v, want ErrBatchNotFound", err)
		}
	}
	var ue *rediq.RedisURLError
	if err := rediq.CheckRedisURL("http://u:hunter2@h"); !errors.As(err, &ue) {
		t.Fatalf("CheckRedisURL(http) = %v, want a *RedisURLError", err)
	}
	if err := rediq.CheckRedisURL("redis://127.0.0.1:1/0"); err != nil {
		t.Fatalf("CheckRedisURL of a good URL: %v", err)
	}
	if rediq.CheckNamespace("a b") == nil || rediq.CheckQueueName("") == nil || rediq.CheckQueueName("q") != nil {
		t.Fatal("CheckNamespace/CheckQueueName accept a bad name or refuse a good one")
	}
}
