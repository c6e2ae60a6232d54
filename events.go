package rediq

import (
	"context"
	"fmt"

	"github.com/rediq/rediq/internal/core"
)

// Event is a point in a worker's or a task's life where hooks run.
type Event int

// The events, in the order a worker meets them. For each attempt of a task exactly
// one of BeforeTaskRetry, AfterTaskSuccess and AfterTaskFailure follows
// BeforeTaskStart.
const (
	// BeforeWorkerStartup runs before a worker fetches anything; an error aborts
	// the start and worker.Run returns it (a database that cannot connect).
	BeforeWorkerStartup Event = iota
	// AfterWorkerShutdown runs after a worker has drained and settled everything.
	AfterWorkerShutdown
	// BeforeTaskStart runs before each attempt of a task.
	BeforeTaskStart
	// BeforeTaskRetry runs when an attempt failed and the task will be retried;
	// TaskError returns the failure.
	BeforeTaskRetry
	// AfterTaskSuccess runs when an attempt succeeded; TaskResult returns its result.
	AfterTaskSuccess
	// AfterTaskFailure runs when a task failed for good (retries exhausted, or
	// SkipRetry) and goes to the dead set; TaskError returns the failure.
	AfterTaskFailure
)

// The hook lists of internal/core have one entry per event: a difference
// does not compile.
var _ [int(AfterTaskFailure) + 1 - core.NumEvents]struct{} = [core.NumEvents - int(AfterTaskFailure) - 1]struct{}{}

var eventNames = [...]string{"before_worker_startup", "after_worker_shutdown", "before_task_start",
	"before_task_retry", "after_task_success", "after_task_failure"}

func (e Event) String() string {
	if e >= 0 && int(e) < len(eventNames) {
		return eventNames[e]
	}
	return fmt.Sprintf("Event(%d)", int(e))
}

// On registers fn to run at event e. Hooks run in registration order on the
// worker, with the same context accessors as the task's handler. Errors and
// panics of task hooks are logged and do not change the task's outcome; see
// BeforeWorkerStartup for the one hook whose error matters. On panics if e is not
// one of the events above.
func (a *App) On(e Event, fn func(ctx context.Context) error) {
	if e < 0 || int(e) >= core.NumEvents {
		panic(fmt.Sprintf("rediq: On: unknown event %v", e))
	}
	if fn == nil {
		panic("rediq: On: nil hook")
	}
	a.core.AddHook(int(e), fn)
}
