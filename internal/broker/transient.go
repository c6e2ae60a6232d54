package broker

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// busyReplies are the error replies of a server that cannot serve commands
// just now (loading, a replica after a failover, a cluster in flux).
var busyReplies = []string{"LOADING", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN"}

// replyIn reports whether err is an error reply that starts with one of
// prefixes.
func replyIn(err error, prefixes ...string) bool {
	for _, p := range prefixes {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// Transient reports whether err is a failure to talk to Redis that a later try
// may not meet: a lost, reset or refused connection, a timeout, an exhausted
// pool, a server that is loading or failing over. An answer that refuses the
// command is not, nor is a closed client or an ended context.
func Transient(err error) bool {
	var re redis.Error
	switch {
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), errors.Is(err, redis.ErrClosed):
		return false
	case errors.As(err, &re):
		return replyIn(err, busyReplies...)
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted) || errors.Is(err, ErrUnreachable)
}

// Retryable reports whether err may go away by itself: a network error or
// timeout, or a Redis error reply that says the server could not serve the
// command just now.
func Retryable(err error) bool {
	var re redis.Error
	if errors.As(err, &re) {
		// MOVED and ASK reach us only from the per-node calls of WaitReplicas
		// on a Cluster (go-redis follows them otherwise), which reload the
		// slot map first: sent again, the call goes to the right node.
		return replyIn(err, busyReplies...) || replyIn(err, "BUSY", "MOVED ", "ASK ")
	}
	return !errors.Is(err, context.Canceled)
}

// Refused reports whether err is Redis refusing a command before running it:
// a wrong password or missing permission, out of memory, or the scripts' own
// argument checks (which come before their first write). Anything else — a
// network error, a timeout, a dial that failed after go-redis's own retries may
// have sent the command once already — leaves the outcome unknown.
func Refused(err error) bool {
	// A node that answers MOVED or ASK ran nothing: the slot is another's.
	// go-redis's HasErrorPrefix drops a leading "ERR ", so the scripts'
	// "ERR rediq: …" replies match "rediq:".
	return replyIn(err, "WRONGPASS", "NOAUTH", "NOPERM", "OOM", "rediq:", "NOSCRIPT", "MOVED ", "ASK ")
}
