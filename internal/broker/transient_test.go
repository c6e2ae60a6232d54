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
