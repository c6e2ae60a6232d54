package broker_test

import (
	"context"
	"testing"
	"time"

	"github.com/rediq/rediq/internal/broker"
)

// A task dropped after batch_start noted it (a cancel request or its deadline
// seen in the moment after), on its first attempt, never started: "unstarted"
// takes it out of the started set and counts it dropped; "dropped" of a task
// that ran before (a retry) stays cancelled. Re-sent, nothing counts twice.
func TestBatchNoteUnstarted(t *testing.T) {
	t.Parallel()
	b, _, rdb := setup(t)
	ctx := context.Background()
	k, err := b.NewBatch(ctx, broker.BatchInfo{KeepAlive: time.Minute, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.AddMembers(ctx, k, []string{"first", "retried"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"first", "retried"} {
		if stopped, err := b.BatchStart(ctx, k, id); err != nil || stopped != "" {
			t.Fatalf("BatchStart(%s) = %q, %v", id, stopped, err)
		}
	}
	for range 2 { // re-sent
		if _, err := b.BatchNote(ctx, k, broker.BatchNoteParams{Task: "first", Worker: "w", End: broker.EndUnstarted}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.BatchNote(ctx, k, broker.BatchNoteParams{Task: "retried", Worker: "w", End: broker.EndDropped}); err != nil {
			t.Fatal(err)
		}
	}
	stat := rdb.HGetAll(ctx, k.Stat).Val()
	if stat["dropped"] != "1" || stat["cancelled"] != "1" {
		t.Errorf("stat %v; want dropped 1 (first), cancelled 1 (retried)", stat)
	}
	if rdb.SIsMember(ctx, k.Started, "first").Val() || !rdb.SIsMember(ctx, k.Started, "retried").Val() {
		t.Errorf("started %v; want only retried", rdb.SMembers(ctx, k.Started).Val())
	}
}
