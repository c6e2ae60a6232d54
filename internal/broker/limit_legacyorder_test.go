package broker_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rediq/rediq/internal/broker"
)

// A fetch that stops at its 256th lane (flag 4, More) still takes version 3's
// lists of every slot afterwards (takeLegacy(4095)): a lowest-priority task of
// a version-3 producer is leased while higher-priority lanes wait for the
// next fetch.
func TestLookedCapKeepsLegacyBehindHigherLanes(t *testing.T) {
	t.Parallel()
	b, q, rdb := setup(t)
	ctx := context.Background()
	var ms []broker.Message
	for i := range 300 {
		ms = append(ms, flowMsg(fmt.Sprintf("f%d", i), fmt.Sprintf("f%d", i)))
	}
	enqueue(t, b, q, ms...)
	v3enqueue := oldScript(t, "enqueue", false)
	if _, err := v3enqueue.Run(ctx, rdb, []string{q.Records, q.Pending, q.Scheduled, q.Seq},
		q.Channel, "", broker.Epoch, q.Prefix, "low", 4095, 0, "body-low", "").Result(); err != nil {
		t.Fatal(err)
	}
	register(t, b, q, "A", time.Minute)
	got := fetch(t, b, "A", time.Minute, broker.FetchRequest{Queue: q, N: 400, StartNow: 400})
	if slices.Contains(ids(got.Tasks), "low") && rdb.Exists(ctx, q.PendingLanes).Val() == 1 {
		t.Fatalf("fetched %d tasks with the priority-4095 task 'low' (More %v) while %d lanes of priority 2048 still wait",
			len(got.Tasks), got.More, rdb.ZCard(ctx, q.PendingLanes).Val())
	}
}
