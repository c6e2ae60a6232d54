package rediq

import (
	"errors"
	"fmt"
	"time"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
)

var (
	// ErrSkipRetry is matched (errors.Is) by errors made with SkipRetry.
	ErrSkipRetry = errors.New("rediq: skip retry")
	// ErrTimeout is matched by the error of an attempt that ran past its timeout.
	ErrTimeout = errors.New("rediq: task timed out")
	// ErrUnknownTask is the reason a message naming no registered task is dead.
	ErrUnknownTask = errors.New("rediq: unknown task")
	// ErrMalformedMessage is matched by the reason an undecodable message is dead.
	ErrMalformedMessage = errors.New("malformed message")
	// ErrLeaseLost means a worker lost its lease on a task (it stalled past the
	// lease TTL and another worker took the task over).
	ErrLeaseLost = errors.New("lease lost")
	// ErrInvalidOption is matched by the error of an Enqueue given a bad option.
	ErrInvalidOption = errors.New("rediq: invalid option")
	// ErrDuplicate is matched by the error of an Enqueue whose task id exists
	// already (a *DuplicateError): nothing was written.
	ErrDuplicate = errors.New("rediq: duplicate task")
	// ErrOutcomeUnknown is matched by the error of an Enqueue whose request went
	// out without an answer: the task may or may not be enqueued. Enqueue again
	// with WithID and the returned id; see Task.Enqueue.
	ErrOutcomeUnknown = errors.New("outcome unknown")
	// ErrUnreachable is matched by the error of an Enqueue that could not reach
	// Redis (a refused or failed dial, a server that closed the connection
	// before its handshake): nothing was sent, so nothing was written.
	ErrUnreachable = errors.New("redis unreachable")
	// ErrTooLarge is matched by the error of an Enqueue whose message is larger
	// than Config.MaxMessageBytes (a *TooLargeError): nothing was written.
	ErrTooLarge = errors.New("rediq: message too large")
	// ErrWrongTask is matched by the error (a *WrongTaskError) of Wait given
	// the id of a task of another name, and of Task.Args and Task.Result given
	// its record: it is never decoded as this task's.
	ErrWrongTask = errors.New("rediq: wrong task")
)

// The internal packages, which cannot import this one, return some of these
// errors: they are given rediq's values before anything runs, so that
// errors.Is matches what they return.
func init() {
	codec.ErrMalformed = ErrMalformedMessage
	broker.ErrLeaseLost = ErrLeaseLost
	broker.ErrOutcomeUnknown = ErrOutcomeUnknown
	broker.ErrUnreachable = ErrUnreachable
}

// DuplicateError is the error of an Enqueue whose task id is taken, or whose
// Unique lock another task holds.
type DuplicateError struct {
	ExistingID TaskID // the task that has the id, or holds the lock
	Queue      string // the queue holding the existing task
	Unique     bool   // refused by a Unique lock (else: the id exists)
}

func (e *DuplicateError) Error() string {
	if e.Unique {
		return fmt.Sprintf("rediq: duplicate task: task %q in queue %q holds its unique lock", e.ExistingID, e.Queue)
	}
	return fmt.Sprintf("rediq: duplicate task: id %q exists in queue %q", e.ExistingID, e.Queue)
}

// errMemoized is what the enqueue of a Run says when a memoized result exists:
// Run reads it instead.
var errMemoized = errors.New("rediq: a memoized result exists")

// Is makes errors.Is(err, ErrDuplicate) true.
func (e *DuplicateError) Is(target error) bool { return target == ErrDuplicate }

// TooLargeError is the error of an Enqueue whose encoded message exceeds the limit.
type TooLargeError struct {
	Task  string
	Size  int // bytes, encoded
	Limit int // Config.MaxMessageBytes
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("rediq: task %q: message of %d bytes is larger than the limit of %d (Config.MaxMessageBytes)", e.Task, e.Size, e.Limit)
}

// Is makes errors.Is(err, ErrTooLarge) true.
func (e *TooLargeError) Is(target error) bool { return target == ErrTooLarge }

