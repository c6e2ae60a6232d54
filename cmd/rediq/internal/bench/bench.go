// Package bench runs the standard queue workload (../shared/BENCH.md) against a
// Redis: enqueue, batched enqueue, Redis memory per task, drain throughput and
// enqueue-to-start latency. It works in a namespace of its own and deletes its
// keys afterwards; it never flushes anything.
package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/version"
	"github.com/rediq/rediq/worker"
)

// Config is the workload.
type Config struct {
	Redis       redis.UniversalClient // the caller's; not closed
	Tasks       int                   // N, default 50,000
	Producers   int                   // enqueue goroutines, default 16
	Concurrency int                   // worker concurrency, default 50
	Batch       int                   // tasks per EnqueueMany call, default 1,000
	Rate        int                   // latency phase enqueues per second, default 1,000
	Duration    time.Duration         // latency phase length, default 5s
	RunSamples  int                   // Run phase: sequential Runs, default 1,000
	// Progress, if set, is told as each phase starts.
	Progress func(phase string)
	// WaitReplicas and WaitReplicasTimeout are rediq.Config's: every enqueue,
	// fetch and settlement waits for that many replicas.
	WaitReplicas        int
	WaitReplicasTimeout time.Duration
}

// Result is the JSON object BENCH.md describes.
type Result struct {
	System             string  `json:"system"`
	Tasks              int     `json:"tasks"`
	EnqueuePerSec      float64 `json:"enqueue_per_s"`
	EnqueueBatchPerSec float64 `json:"enqueue_batch_per_s"`
	ProcessPerSec      float64 `json:"process_per_s"`
	LatencyP50Ms       float64 `json:"latency_p50_ms"`
	LatencyP99Ms       float64 `json:"latency_p99_ms"`
	RunP50Ms           float64 `json:"run_p50_ms"`
	RunP99Ms           float64 `json:"run_p99_ms"`
	RunSamples         int     `json:"run_samples"`
	BytesPerRetained   float64 `json:"redis_bytes_per_retained_result"`
	BytesPerTask       float64 `json:"redis_bytes_per_task"`
	LatencyRate        int     `json:"latency_rate_per_s"`
	LatencySamples     int     `json:"latency_samples"`
	Producers          int     `json:"producers"`
	Concurrency        int     `json:"concurrency"`
	BatchSize          int     `json:"batch_size"`
	WaitReplicas       int     `json:"wait_replicas"`
	// Redis's own CPU (INFO cpu: used_cpu_user + used_cpu_sys, summed over a
	// Cluster's masters) over each phase, per task, in µs: what a task costs
	// the Redis thread, the bound on the tasks per second one Redis carries.
	// Only as clean as the Redis is quiet.
	RedisCPUEnqueue float64 `json:"redis_cpu_us_per_task_enqueue"`
	RedisCPUBatch   float64 `json:"redis_cpu_us_per_task_batch"`
	RedisCPUProcess float64 `json:"redis_cpu_us_per_task_process"`
}

// Payload is the standard task's arguments.
type Payload struct {
	UserID int64  `msgpack:"user_id"`
	Action string `msgpack:"action"`
	Ts     int64  `msgpack:"ts"`
}

