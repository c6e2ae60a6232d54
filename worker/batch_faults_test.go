package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// A worker whose connections are cut while its handlers print loses no line
// (at least once: a send whose reply was lost may arrive twice), and the
// batch still completes with every count right.
func TestBatchOutputSurvivesCutConnections(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t)
	e := newEnv(t)
	ctx := context.Background()
	echo, _ := registerBatchTasks(e.app)
	proxy := testredis.NewProxy(t, strings.TrimPrefix(testredis.URL(), "redis://"))
	wapp, err := rediq.New(rediq.Config{RedisURL: proxy.URL(), Namespace: e.ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wapp.Close() }) // after the worker's stop (cleanups run last first)
	registerBatchTasks(wapp)
	e.start(wapp, worker.Config{Concurrency: 10})
	b, err := e.app.NewBatch(ctx, rediq.BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	args := make([]batchArgs, 100)
	for i := range args {
		args[i] = batchArgs{N: i, Lines: 3, Sleep: time.Duration(i%10) * 10 * time.Millisecond}
	}
	if _, err := echo.EnqueueMany(ctx, args, rediq.InBatch(b)); err != nil {
		t.Fatal(err)
	}
	stopCuts := make(chan struct{})
	cutsDone := make(chan struct{})
	go func() {
		defer close(cutsDone)
		for {
			select {
			case <-stopCuts:
				return
			case <-time.After(40 * time.Millisecond):
				proxy.CutAll()
			}
		}
	}()
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	st, err := b.Wait(wctx)
	close(stopCuts)
	<-cutsDone
	if err != nil || st.Succeeded != 100 {
		errs, _ := e.app.BatchErrors(ctx, b.ID())
		t.Fatalf("stat %+v, %v; errors %+v", st, err, errs)
	}
	seen := map[string]bool{}
	for l, err := range b.Lines(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		text, _, _ := strings.Cut(l.Text, " at=")
		seen[text] = true
	}
	if len(seen) != 300 {
		t.Fatalf("%d distinct lines of 300 arrived", len(seen))
	}
}

// Collect while Redis is away for longer than go-redis retries a command:
// the rows go in once it is back, and the handler, which returns Collect's
// error, succeeds.
func TestCollectSurvivesRedisAway(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t)
	e := newEnv(t)
	ctx := context.Background()
	proxy := testredis.NewProxy(t, strings.TrimPrefix(testredis.URL(), "redis://"))
	wapp, err := rediq.New(rediq.Config{RedisURL: proxy.URL(), Namespace: e.ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wapp.Close() }) // after the worker's stop
	started, away := make(chan struct{}, 1), make(chan struct{})
	collect := func(app *rediq.App) *rediq.Task[int, int] {
		return rediq.Register(app, "collect", func(ctx context.Context, n int) (int, error) {
			select {
			case started <- struct{}{}:
			default:
			}
			<-away
			return n, rediq.Collect(ctx, "rows", batchRow{n, "collected"})
		}, rediq.Queue("batch"), rediq.Retries(0))
	}
	task := collect(e.app)
	collect(wapp)
	e.start(wapp, worker.Config{})
	b, err := e.app.NewBatch(ctx, rediq.BatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := task.Enqueue(ctx, 7, rediq.InBatch(b)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		close(away)
		t.Fatal("the handler did not start")
	}
	proxy.Refuse(true)
	proxy.CutAll()
	close(away)
	// Away for longer than go-redis retries a command (3 retries, at most
	// 512 ms apart).
	time.Sleep(2 * time.Second)
	proxy.Refuse(false)
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	st, err := b.Wait(wctx)
	if err != nil || st.Succeeded != 1 || st.Failed != 0 {
		errs, _ := e.app.BatchErrors(ctx, b.ID())
		t.Fatalf("stat %+v, %v; errors %+v", st, err, errs)
	}
	rows, err := rediq.ReadTable[batchRow](ctx, e.app, b.ID(), "rows", rediq.TableOptions{})
	if err != nil || len(rows) == 0 || rows[0] != (batchRow{7, "collected"}) {
		t.Fatalf("rows %+v, %v", rows, err)
	}
}
