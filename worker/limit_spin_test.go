package worker_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// evalCalls reads how many EVALSHA and EVAL calls the server has run.
func evalCalls(t *testing.T, e *env) int64 {
	t.Helper()
	info := e.rdb.Info(context.Background(), "commandstats").Val()
	var n int64
	for _, line := range strings.Split(info, "\n") {
		if strings.HasPrefix(line, "cmdstat_evalsha:") || strings.HasPrefix(line, "cmdstat_eval:") {
			f := strings.TrimPrefix(strings.SplitN(strings.SplitN(line, ":", 2)[1], ",", 2)[0], "calls=")
			c, _ := strconv.ParseInt(f, 10, 64)
			n += c
		}
	}
	return n
}

// With its one runner busy, a worker whose queue holds more than 256
// fetchable lanes of a limited type (300 limit keys) fetches in a hot loop:
// each fetch (StartNow 0) passes 256 limited lanes, takes nothing and
// answers More, which marks the queue ready again at once.
func TestWorkerDoesNotSpinOverLimitedLanes(t *testing.T) {
	testredis.RequireReal(t)
	e := newEnv(t)
	ctx := context.Background()
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	q := rediq.Queue("spin")
	busy := rediq.Register(e.app, "spin.busy", func(ctx context.Context, _ int) (int, error) {
		started <- struct{}{}
		<-release
		return 0, nil
	}, q)
	lim := rediq.Register(e.app, "spin.lim", func(ctx context.Context, _ int) (int, error) { return 0, nil }, q,
		rediq.RateLimit(1000, time.Second))
	_, stop := e.start(e.app, worker.Config{Queues: []string{"spin"}, SkipDefaultQueue: true, Concurrency: 1, LeaseTTL: 1500 * time.Millisecond})
	defer func() { close(release); stop() }()
	if _, err := busy.Enqueue(ctx, 0); err != nil {
		t.Fatal(err)
	}
	<-started
	for i := range 300 {
		if _, err := lim.Enqueue(ctx, i, rediq.LimitKey("k"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	// A heartbeat (every LeaseTTL/3) marks the queue ready: the next fetch
	// sees the 300 lanes.
	time.Sleep(time.Second)
	before := evalCalls(t, e)
	time.Sleep(time.Second)
	if n := evalCalls(t, e) - before; n > 50 {
		t.Logf("%d script calls", n)
		t.Fatalf("%d script calls in one second with the only runner busy: the fetcher spins", n)
	}
}
