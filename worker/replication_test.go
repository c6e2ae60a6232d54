package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// A worker whose fetches and settlements wait for a replica that does not
// answer (the package's server has none) goes on: an unconfirmed write costs
// a task a second run after a failover, never its loss, so the worker does
// not stall on it. It says so, once per interval rather than per round trip.
func TestWorkerGoesOnWhenReplicasDoNotConfirm(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t) // miniredis has no WAIT
	e := newEnv(t)
	ran := newRecorder[int]()
	rediq.Register(e.app, "unconfirmed", func(_ context.Context, n int) (int, error) {
		ran.add(n)
		return n, nil
	})
	core, logs := observer.New(zap.WarnLevel)
	e.start(e.app, worker.Config{WaitReplicas: 1, WaitReplicasTimeout: 10 * time.Millisecond, Logger: zap.New(core)})
	task := rediq.Register(e.sibling(), "unconfirmed", func(context.Context, int) (int, error) { return 0, nil })
	const n = 5
	for i := range n {
		if _, err := task.Enqueue(context.Background(), i); err != nil {
			t.Fatal(err)
		}
	}
	ran.wait(t, n, 10*time.Second)
	testredis.WaitFor(t, 5*time.Second, "the queue to empty", func() bool {
		return e.pendingLen(rediq.DefaultQueue) == 0 && e.active(rediq.DefaultQueue) == 0
	})
	warned := logs.FilterMessageSnippet("replicas did not confirm").Len()
	if warned != 1 {
		t.Errorf("%d warnings of unconfirmed writes, want 1 (at most one per 10s): %v", warned, logs.All())
	}
}

// On a Cluster, WAIT must reach the master that ran the script: go-redis's
// cluster pipeline would send a keyless WAIT to any master, so rediq sends the
// scripts and their WAIT on the client of the master that owns each slot. With
// queues on all three masters (which have no replicas, so this cannot tell one
// master's count from another's), every enqueue gets its WAIT's answer — 0
// replicas, not a routing error — and the worker, whose fetches and
// settlements go the same way, runs every task.
func TestWaitReplicasOnCluster(t *testing.T) {
	t.Parallel()
	addrs := testredis.StartCluster(t)
	ns := testredis.Namespace(t)
	url := "redis+cluster://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2]
	app, err := rediq.New(rediq.Config{RedisURL: url, Namespace: ns, WaitReplicas: 1, WaitReplicasTimeout: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	ran := newRecorder[string]()
	task := rediq.Register(app, "clustered", func(ctx context.Context, _ int) (int, error) {
		info, _ := rediq.CurrentTask(ctx)
		ran.add(info.Queue)
		return 0, nil
	})
	// Queue names whose hash tags fall on each of the three masters.
	queues := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	for _, q := range queues {
		id, err := task.Enqueue(context.Background(), 0, rediq.Queue(q))
		var re *rediq.ReplicationError
		if !errors.As(err, &re) || re.Acked != 0 || len(re.IDs) != 1 || re.IDs[0] != id {
			t.Fatalf("enqueue to %q: %v, want a *ReplicationError for %s with 0 replicas", q, err, id)
		}
	}
	startSentinelWorker(t, app, worker.Config{Queues: queues, Logger: zap.NewNop()})
	ran.wait(t, len(queues), 20*time.Second)
}