// WrongTaskError is the error of Wait, Task.Args and Task.Result for a task of
// another name than the Task asked (report.Wait given a thumbnail task's id).
type WrongTaskError struct {
	ID    TaskID
	Want  string // the name of the Task whose Wait was called
	Found string // the name in the id's record
}

func (e *WrongTaskError) Error() string {
	return fmt.Sprintf("rediq: wrong task: %q is a %q task, not %q", e.ID, e.Found, e.Want)
}

// Is makes errors.Is(err, ErrWrongTask) true.
func (e *WrongTaskError) Is(target error) bool { return target == ErrWrongTask }

// SkipRetry wraps a handler error so that the task goes to the dead set at once
// instead of being retried:
//
//	return rediq.SkipRetry(fmt.Errorf("decode image: %w", err))
func SkipRetry(err error) error {
	if err == nil {
		err = errors.New("skip retry")
	}
	return &skipRetry{err}
}

type skipRetry struct{ err error }

func (e *skipRetry) Error() string        { return e.err.Error() }
func (e *skipRetry) Unwrap() error        { return e.err }
func (e *skipRetry) Is(target error) bool { return target == ErrSkipRetry }

// PanicError is the error of an attempt whose handler panicked.
type PanicError struct {
	Value any    // what was passed to panic
	Stack []byte // the handler goroutine's stack at the panic
}

func (e *PanicError) Error() string { return fmt.Sprintf("rediq: panic: %v", e.Value) }

// Unwrap returns the panic value if it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// EncodeError is returned by Enqueue when the arguments cannot be encoded.
type EncodeError struct {
	Task string
	Err  error
}

func (e *EncodeError) Error() string {
	return fmt.Sprintf("rediq: encode arguments of %q: %v", e.Task, e.Err)
}

func (e *EncodeError) Unwrap() error { return e.Err }

// ErrNotReplicated is matched by the error of an Enqueue whose tasks Redis
// wrote but fewer replicas than Config.WaitReplicas acknowledged within
// Config.WaitReplicasTimeout (a *ReplicationError).
var ErrNotReplicated = errors.New("rediq: enqueued, not replicated")

// ReplicationError is the error of an Enqueue or EnqueueMany made with
// Config.WaitReplicas whose WAIT did not hear from enough replicas in time.
// The tasks in IDs are in Redis — on its master — and run as usual, unless
// the master fails before a replica copies them: then a failover loses them.
// What to do is the caller's choice: accept the risk; or report a failure and
// let its own caller retry (enqueueing again with WithID(id) writes nothing
// while the task is still in Redis: ErrDuplicate); or wait for the task with
// Retention and Wait. It does not match ErrOutcomeUnknown: the write is known
// to have happened.
type ReplicationError struct {
	IDs     []TaskID      // the tasks written and not confirmed
	Acked   int           // replicas that acknowledged the write
	Want    int           // Config.WaitReplicas
	Timeout time.Duration // Config.WaitReplicasTimeout
}

func (e *ReplicationError) Error() string {
	var what string
	if len(e.IDs) == 1 {
		what = fmt.Sprintf("task %q", e.IDs[0])
	} else {
		what = fmt.Sprintf("%d tasks", len(e.IDs))
	}
	return fmt.Sprintf("rediq: %s enqueued on the master, but %d of %d replicas acknowledged it within %s: a failover now would lose it",
		what, e.Acked, e.Want, e.Timeout)
}

// Is makes errors.Is(err, ErrNotReplicated) true.
func (e *ReplicationError) Is(target error) bool { return target == ErrNotReplicated }

// replicationError makes the broker's *ReplicationError a *ReplicationError
// naming the tasks.
func replicationError(err error, ids []TaskID) error {
	e := &ReplicationError{IDs: ids}
	var be *broker.ReplicationError
	if errors.As(err, &be) {
		e.Acked, e.Want, e.Timeout = be.Acked, be.Want, be.Timeout
	}
	return e
}