// Run runs the workload and removes every key it made, even when it fails.
func Run(ctx context.Context, cfg Config) (res Result, err error) {
	if cfg.Redis == nil {
		return res, errors.New("bench: no Redis client")
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.Tasks, 50000)
	def(&cfg.Producers, 16)
	def(&cfg.Concurrency, 50)
	def(&cfg.Batch, 1000)
	def(&cfg.Rate, 1000)
	def(&cfg.RunSamples, 1000)
	if cfg.Duration <= 0 {
		cfg.Duration = 5 * time.Second
	}
	progress := cfg.Progress
	if progress == nil {
		progress = func(string) {}
	}
	ns := fmt.Sprintf("rediqbench%08x", rand.Uint32())
	var app *rediq.App
	defer func() {
		if app == nil {
			return
		}
		if _, cerr := app.DeleteNamespace(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = fmt.Errorf("bench: delete its keys (namespace %s): %w", ns, cerr)
		}
		app.Close() // Wait's subscription; the client is the caller's
	}()
	app, err = rediq.New(rediq.Config{Redis: cfg.Redis, Namespace: ns,
		WaitReplicas: cfg.WaitReplicas, WaitReplicasTimeout: cfg.WaitReplicasTimeout})
	if err != nil {
		return res, err
	}
	res = Result{System: "rediq " + version.String(), Tasks: cfg.Tasks, LatencyRate: cfg.Rate,
		Producers: cfg.Producers, Concurrency: cfg.Concurrency, BatchSize: cfg.Batch,
		WaitReplicas: app.WaitReplicas()}

	h := newHandlers(int64(cfg.Tasks))
	task := rediq.Register(app, "noop", h.noop)
	runTask := rediq.Register(app, "noop-run", func(context.Context, Payload) (struct{}, error) {
		return struct{}{}, nil
	})
	payload := Payload{UserID: 12345, Action: "send_welcome_email", Ts: 1700000000}

	progress("enqueue")
	if err := enqueuePhase(ctx, cfg, &res, task, payload); err != nil {
		return res, err
	}
	progress("enqueue_batch")
	if err := batchPhase(ctx, cfg, &res, ns, payload); err != nil {
		return res, err
	}

	// 3. Process: one worker drains the N pending tasks; it stays up, idle,
	// for the latency and Run phases.
	progress("process")
	w, err := worker.New(app, worker.Config{Queues: []string{rediq.DefaultQueue}, SkipDefaultQueue: true,
		Concurrency: cfg.Concurrency, ShutdownTimeout: 10 * time.Second})
	if err != nil {
		return res, err
	}
	c0, err := redisCPU(ctx, cfg.Redis)
	if err != nil {
		return res, err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	t0 := time.Now()
	go func() { errc <- w.Run(runCtx) }()
	select {
	case <-h.drained:
	case err := <-errc:
		return res, fmt.Errorf("bench: worker stopped: %v", err)
	case <-ctx.Done():
		return res, ctx.Err()
	}
	res.ProcessPerSec = float64(cfg.Tasks) / time.Since(t0).Seconds()
	if res.RedisCPUProcess, err = cpuPerTask(ctx, cfg.Redis, c0, cfg.Tasks); err != nil {
		stop()
		<-errc
		return res, err
	}

	progress("latency")
	err = latencyPhase(ctx, cfg, &res, h, task, payload)
	if err == nil {
		progress("run")
		err = runPhases(ctx, cfg, &res, app, runTask, payload)
	}
	stop()
	if werr := <-errc; err == nil {
		err = werr
	}
	return res, err
}

// handlers counts the no-op task's runs: in the process phase until all N
// ran, in the latency phase the time from each enqueue to its start.
type handlers struct {
	n         int64
	processed atomic.Int64
	drained   chan struct{}
	latMode   atomic.Bool
	latMu     sync.Mutex
	lat       []time.Duration
}

func newHandlers(n int64) *handlers { return &handlers{n: n, drained: make(chan struct{})} }

func (h *handlers) noop(_ context.Context, p Payload) (struct{}, error) {
	if h.latMode.Load() {
		d := time.Since(time.Unix(0, p.Ts))
		h.latMu.Lock()
		h.lat = append(h.lat, d)
		h.latMu.Unlock()
	} else if h.processed.Add(1) == h.n {
		close(h.drained)
	}
	return struct{}{}, nil
}

func (h *handlers) latencies() int {
	h.latMu.Lock()
	defer h.latMu.Unlock()
	return len(h.lat)
}

// enqueuePhase is phase 1: N single calls from the producers, and the Redis
// memory per pending task.
func enqueuePhase(ctx context.Context, cfg Config, res *Result, task *rediq.Task[Payload, struct{}], payload Payload) error {
	m0, err := usedMemory(ctx, cfg.Redis)
	if err != nil {
		return err
	}
	c0, err := redisCPU(ctx, cfg.Redis)
	if err != nil {
		return err
	}
	took, err := produce(ctx, cfg.Producers, cfg.Tasks, 1, func(ctx context.Context, _ int) error {
		_, err := task.Enqueue(ctx, payload)
		return err
	})
	if err != nil {
		return err
	}
	res.EnqueuePerSec = float64(cfg.Tasks) / took.Seconds()
	if res.RedisCPUEnqueue, err = cpuPerTask(ctx, cfg.Redis, c0, cfg.Tasks); err != nil {
		return err
	}
	m1, err := usedMemory(ctx, cfg.Redis)
	if err != nil {
		return err
	}
	res.BytesPerTask = float64(m1-m0) / float64(cfg.Tasks)
	return nil
}

// batchPhase is phase 2: the same N through EnqueueMany, into a namespace of
// its own, deleted after (no worker serves it).
func batchPhase(ctx context.Context, cfg Config, res *Result, ns string, payload Payload) (err error) {
	app, err := rediq.New(rediq.Config{Redis: cfg.Redis, Namespace: ns + "b",
		WaitReplicas: cfg.WaitReplicas, WaitReplicasTimeout: cfg.WaitReplicasTimeout})
	if err != nil {
		return err
	}
	defer func() {
		if _, cerr := app.DeleteNamespace(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = fmt.Errorf("bench: delete its keys (namespace %sb): %w", ns, cerr)
		}
		app.Close()
		// Redis frees what UNLINK dropped in a background thread, whose CPU
		// INFO counts: let it finish, or the process phase would pay for it.
		if werr := lazyFreed(ctx, cfg.Redis); werr != nil && err == nil {
			err = werr
		}
	}()
	batchTask := rediq.Register(app, "noop-batch", func(context.Context, Payload) (struct{}, error) {
		return struct{}{}, nil
	}, rediq.Queue("batch"))
	batch := make([]Payload, cfg.Batch)
	for i := range batch {
		batch[i] = payload
	}
	c0, err := redisCPU(ctx, cfg.Redis)
	if err != nil {
		return err
	}
	took, err := produce(ctx, cfg.Producers, cfg.Tasks, cfg.Batch, func(ctx context.Context, size int) error {
		_, err := batchTask.EnqueueMany(ctx, batch[:size])
		return err
	})
	if err != nil {
		return err
	}
	res.EnqueueBatchPerSec = float64(cfg.Tasks) / took.Seconds()
	if res.RedisCPUBatch, err = cpuPerTask(ctx, cfg.Redis, c0, cfg.Tasks); err != nil {
		return err
	}
	return nil
}

// latencyPhase is phase 4: a steady rate into the idle worker; the time from
// the enqueue call to the handler's start.
func latencyPhase(ctx context.Context, cfg Config, res *Result, h *handlers, task *rediq.Task[Payload, struct{}], payload Payload) error {
	h.latMode.Store(true)
	defer h.latMode.Store(false)
	tick := time.NewTicker(time.Second / time.Duration(cfg.Rate))
	defer tick.Stop()
	end := time.Now().Add(cfg.Duration)
	sent := 0
	for time.Now().Before(end) {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		p := payload
		p.Ts = time.Now().UnixNano()
		if _, err := task.Enqueue(ctx, p); err != nil {
			return err
		}
		sent++
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.latencies() < sent && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	h.latMu.Lock()
	defer h.latMu.Unlock()
	slices.Sort(h.lat)
	if len(h.lat) > 0 {
		q := func(p float64) float64 { return float64(h.lat[int(p*float64(len(h.lat)-1))]) / 1e6 }
		res.LatencyP50Ms, res.LatencyP99Ms = q(0.50), q(0.99)
	}
	res.LatencySamples = len(h.lat)
	if res.LatencySamples < sent {
		return fmt.Errorf("bench: %d of %d latency tasks ran within 10s", res.LatencySamples, sent)
	}
	return nil
}

// runPhases measures Run (enqueue and Wait) of a no-op task into the idle
// worker, sequentially, and the Redis memory a retained result costs.
func runPhases(ctx context.Context, cfg Config, res *Result, app *rediq.App, runTask *rediq.Task[Payload, struct{}], payload Payload) error {
	var took []time.Duration
	for range cfg.RunSamples {
		t0 := time.Now()
		if _, err := runTask.Run(ctx, payload); err != nil {
			return fmt.Errorf("bench: Run: %w", err)
		}
		took = append(took, time.Since(t0))
	}
	slices.Sort(took)
	q := func(p float64) float64 { return float64(took[int(p*float64(len(took)-1))]) / 1e6 }
	res.RunP50Ms, res.RunP99Ms, res.RunSamples = q(0.50), q(0.99), len(took)

	// Retained results: N/10 tasks kept for an hour after they succeed. The
	// Run phase's own records (kept a minute) are in the baseline.
	n := max(cfg.Tasks/10, 1)
	m0, err := usedMemory(ctx, cfg.Redis)
	if err != nil {
		return err
	}
	args := make([]Payload, n)
	for i := range args {
		args[i] = payload
	}
	if _, err := runTask.EnqueueMany(ctx, args, rediq.Retention(time.Hour)); err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, kept, err := app.ListTasks(ctx, rediq.DefaultQueue, rediq.StateSucceeded, rediq.ListOptions{Limit: 1})
		if err != nil {
			return err
		}
		if kept >= n+res.RunSamples {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %d of %d retained tasks finished within 60s", kept-res.RunSamples, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	m1, err := usedMemory(ctx, cfg.Redis)
	if err != nil {
		return err
	}
	res.BytesPerRetained = float64(m1-m0) / float64(n)
	return nil
}

// produce runs total units of work in calls of up to size from g goroutines and
// returns how long it took.
func produce(ctx context.Context, g, total, size int, call func(ctx context.Context, size int) error) (time.Duration, error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, g)
	t0 := time.Now()
	for range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				end := next.Add(int64(size))
				start := end - int64(size)
				if start >= int64(total) {
					return
				}
				if err := call(ctx, int(min(end, int64(total))-start)); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(t0)
	select {
	case err := <-errc:
		return 0, err
	default:
		return took, nil
	}
}

func usedMemory(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	v, err := infoSum(ctx, rdb, "memory", "used_memory")
	return int64(v), err
}

// redisCPU is Redis's CPU time so far, user and system, in seconds.
func redisCPU(ctx context.Context, rdb redis.UniversalClient) (float64, error) {
	return infoSum(ctx, rdb, "cpu", "used_cpu_user", "used_cpu_sys")
}

// lazyFreed waits, up to 10 s, until Redis has no object left to free in the
// background (INFO memory lazyfree_pending_objects is 0).
func lazyFreed(ctx context.Context, rdb redis.UniversalClient) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := infoSum(ctx, rdb, "memory", "lazyfree_pending_objects")
		if err != nil || n == 0 || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// cpuPerTask is the Redis CPU from since to now per task, in µs.
func cpuPerTask(ctx context.Context, rdb redis.UniversalClient, since float64, tasks int) (float64, error) {
	now, err := redisCPU(ctx, rdb)
	return (now - since) / float64(tasks) * 1e6, err
}

// infoSum sums the INFO section's fields over the server, or a Cluster's
// masters.
func infoSum(ctx context.Context, rdb redis.UniversalClient, section string, fields ...string) (float64, error) {
	var mu sync.Mutex
	var total float64
	read := func(ctx context.Context, c *redis.Client) error {
		s, err := c.Info(ctx, section).Result()
		if err != nil {
			return fmt.Errorf("bench: INFO %s: %w", section, err)
		}
		for _, l := range strings.Split(s, "\r\n") {
			for _, f := range fields {
				if v, ok := strings.CutPrefix(l, f+":"); ok {
					n, err := strconv.ParseFloat(v, 64)
					if err != nil {
						return fmt.Errorf("bench: %s %q: %w", f, v, err)
					}
					mu.Lock()
					total += n
					mu.Unlock()
				}
			}
		}
		return nil
	}
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		err := c.ForEachMaster(ctx, read)
		return total, err
	case *redis.Client:
		err := read(ctx, c)
		return total, err
	}
	return 0, fmt.Errorf("bench: cannot read INFO through a %T", rdb)
}
