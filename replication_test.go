package rediq_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
)

// An enqueue that no replica confirms (the package's server has none) is
// written on the master, but not reported as a plain success: a
// *ReplicationError names the tasks, and they are in Redis.
func TestEnqueueNotReplicated(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t) // miniredis has no WAIT
	ctx := context.Background()
	const timeout = 50 * time.Millisecond
	app, err := rediq.New(rediq.Config{RedisURL: testredis.URL(), Namespace: testredis.Namespace(t),
		WaitReplicas: 1, WaitReplicasTimeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	task := rediq.Register(app, "repl", func(context.Context, int) (int, error) { return 0, nil })

	check := func(what string, err error, ids []rediq.TaskID) {
		t.Helper()
		var re *rediq.ReplicationError
		if !errors.Is(err, rediq.ErrNotReplicated) || !errors.As(err, &re) || errors.Is(err, rediq.ErrOutcomeUnknown) {
			t.Fatalf("%s: %v, want a *ReplicationError", what, err)
		}
		if !slices.Equal(re.IDs, ids) || re.Acked != 0 || re.Want != 1 || re.Timeout != timeout {
			t.Fatalf("%s: %+v, want ids %v, 0 of 1 replicas, %s", what, re, ids, timeout)
		}
		for _, id := range ids {
			rec, err := app.GetTask(ctx, id)
			if err != nil || rec.State != rediq.StatePending {
				t.Fatalf("%s: task %s: %+v, %v; want it pending", what, id, rec, err)
			}
		}
	}
	start := time.Now()
	id, err := task.Enqueue(ctx, 1)
	if took := time.Since(start); took < timeout {
		t.Errorf("Enqueue returned after %s, before WAIT's %s", took, timeout)
	}
	check("Enqueue", err, []rediq.TaskID{id})
	ids, err := task.EnqueueMany(ctx, []int{1, 2, 3})
	check("EnqueueMany", err, ids)

	// A script Redis no longer knows goes again with its source, and a WAIT of
	// its own: still a *ReplicationError, not NOSCRIPT. (Other tests' scripts
	// are reloaded the same way.)
	if err := testredis.Client(t).ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	id2, err := task.Enqueue(ctx, 2)
	check("Enqueue after SCRIPT FLUSH", err, []rediq.TaskID{id2})

	// Sent again with its id it writes nothing: a duplicate, not a replication error.
	_, err = task.Enqueue(ctx, 1, rediq.WithID(string(id)))
	if !errors.Is(err, rediq.ErrDuplicate) || errors.Is(err, rediq.ErrNotReplicated) {
		t.Fatalf("enqueue again with its id: %v, want ErrDuplicate only", err)
	}
}

func TestWaitReplicasConfig(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  rediq.Config
		want string
	}{
		{"negative", rediq.Config{WaitReplicas: -1}, "must not be negative"},
		{"timeout past the read timeout", rediq.Config{RedisURL: "redis://127.0.0.1:1?read_timeout=1s", WaitReplicas: 1, WaitReplicasTimeout: 2 * time.Second},
			"shorter than the client's read timeout"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			app, err := rediq.New(c.cfg)
			if err == nil {
				app.Close()
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New: %v, want an error saying %q", err, c.want)
			}
		})
	}
}
