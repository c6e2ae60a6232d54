// Package rediq is a task queue on Redis: register typed task functions, enqueue
// them from any process, and run them on workers (package worker) that fetch
// without polling and lose nothing when they die.
//
// # Tasks
//
// A task is a function with typed arguments and result, registered on an App
// under a unique name with its defaults:
//
//	app, err := rediq.New(rediq.Config{RedisURL: "redis://127.0.0.1:6379/0"})
//	resize := rediq.Register(app, "resize", func(ctx context.Context, a ResizeArgs) (ResizeResult, error) {
//		…
//	}, rediq.Queue("images"), rediq.Priority(5), rediq.Retries(3), rediq.Timeout(30*time.Second))
//
// Any process that registers the same task can enqueue it; per-call options
// override the defaults:
//
//	id, err := resize.Enqueue(ctx, ResizeArgs{…})
//	ids, err := resize.EnqueueMany(ctx, batch, rediq.Priority(-1)) // one round trip
//
// # Ordering
//
// Within a queue, lower priority runs first and equal priorities run in enqueue
// order. A worker serving several queues shares between them by weight (fair by
// default) or strictly in order (worker.Config.StrictPriority).
//
// # Delivery
//
// Delivery is at least once. A worker leases what it fetches and renews the lease
// with a heartbeat; if it dies, another worker takes its tasks back within the
// lease TTL (worker.Config.LeaseTTL) — without counting an attempt, but counting
// the recovery, so that a task that keeps killing workers goes to the dead set
// (worker.Config.MaxRecoveries) instead of looping. A worker that lost its lease
// cannot settle the task any more. A failed attempt (an error, a panic, a
// timeout) is retried after a backoff until the task's retries run out, then the
// task goes to the dead set with its last error; SkipRetry sends it there at once.
// Messages that cannot be decoded, or name a task the worker does not know, go to
// the dead set with the reason.
//
// # Hooks and context
//
// App.On registers hooks for the six events (BeforeWorkerStartup,
// AfterWorkerShutdown, BeforeTaskStart, BeforeTaskRetry, AfterTaskSuccess,
// AfterTaskFailure). Handlers and hooks read the current task through their
// context: CurrentTask, Retried, TaskResult, TaskError, Logger; RunInExecutor
// runs blocking work on the worker's bounded pool.
//
// # Wire format
//
// Messages are small versioned msgpack maps; docs/PROTOCOL.md documents them and
// the key layout so that other languages can enqueue.
package rediq
