package worker_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/worker"
)

// childMain runs in a child process started by a test (the test binary run
// again with REDIQ_TEST_CHILD set), so that the test can kill it or signal it.
func childMain(mode string) int {
	app, err := rediq.New(rediq.Config{RedisURL: os.Getenv("REDIQ_TEST_URL"), Namespace: os.Getenv("REDIQ_TEST_NS")})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	switch mode {
	case "hold": // take tasks and never finish them: the parent SIGKILLs us
		rediq.Register(app, "job", func(ctx context.Context, _ int) (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		})
		ttl := envDuration("REDIQ_TEST_LEASE_TTL")
		w, err := worker.New(app, worker.Config{Concurrency: 50, Prefetch: 100, LeaseTTL: ttl})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		err = w.Run(context.Background()) // returns only if it fails: the parent kills us
		fmt.Fprintln(os.Stderr, "hold worker:", err)
		return 4
	case "main": // the worker command line, stopped by the parent's SIGINT
		jobTime := envDuration("REDIQ_TEST_JOB_TIME")
		rediq.Register(app, "job", func(ctx context.Context, n int) (int, error) {
			select {
			case <-time.After(jobTime):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			info, _ := rediq.CurrentTask(ctx)
			if err := app.Redis().SAdd(ctx, os.Getenv("REDIQ_TEST_NS")+":done", string(info.ID)).Err(); err != nil {
				return 0, err
			}
			return n, nil
		})
		worker.Main(app)
		return 5 // Main exits
	case "subcommand": // a program whose worker is its "worker" command: myapp worker $REDIQ_TEST_ARGS
		rediq.Register(app, "double", func(_ context.Context, n int) (int, error) { return 2 * n, nil })
		code := worker.MainArgs(app, "myapp worker", strings.Fields(os.Getenv("REDIQ_TEST_ARGS")), worker.Config{Concurrency: 2})
		fmt.Fprintln(os.Stderr, "MainArgs returned", code)
		return code
	case "record": // run "job"s, logging each start; -1 kills this process mid-task
		ns := os.Getenv("REDIQ_TEST_NS")
		jobTime := envDuration("REDIQ_TEST_JOB_TIME")
		rediq.Register(app, "job", func(ctx context.Context, n int) (int, error) {
			info, _ := rediq.CurrentTask(ctx)
			entry := fmt.Sprintf("%s %d %d", info.ID, os.Getpid(), time.Now().UnixMilli())
			if err := app.Redis().RPush(ctx, ns+":starts", entry).Err(); err != nil {
				return 0, err
			}
			if n == -1 {
				_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
				select {}
			}
			select {
			case <-time.After(jobTime):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			return n, app.Redis().HIncrBy(ctx, ns+":done", string(info.ID), 1).Err()
		})
		atoi := func(k string) int {
			n, err := strconv.Atoi(os.Getenv(k))
			if err != nil {
				panic(fmt.Sprintf("$%s: %v", k, err))
			}
			return n
		}
		ttl := envDuration("REDIQ_TEST_LEASE_TTL")
		w, err := worker.New(app, worker.Config{Concurrency: atoi("REDIQ_TEST_CONCURRENCY"),
			Prefetch: atoi("REDIQ_TEST_PREFETCH"), LeaseTTL: ttl})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		err = w.Run(context.Background())
		fmt.Fprintln(os.Stderr, "record worker:", err)
		return 4
	case "limit": // run the limited tasks of limit_test.go, logging starts and ends
		return limitChild(app)
	case "cron": // fire the schedule "tick" (@every 100ms); the parent runs its tasks
		return cronChild(app)
	case "runs": // "job"s that log their starts and ends (see runsChild)
		return runsChild(app)
	case "batch": // batch tasks, run by a worker of its own
		registerBatchTasks(app)
		w, err := worker.New(app, worker.Config{Concurrency: 20, Name: "child-" + strconv.Itoa(os.Getpid())})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		err = w.Run(context.Background())
		fmt.Fprintln(os.Stderr, "batch worker:", err)
		return 4
	case "producer": // opens a keep-alive batch, enqueues, and waits to be killed
		task, _ := registerBatchTasks(app)
		ns := os.Getenv("REDIQ_TEST_NS")
		b, err := app.NewBatch(context.Background(), rediq.BatchOptions{KeepAliveTimeout: envDuration("REDIQ_TEST_KEEPALIVE")})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		n, sleep := 40, 2*time.Second
		if v := os.Getenv("REDIQ_TEST_BATCH_N"); v != "" {
			n, _ = strconv.Atoi(v)
			sleep = envDuration("REDIQ_TEST_BATCH_SLEEP")
		}
		args := make([]batchArgs, n)
		for i := range args {
			args[i] = batchArgs{N: i, Sleep: sleep}
		}
		if _, err := task.EnqueueMany(context.Background(), args, rediq.InBatch(b)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		if err := app.Redis().Set(context.Background(), ns+":producer-batch", b.ID(), 0).Err(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		select {}
	case "submit": // opens a detached batch, enqueues, and exits without Close or Wait
		task, done := registerBatchTasks(app)
		ns := os.Getenv("REDIQ_TEST_NS")
		b, err := app.NewBatch(context.Background(), rediq.BatchOptions{Detached: true,
			KeepAliveTimeout: envDuration("REDIQ_TEST_KEEPALIVE"), OnComplete: done.With(1)})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		args := make([]batchArgs, 20)
		for i := range args {
			args[i] = batchArgs{N: i, Lines: 1}
		}
		if _, err := task.EnqueueMany(context.Background(), args, rediq.InBatch(b)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		if err := app.Redis().Set(context.Background(), ns+":producer-batch", b.ID(), 0).Err(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		return 0 // the process exits: no Close, of the batch or the App
	case "tasks": // issue 7's tasks: "block" until cancelled, "memo" counted and memoized
		ns := os.Getenv("REDIQ_TEST_NS")
		registerTaskByID(app, ns, envDuration("REDIQ_TEST_MEMO_TTL"))
		w, err := worker.New(app, worker.Config{Concurrency: 10, Name: "child-" + strconv.Itoa(os.Getpid())})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 3
		}
		err = w.Run(context.Background())
		fmt.Fprintln(os.Stderr, "tasks worker:", err)
		return 4
	}
	fmt.Fprintln(os.Stderr, "unknown child mode", strconv.Quote(mode))
	return 3
}

// envDuration reads a duration the parent set (unset: 0); a child given a bad
// one panics (its parent sees the output) rather than run with zero.
func envDuration(k string) time.Duration {
	v := os.Getenv(k)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		panic(fmt.Sprintf("$%s: %v", k, err))
	}
	return d
}
