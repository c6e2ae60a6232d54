package broker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq/internal/broker"
)

func TestTransient(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"EOF", fmt.Errorf("find: %w", io.EOF), true},
		{"reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
		{"i/o timeout", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, true},
		{"broken pipe", fmt.Errorf("x: %w", syscall.EPIPE), true},
		{"refused dial", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"pool timeout", redis.ErrPoolTimeout, true},
		{"unreachable", fmt.Errorf("%w: closed", broker.ErrUnreachable), true},
		{"loading", replyError("LOADING Redis is loading the dataset in memory"), true},
		{"readonly replica", replyError("READONLY You can't write against a read only replica."), true},
		{"wrong password", replyError("WRONGPASS invalid username-password pair"), false},
		{"script error", replyError("ERR Error running script"), false},
		{"closed client", redis.ErrClosed, false},
		{"cancelled", fmt.Errorf("x: %w", context.Canceled), false},
		{"deadline", context.DeadlineExceeded, false},
		{"not found", broker.ErrNotFound, false},
		{"other", errors.New("something else"), false},
	} {
		if got := broker.Transient(c.err); got != c.want {
			t.Errorf("%s: Transient(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}

// replyError is an error Redis answered with, as go-redis reports it.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

// Which errors mean the call did not run (Refused) and which may go away when
// sent again (Retryable): a redirect from a per-node call of WaitReplicas on a
// Cluster is both — before, it left an enqueue's outcome unknown.
func TestErrorClasses(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name               string
		err                error
		refused, retryable bool
	}{
		{"moved", replyError("MOVED 3999 127.0.0.1:6381"), true, true},
		{"ask", replyError("ASK 3999 127.0.0.1:6381"), true, true},
		{"wrongpass", replyError("WRONGPASS invalid username-password pair"), true, false},
		{"script check", replyError("ERR rediq: bad argument"), true, false},
		{"loading", replyError("LOADING Redis is loading the dataset in memory"), false, true},
		{"readonly", replyError("READONLY You can't write against a read only replica."), false, true},
		{"other reply", replyError("ERR unknown command"), false, false},
		{"network", io.EOF, false, true},
		{"wrapped moved", errors.Join(errors.New("enqueue"), replyError("MOVED 1 h:1")), true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := broker.Refused(c.err); got != c.refused {
				t.Errorf("Refused(%v) = %v, want %v", c.err, got, c.refused)
			}
			if got := broker.Retryable(c.err); got != c.retryable {
				t.Errorf("Retryable(%v) = %v, want %v", c.err, got, c.retryable)
			}
		})
	}
}
