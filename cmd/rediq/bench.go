package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/cmd/rediq/internal/bench"
)

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", "rediq bench [flags]\n\n"+
		"Runs the standard queue workload and prints one JSON object: enqueue_per_s (single\n"+
		"Enqueue calls from -p goroutines), enqueue_batch_per_s (EnqueueMany, --batch per call),\n"+
		"redis_bytes_per_task (Redis used_memory after the enqueue phase minus before, per\n"+
		"task), process_per_s (one worker, -c handlers, draining the N tasks) and\n"+
		"latency_p50_ms / latency_p99_ms (enqueue call to handler start, at --rate into the\n"+
		"idle worker for --duration), run_p50_ms / run_p99_ms (Run, enqueue and wait for the\n"+
		"result, of a no-op task into the idle worker, --run-samples times in a row) and\n"+
		"redis_bytes_per_retained_result (used_memory per succeeded task kept with\n"+
		"rediq.Retention, over N/10 tasks), and redis_cpu_us_per_task_enqueue, _batch and\n"+
		"_process (Redis's own CPU, INFO cpu user+sys, over each phase per task: what a task\n"+
		"costs the Redis thread). With --wait-replicas every enqueue, fetch and\n"+
		"settlement waits for that many replicas (WAIT): the cost of Config.WaitReplicas;\n"+
		"wait_replicas in the output says what was measured.\n\n"+
		"It is safe on a shared Redis: it never flushes anything, works in a fresh namespace\n"+
		"and deletes its keys when done. But the memory and CPU figures count whatever else happens\n"+
		"in that Redis meanwhile: it is only as clean as the Redis is quiet. Progress goes\n"+
		"to stderr.")
	var rf redisFlags
	rf.registerConn(fs)
	// --redis was this command's name for --redis-url.
	fs.StringVar(&rf.url, "redis", "", "")
	_ = fs.MarkDeprecated("redis", "use --redis-url")
	fs.SetOutput(stderr) // for pflag's notice of a deprecated flag, all it prints
	n := fs.IntP("tasks", "n", 50000, "tasks per phase")
	c := fs.IntP("concurrency", "c", 50, "worker concurrency")
	p := fs.IntP("producers", "p", 16, "producer goroutines")
	batch := fs.Int("batch", 1000, "tasks per EnqueueMany call")
	rate := fs.Int("rate", 1000, "latency phase: tasks enqueued per second")
	dur := fs.Duration("duration", 5*time.Second, "latency phase: how long")
	runs := fs.Int("run-samples", 1000, "Run phase: sequential Runs")
	// The figures are JSON whatever --output says: accepted so that a
	// script's or a settings' -o json does not fail here.
	out := registerOutput(fs, "the same JSON object; bench prints nothing else")
	waitReplicas := fs.Int("wait-replicas", 0, "replicas that must confirm every enqueue, fetch and settlement (Redis WAIT; the master needs that many) [$REDIQ_WAIT_REPLICAS]")
	waitTimeout := fs.Duration("wait-replicas-timeout", 0, "how long each WAIT waits for them (default "+rediq.DefaultWaitReplicasTimeout.String()+")")
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	if fs.Changed("output") && *out != outputJSON {
		return usageErrorf("bench: --output %s: bench prints its figures as JSON only", *out)
	}
	for name, v := range map[string]int{"tasks": *n, "concurrency": *c, "producers": *p, "batch": *batch, "rate": *rate, "run-samples": *runs} {
		if v <= 0 {
			return usageErrorf("bench: --%s must be positive", name)
		}
	}
	if *dur <= 0 {
		return usageErrorf("bench: --duration must be positive")
	}
	if *waitReplicas < 0 || *waitTimeout < 0 {
		return usageErrorf("bench: --wait-replicas and --wait-replicas-timeout must not be negative")
	}
	app, err := rf.open()
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer closeApp(app)
	res, err := bench.Run(ctx, bench.Config{
		Redis: app.Redis(), Tasks: *n, Producers: *p, Concurrency: *c,
		Batch: *batch, Rate: *rate, Duration: *dur, RunSamples: *runs,
		WaitReplicas: *waitReplicas, WaitReplicasTimeout: *waitTimeout,
		Progress: func(phase string) { fmt.Fprintf(stderr, "rediq bench: %s…\n", phase) },
	})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	enc := json.NewEncoder(stdout)
	return enc.Encode(res)
}
