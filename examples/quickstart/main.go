// Command quickstart shows rediq end to end in one process: it registers two
// tasks and the six hooks, enqueues, runs a worker until every task has settled,
// runs one more task with Run (enqueue and wait for its result), reads a dead
// task's record with GetTask, prints what happened and exits 0.
//
// It needs no Redis: without REDIQ_REDIS_URL it starts an embedded miniredis.
//
//	go run ./examples/quickstart
//	REDIQ_REDIS_URL=redis://127.0.0.1:6379/0 go run ./examples/quickstart
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/worker"
)

type ResizeArgs struct {
	Image string
	Width int
}

type ResizeResult struct {
	Path string
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run() (err error) {
	url := os.Getenv("REDIQ_REDIS_URL")
	if url == "" {
		mr, err := miniredis.Run()
		if err != nil {
			return err
		}
		defer mr.Close()
		url = "redis://" + mr.Addr()
		fmt.Println("no REDIQ_REDIS_URL: using an embedded miniredis at", mr.Addr())
	}
	// A namespace of its own, deleted at the end, so a shared Redis is left as
	// it was found.
	ns := fmt.Sprintf("quickstart%d", time.Now().UnixNano())
	app, err := rediq.New(rediq.Config{RedisURL: url, Namespace: ns})
	if err != nil {
		return err
	}
	defer app.Close()
	ctx := context.Background()
	// Runs before app.Close, and after the worker has stopped: every return
	// below that follows its start waits for it.
	defer func() {
		if _, cerr := app.DeleteNamespace(ctx); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()

	var (
		mu       sync.Mutex
		settled  int
		allDone  = make(chan struct{})
		expected = 4
	)
	finish := func() {
		mu.Lock()
		defer mu.Unlock()
		if settled++; settled == expected {
			close(allDone)
		}
	}

	resize := rediq.Register(app, "resize", func(ctx context.Context, a ResizeArgs) (ResizeResult, error) {
		// Blocking or CPU-heavy work goes to the worker's bounded executor pool.
		return rediq.RunInExecutor(ctx, func() (ResizeResult, error) {
			return ResizeResult{Path: fmt.Sprintf("/thumbs/%s@%d.jpg", strings.TrimSuffix(a.Image, ".jpg"), a.Width)}, nil
		})
	}, rediq.Queue("images"), rediq.Priority(5), rediq.Retries(2), rediq.Timeout(10*time.Second))

	flaky := rediq.Register(app, "flaky", func(ctx context.Context, n int) (string, error) {
		if rediq.Retried(ctx) < n {
			return "", errors.New("not yet")
		}
		return "ok after retries", nil
	}, rediq.Backoff(func(int) time.Duration { return 20 * time.Millisecond }))

	hooks(app, finish)

	ids, err := resize.EnqueueMany(ctx, []ResizeArgs{{"cat.jpg", 128}, {"dog.jpg", 256}})
	if err != nil {
		return err
	}
	fmt.Println("enqueued resize:", ids)
	id, err := flaky.Enqueue(ctx, 2)
	if err != nil {
		return err
	}
	fmt.Println("enqueued flaky:", id)
	id, err = flaky.Enqueue(ctx, 5, rediq.Retries(0)) // fails once, no retries: goes to dead
	if err != nil {
		return err
	}
	fmt.Println("enqueued flaky (no retries):", id)

	w, err := worker.New(app, worker.Config{Queues: []string{"images"}, Concurrency: 4})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- w.Run(runCtx) }()
	select {
	case <-allDone:
	case err := <-errc:
		return fmt.Errorf("worker stopped early: %v", err)
	case <-time.After(30 * time.Second):
		stop()
		<-errc
		return errors.New("tasks did not finish within 30s")
	}

	// Tasks by id. Run enqueues and waits for the result (pub/sub, no
	// polling); GetTask reads any task's record, in any queue, by its id.
	thumb, err := resize.Run(ctx, ResizeArgs{"bird.jpg", 64})
	if err != nil {
		return err
	}
	fmt.Println("Run resize:", thumb.Path)
	rec, err := app.GetTask(ctx, id) // the flaky task without retries
	if err != nil {
		return err
	}
	fmt.Printf("GetTask %s: %s in queue %q after %d retries, last error %q\n",
		rec.ID, rec.State, rec.Queue, rec.Retried, rec.LastError)
	stop()
	if err := <-errc; err != nil {
		return err
	}
	fmt.Println("done")
	return nil
}

// say prints a task's lifecycle event.
func say(ctx context.Context, event string) {
	info, _ := rediq.CurrentTask(ctx)
	fmt.Printf("  %-22s %s retried=%d\n", event, info.Name, rediq.Retried(ctx))
}

// hooks prints each lifecycle event; finish counts the tasks that ended.
func hooks(app *rediq.App, finish func()) {
	app.On(rediq.BeforeWorkerStartup, func(ctx context.Context) error {
		fmt.Println("  before_worker_startup")
		return nil
	})
	app.On(rediq.BeforeTaskStart, func(ctx context.Context) error { say(ctx, "before_task_start"); return nil })
	app.On(rediq.BeforeTaskRetry, func(ctx context.Context) error {
		say(ctx, "before_task_retry")
		fmt.Println("    error:", rediq.TaskError(ctx))
		return nil
	})
	app.On(rediq.AfterTaskSuccess, func(ctx context.Context) error {
		say(ctx, "after_task_success")
		res, _ := rediq.TaskResult(ctx)
		fmt.Printf("    result: %+v\n", res)
		finish()
		return nil
	})
	app.On(rediq.AfterTaskFailure, func(ctx context.Context) error {
		say(ctx, "after_task_failure")
		finish()
		return nil
	})
	app.On(rediq.AfterWorkerShutdown, func(ctx context.Context) error {
		fmt.Println("  after_worker_shutdown")
		return nil
	})
}
