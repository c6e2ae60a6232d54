package rediq

import (
	"errors"
	"fmt"
	"time"
)

// TaskState is where a task is in its life.
type TaskState string

// The states of a task. Scheduled, pending, active and retry are waiting or
// running; the others are final.
const (
	StateScheduled TaskState = "scheduled" // delayed: due later (Delay, ProcessAt)
	StatePending   TaskState = "pending"   // due: waits for a worker
	StateActive    TaskState = "active"    // a worker holds it (running, or prefetched)
	StateRetry     TaskState = "retry"     // an attempt failed; waits for its next one
	StateDead      TaskState = "dead"      // failed for good (retries used up, SkipRetry, poison...)
	StateSucceeded TaskState = "succeeded" // kept only with Retention
	StateCancelled TaskState = "cancelled" // by CancelTask; kept only with Retention
	StateExpired   TaskState = "expired"   // not started before ExpireIn/ExpireAt; kept only with Retention
)

// TaskStates lists every state, in the order of a task's life.
var TaskStates = []TaskState{StateScheduled, StatePending, StateActive, StateRetry, StateDead,
	StateSucceeded, StateCancelled, StateExpired}

// ParseTaskState returns the state named s.
func ParseTaskState(s string) (TaskState, error) {
	for _, st := range TaskStates {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("rediq: unknown task state %q (one of scheduled, pending, active, retry, dead, succeeded, cancelled, expired)", s)
}

// Final reports whether a task in state s will not run (again) by itself.
func (s TaskState) Final() bool {
	switch s {
	case StateDead, StateSucceeded, StateCancelled, StateExpired:
		return true
	}
	return false
}

// TaskRecord is what Redis holds of a task.
type TaskRecord struct {
	ID         TaskID
	Name       string
	Queue      string
	State      TaskState
	Priority   int
	Args       []byte    // the arguments, msgpack
	EnqueuedAt time.Time // the first enqueue, by the producer's clock
	DueAt      time.Time // scheduled and retry: when it is due (Redis's clock); zero otherwise
	StartedAt  time.Time // finished tasks: when the last attempt started (the worker's clock); zero otherwise
	FinishedAt time.Time // final states: when it ended (Redis's clock)
	Retried    int       // failed attempts that were retried
	// MaxRetries is the task's retries: the enqueue's override, else the
	// registered task's on this App, else -1 (unknown here).
	MaxRetries int
	Recovered  int    // times a worker died (or froze past its lease) running it
	LastError  string // the last failed attempt's error, or why it was cancelled or expired
	Worker     string // active: the worker session holding it; finished: the worker that ran it last
	// Running is set by GetTask for an active task whose handler has started
	// (false: fetched, waiting in its worker's prefetch buffer). Redis keeps
	// no start time until the attempt ends.
	Running bool
	Result  []byte // succeeded, with Retention: the handler's result, msgpack
	// Retention is how long the record stays after the task finishes
	// (Retention option); ExpiresAt the deadline set by ExpireIn/ExpireAt.
	Retention time.Duration
	ExpiresAt time.Time
}

// ListOptions pages ListTasks. Limit 0 means 100.
type ListOptions struct {
	Offset int
	Limit  int
}

var (
	// ErrTaskNotFound is matched by the error for an id that no queue holds: it
	// never existed, or it finished and its Retention (default 0) ran out.
	ErrTaskNotFound = errors.New("rediq: task not found")
	// ErrTaskFinished is matched by the error of CancelTask on a task that has
	// already finished (succeeded, dead, cancelled or expired).
	ErrTaskFinished = errors.New("rediq: task already finished")
	// ErrTaskActive is matched by the error of DeleteTask or RequeueTask on a
	// task a worker holds: cancel it first.
	ErrTaskActive = errors.New("rediq: task is active")
	// ErrCancelled is the cause of a handler's ctx when CancelTask cancels it,
	// and what Wait returns for a cancelled task.
	ErrCancelled = errors.New("rediq: task cancelled")
	// ErrExpired is what Wait returns for a task that was not started before
	// its ExpireIn/ExpireAt deadline.
	ErrExpired = errors.New("rediq: task expired")
	// ErrNotRetained is matched by the error of Wait for a task enqueued
	// without Retention: its result would be gone the moment it finished.
	ErrNotRetained = errors.New("rediq: task has no retention")
)

// TaskFailedError is Wait's error for a task that died.
type TaskFailedError struct {
	ID      TaskID
	Retried int
	Err     string // the last attempt's error
}

func (e *TaskFailedError) Error() string {
	return fmt.Sprintf("rediq: task %s failed after %d retries: %s", e.ID, e.Retried, e.Err)
}

// ErrNotFinished is matched by the error of Task.Result given the record of a
// task that has not finished: it has no result yet.
var ErrNotFinished = errors.New("rediq: task not finished")

// Args decodes the arguments of rec, a record of this task from GetTask or
// ListTasks. A record of a task of another name gives a *WrongTaskError
// (matching ErrWrongTask).
func (t *Task[A, R]) Args(rec *TaskRecord) (A, error) {
	var args A
	if err := t.owns(rec); err != nil {
		return args, err
	}
	if err := decodeArgs(rec.Args, &args); err != nil {
		var zero A
		return zero, fmt.Errorf("rediq: decode the arguments of task %q: %w", rec.ID, err)
	}
	return args, nil
}

// Result decodes the result of rec, a record of this task that succeeded (a
// success is kept only with Retention). Other records give Wait's errors: a
// *TaskFailedError for a dead task, ErrCancelled or ErrExpired, and
// ErrNotFinished for one that is waiting or running; a record of a task of
// another name gives ErrWrongTask.
func (t *Task[A, R]) Result(rec *TaskRecord) (R, error) {
	var r R
	if err := t.owns(rec); err != nil {
		return r, err
	}
	if err := endError(rec.ID, rec.State, rec.Retried, rec.LastError); err != nil {
		return r, err
	}
	if err := decodeArgs(rec.Result, &r); err != nil {
		var zero R
		return zero, fmt.Errorf("rediq: decode the result of task %q: %w", rec.ID, err)
	}
	return r, nil
}

// endError is what Wait and Task.Result report for a task in state: nil for
// a success, else the error that says how it ended, or that it has not.
func endError(id TaskID, state TaskState, retried int, lastErr string) error {
	switch state {
	case StateSucceeded:
		return nil
	case StateDead:
		return &TaskFailedError{ID: id, Retried: retried, Err: lastErr}
	case StateCancelled:
		return fmt.Errorf("%w: %q", ErrCancelled, id)
	case StateExpired:
		return fmt.Errorf("%w: %q was not started before its deadline", ErrExpired, id)
	default:
		return fmt.Errorf("%w: %q is %s", ErrNotFinished, id, state)
	}
}

// owns fails unless rec is a record of this task.
func (t *Task[A, R]) owns(rec *TaskRecord) error {
	if rec.Name != t.def.Name {
		return &WrongTaskError{ID: rec.ID, Want: t.def.Name, Found: rec.Name}
	}
	return nil
}
