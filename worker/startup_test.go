package worker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/settings"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// A worker given no queues serves those of the App's registered tasks (and
// "default"), so a program need not repeat them.
func TestServesTheQueuesOfRegisteredTasks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ran := newRecorder[string]()
	for _, q := range []string{"emails", "images"} {
		task := rediq.Register(e.app, "t-"+q, func(context.Context, int) (int, error) {
			ran.add(q)
			return 0, nil
		}, rediq.Queue(q))
		if _, err := task.Enqueue(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
	}
	e.start(e.app, worker.Config{})
	ran.wait(t, 2, 10*time.Second)
}

// A worker with a Redis it cannot reach says so once,
// naming the server but not the password, before its startup hooks run.
func TestWorkerChecksRedisBeforeStartupHooks(t *testing.T) {
	t.Parallel()
	addr := testredis.ClosedPort(t)
	app, err := rediq.New(rediq.Config{RedisURL: "redis://:hunter2@" + addr + "/0", Namespace: testredis.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	hooked := false
	app.On(rediq.BeforeWorkerStartup, func(context.Context) error {
		hooked = true
		return nil
	})
	w, err := worker.New(app, worker.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = w.Run(ctx)
	t.Logf("Run: %v", err)
	if err == nil || !strings.Contains(err.Error(), addr) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Run = %v; want an error naming %s without the password", err, addr)
	}
	if !errors.Is(err, rediq.ErrUnreachable) {
		t.Errorf("Run = %v; want it to match ErrUnreachable", err)
	}
	if hooked {
		t.Error("the startup hook ran though Redis could not be reached")
	}
}

// The "worker started" line names the Redis (without its password) and the
// namespace.
func TestWorkerStartedNamesItsRedis(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	obs, logs := observer.New(zap.DebugLevel)
	e.start(e.app, worker.Config{Logger: zap.New(obs)})
	testredis.WaitFor(t, 10*time.Second, "the worker to start", func() bool {
		return logs.FilterMessage("worker started").Len() == 1
	})
	f := logs.FilterMessage("worker started").All()[0].ContextMap()
	if f["redis"] != settings.Redact(testredis.URL()) || f["namespace"] != e.ns {
		t.Fatalf("worker started with %v; want redis=%s namespace=%s", f, settings.Redact(testredis.URL()), e.ns)
	}
}
