// Package rediq is a task queue on Redis. A program registers typed task
// functions on an App; any process that registers the same tasks enqueues
// them; workers (package worker) fetch them without polling, run them and
// settle their outcomes, and a worker that dies loses none of its tasks:
// another one takes them over.
//
// # Registering
//
// A task is a function of typed arguments to a typed result, registered on an
// App under a name that is unique in the App, with its defaults:
//
//	app, err := rediq.New(rediq.Config{RedisURL: "redis://127.0.0.1:6379/0"})
//	resize := rediq.Register(app, "resize", func(ctx context.Context, a ResizeArgs) (ResizeResult, error) {
//		…
//	}, rediq.Queue("images"), rediq.Priority(5), rediq.Retries(3), rediq.Timeout(30*time.Second))
//
// Arguments and results are encoded with msgpack (struct fields by name, or
// by `msgpack:"…"` tags). Register panics on an empty or duplicate name or a
// bad option: programming errors, found at start-up.
//
// # Enqueueing
//
// Enqueue writes one task to its queue and returns its TaskID; EnqueueMany
// writes many in one round trip. Per-call options override the registered
// defaults:
//
//	id, err := resize.Enqueue(ctx, ResizeArgs{…}, rediq.Delay(time.Minute))
//	ids, err := resize.EnqueueMany(ctx, all, rediq.Priority(-1))
//
// Arguments that cannot be encoded, a message larger than
// Config.MaxMessageBytes, a bad option or a ctx already done fail before
// anything is written. An error matching ErrOutcomeUnknown means the request
// went out and no answer came back: the task may or may not be enqueued.
// Enqueue returns its id with that error; enqueueing again with WithID(id) is
// safe, and ErrDuplicate then says the first call landed.
//
// Within a queue, lower priority runs first (MinPriority to MaxPriority, 0 by
// default) and equal priorities run in enqueue order. A worker serving
// several queues shares between them by weight, or strictly in the order
// given (worker.Config.StrictPriority).
//
// # Tasks by id
//
// Every task has one record in Redis, found by its id from any process:
//
//	thumb, err := resize.Run(ctx, ResizeArgs{…})            // enqueue, wait, typed result
//	id, err := resize.Enqueue(ctx, args, rediq.Retention(time.Hour))
//	res, err := resize.Wait(ctx, id)                        // the typed result, once it finished
//	rec, err := app.GetTask(ctx, id)                        // state, times, retries, last error, …
//	args, err := resize.Args(rec)                           // the record's arguments, typed
//	err = app.CancelTask(ctx, id)
//
// A task's record lives while the task waits, runs or is dead. What succeeded,
// was cancelled or expired is kept only with Retention(d), for d; Wait needs
// it, and Run gives its task at least RunRetention. Wait listens for the
// task's end on a subscription the App shares, so it returns within
// milliseconds of the worker settling the task. GetTask and ListTasks read
// records (Task.Args and Task.Result decode them); CancelTask stops a waiting
// task before it starts and cancels a running handler's ctx with cause
// ErrCancelled; DeleteTask, RequeueTask and RequeueDead act on records too.
//
// Unique(ttl) refuses a second enqueue of the same task and arguments (or
// UniqueKey) while the first holds the lock, with a *DuplicateError naming the
// task that holds it. ExpireIn(d) and ExpireAt(t) give a deadline after which
// the task never starts: it ends expired. Memoize(ttl) lets Run return a
// result computed for the same arguments within ttl without running the task
// again, and makes concurrent Runs of the same arguments, in any process,
// share one run.
//
// # Batches
//
// A batch groups the tasks one producer run enqueues (NewBatch, then
// InBatch(b) on each enqueue). What their handlers write with Print, Printf or
// Output comes back to the producer live (Batch.Follow, Batch.Lines, or
// FollowBatch from another process); their results go to tables
// (ResultTable, Collect, ReadTable); Batch.Wait waits until every task has
// finished and returns the counts; Task.With gives BatchOptions.OnComplete, a
// task enqueued exactly once when the batch completes. By default a batch
// lives while its producer does: if the producer's keep-alives stop (the
// process died) or it calls Close before the batch completes, the batch is
// stopped (no task of it starts any more, running handlers see ctx cancelled
// with cause ErrBatchStopped). A Detached
// batch runs to its end whatever the producer does. StopBatch stops any
// batch; BatchStat, ListBatches and BatchErrors read what a batch keeps for
// its retention.
//
// # Workers
//
// A worker (worker.New, then Worker.Run) serves the queues of its
// worker.Config (none given: those of the App's tasks), and "default", with
// bounded concurrency; it drains when Run's ctx ends or on Worker.Shutdown:
// running and prefetched tasks may finish, and what never started goes back
// to its queue. worker.Main gives a program the worker's command line (flags,
// environment, signals); worker.MainArgs does the same as one command of a
// program with several.
//
// Delivery is at least once. A worker leases what it fetches and renews the
// lease with a heartbeat; if it dies, another worker takes its tasks over
// within the lease TTL (worker.Config.LeaseTTL), without counting an attempt
// but counting the recovery, so that a task that keeps killing workers goes to
// the dead set (worker.Config.MaxRecoveries) instead of looping. A worker that
// lost its lease cannot settle the task any more. A failed attempt (an error,
// a panic, a timeout) is retried after a backoff until the task's retries run
// out; then the task goes to the dead set with its last error. A message that
// cannot be decoded goes there at once; one naming a task the worker does not
// know is retried (a worker that knows it may be starting) and goes there
// after worker.Config.UnknownTaskRetries.
//
// App.On registers hooks for the six events (BeforeWorkerStartup,
// AfterWorkerShutdown, BeforeTaskStart, BeforeTaskRetry, AfterTaskSuccess,
// AfterTaskFailure). Handlers and hooks read the current task through their
// context: CurrentTask, Retried, Recovered, TaskResult, TaskError, Logger;
// RunInExecutor runs blocking work on the worker's bounded pool.
//
// # Errors
//
// Fixed errors are Err… values, matched with errors.Is; errors with data are
// pointer types, matched with errors.As: *DuplicateError (which also matches
// ErrDuplicate), *TooLargeError (ErrTooLarge), *EncodeError, *TaskFailedError
// (Wait's error for a dead task) and *PanicError (the error of an attempt
// whose handler panicked). A handler
// returns SkipRetry(err) to send its task to the dead set at once
// (ErrSkipRetry). A handler's ctx ends with a cause that says why:
// ErrCancelled (CancelTask), ErrBatchStopped (its batch stopped) or
// ErrLeaseLost (its worker stalled past the lease and another one took the
// task over); an attempt that runs past its timeout fails with ErrTimeout.
//
// # Wire format
//
// Messages are small versioned msgpack maps; docs/PROTOCOL.md documents them and
// the key layout so that other languages can enqueue.
package rediq
