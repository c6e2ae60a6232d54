package rediq

import (
	"context"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/rediq/rediq/internal/core"
)

// CurrentTask returns the task a handler or task hook is running for; ok is
// false outside one (in worker hooks, or in a producer).
func CurrentTask(ctx context.Context) (info TaskInfo, ok bool) {
	s := core.StateFrom(ctx)
	if s == nil || s.ID == "" {
		return TaskInfo{}, false
	}
	return TaskInfo{
		// Args is copied: the worker's buffer is not the handler's to keep.
		ID: TaskID(s.ID), Name: s.Name, Queue: s.Queue, Priority: s.Priority, Args: slices.Clone(s.Args),
		EnqueuedAt: time.UnixMilli(s.EnqueuedAt), Worker: s.Worker, MaxRetries: s.MaxRetries, Timeout: s.Timeout,
		Recovered: s.Recovered, LimitKey: s.LimitKey,
	}, true
}

// Retried returns how many attempts of the current task failed before this one
// (0 on the first attempt). In BeforeTaskRetry and AfterTaskFailure it counts
// the attempt that just failed as not yet retried: it equals the handler's value.
func Retried(ctx context.Context) int {
	if s := core.StateFrom(ctx); s != nil {
		return s.Retried
	}
	return 0
}

// Recovered returns how many times a worker died (or froze past its lease) while
// running the current task before this run; 0 outside a task. A handler with
// side effects that are not idempotent can check it.
func Recovered(ctx context.Context) int {
	if s := core.StateFrom(ctx); s != nil {
		return s.Recovered
	}
	return 0
}

// TaskResult returns the current task's result; ok is true only in
// AfterTaskSuccess hooks.
func TaskResult(ctx context.Context) (result any, ok bool) {
	if s := core.StateFrom(ctx); s != nil && s.HasResult {
		return s.Result, true
	}
	return nil, false
}

// TaskError returns the error of the attempt that just failed, in
// BeforeTaskRetry and AfterTaskFailure hooks; nil elsewhere. A panic is a
// *PanicError, a timeout matches ErrTimeout.
func TaskError(ctx context.Context) error {
	if s := core.StateFrom(ctx); s != nil {
		return s.Err
	}
	return nil
}

// Logger returns a logger with the current task's id, name, queue and retry count
// as fields; outside a task it is the worker's logger, and outside a worker a
// no-op logger.
func Logger(ctx context.Context) *zap.Logger {
	if s := core.StateFrom(ctx); s != nil {
		return s.Logger()
	}
	return zap.NewNop()
}

// RunInExecutor runs fn on the worker's bounded executor pool (see
// worker.Config.ExecutorPoolSize) and returns its result: the place for blocking
// or CPU-heavy work, so that it occupies a few goroutines however many tasks run
// at once. If ctx ends first it returns ctx.Err() and fn finishes in the
// background. Outside a worker, fn runs on the calling goroutine.
func RunInExecutor[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	s := core.StateFrom(ctx)
	if s == nil || s.Exec == nil {
		return fn()
	}
	var (
		v   T
		err error
	)
	if perr := s.Exec.Run(ctx, func() { v, err = fn() }); perr != nil {
		var zero T
		return zero, perr
	}
	return v, err
}
