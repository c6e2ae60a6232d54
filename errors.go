package rediq

import (
	"errors"
	"fmt"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
	"github.com/rediq/rediq/internal/core"
)

var (
	// ErrSkipRetry is matched (errors.Is) by errors made with SkipRetry.
	ErrSkipRetry = core.ErrSkipRetry
	// ErrTimeout is matched by the error of an attempt that ran past its timeout.
	ErrTimeout = errors.New("rediq: task timed out")
	// ErrUnknownTask is the reason a message naming no registered task is dead.
	ErrUnknownTask = errors.New("rediq: unknown task")
	// ErrMalformedMessage is matched by the reason an undecodable message is dead.
	ErrMalformedMessage = codec.ErrMalformed
	// ErrLeaseLost means a worker lost its lease on a task (it stalled past the
	// lease TTL and another worker took the task over).
	ErrLeaseLost = broker.ErrLeaseLost
	// ErrInvalidOption is matched by the error of an Enqueue given a bad option.
	ErrInvalidOption = errors.New("rediq: invalid option")
)

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
func (e *skipRetry) Is(target error) bool { return target == core.ErrSkipRetry }

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
