package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// A failed call whose error is a refused dial may still have run: go-redis
// retries a command on a new connection after its first attempt wrote it and
// lost the connection, and then only the last attempt's error (the dial) comes
// back. So "nothing was sent" is not read from the error but watched: Watch
// wraps each connection of a client rediq dials, and a call made under
// watch(ctx) learns whether any of the client's connections carried a command
// while it ran.
//
// A connection carries a command only once it has been answered: go-redis
// opens every connection with HELLO and writes nothing more until a reply
// comes. A server that refuses the connection, closes it at once, or answers
// HELLO with something that is not Redis (a TLS port spoken to in plain text)
// never gets a command.

// reach counts the command writes of one client's connections.
type reach struct {
	commands atomic.Uint64 // writes on answered connections
	tls      bool          // the client speaks TLS
}

// Watch makes the calls of rdb, a client rediq made and configured, tell
// whether they reached Redis (see watch). It does not connect.
func Watch(rdb redis.UniversalClient, tls bool) {
	r := &reach{tls: tls}
	if c, ok := rdb.(*redis.ClusterClient); ok {
		// A cluster's hooks do not reach its nodes' dials: each node gets them.
		c.OnNewNode(func(node *redis.Client) { node.AddHook(r) })
		c.AddHook(r)
		return
	}
	rdb.AddHook(r)
}

// probe is one call's view of its client's reach.
type probe struct {
	r     atomic.Pointer[reach]
	start atomic.Uint64
}

type probeKey struct{}

// watch returns ctx carrying a new probe; unsent then says whether the calls
// made with ctx failed without sending anything.
func watch(ctx context.Context) (context.Context, *probe) {
	p := &probe{}
	return context.WithValue(ctx, probeKey{}, p), p
}

func (r *reach) enter(ctx context.Context) {
	if p, _ := ctx.Value(probeKey{}).(*probe); p != nil && p.r.Load() == nil {
		p.start.Store(r.commands.Load())
		p.r.CompareAndSwap(nil, r)
	}
}

// unsent reports whether the calls made under p failed with err without any of
// the client's connections carrying a command meanwhile (conservative: another
// call's command counts too). A client rediq did not make is not watched, and
// its calls are never known unsent.
func (p *probe) unsent(err error) bool {
	r := p.r.Load()
	if err == nil || r == nil || r.commands.Load() != p.start.Load() {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false // an answer, or time running out: not a connection failure
	}
	return true
}

// unreachable returns err, which p found unsent, as an error matching
// ErrUnreachable, with a hint when the server hung up on a plain connection.
func (p *probe) unreachable(err error) error {
	var ne net.Error
	switch r := p.r.Load(); {
	case dialFailed(err):
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%w: the server took the connection and did not answer: %w", ErrUnreachable, err)
	case r != nil && !r.tls:
		return fmt.Errorf("%w: the server closed the connection before answering (is it a TLS port? then use rediss://): %w", ErrUnreachable, err)
	}
	return fmt.Errorf("%w: the server closed the connection before answering: %w", ErrUnreachable, err)
}

// dialFailed reports whether err is a failed dial (refused, no route, timed out).
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func (r *reach) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		r.enter(ctx)
		c, err := next(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		w := &watchedConn{Conn: c, r: r}
		if sc, ok := c.(syscall.Conn); ok {
			// go-redis checks an idle connection's health through its socket.
			return &watchedSysConn{w, sc}, nil
		}
		return w, nil
	}
}

func (r *reach) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.enter(ctx)
		return next(ctx, cmd)
	}
}

func (r *reach) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.enter(ctx)
		return next(ctx, cmds)
	}
}

// watchedConn counts the writes of a connection after its first answer.
type watchedConn struct {
	net.Conn
	r        *reach
	answered atomic.Bool
}

func (c *watchedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.answered.Load() {
		c.answered.Store(true)
	}
	return n, err
}

func (c *watchedConn) Write(b []byte) (int, error) {
	answered := c.answered.Load()
	if answered {
		c.r.commands.Add(1)
	}
	n, err := c.Conn.Write(b)
	if err != nil && !answered && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		err = c.hungUp(err)
	}
	return n, err
}

// hangUpRead bounds the read of what a server said before it hung up.
const hangUpRead = 100 * time.Millisecond

// hungUp returns werr, the error of a write on a connection the server never
// answered, with what the server said before it hung up. A server that refuses
// a connection says why and closes it — a TLS server that requires a client
// certificate sends its alert after the handshake, which the client finished
// first (TLS 1.3) — and the reset that follows reaches the client's next write
// before anything reads the reason waiting in the socket. Nothing else reads
// this connection again (go-redis drops it on a failed write).
func (c *watchedConn) hungUp(werr error) error {
	if err := c.Conn.SetReadDeadline(time.Now().Add(hangUpRead)); err != nil {
		return werr
	}
	buf := make([]byte, 256)
	n, rerr := c.Conn.Read(buf)
	var op *net.OpError
	switch {
	case errors.As(rerr, &op) && op.Op == "remote error": // a TLS alert
		return fmt.Errorf("%w (after %w)", rerr, werr)
	case n > 0:
		line, _, _ := bytes.Cut(buf[:n], []byte("\r\n"))
		return fmt.Errorf("%w (the server said %q before it hung up)", werr, line)
	}
	return werr
}

// NetConn lets go-redis reach the socket under the wrapper, as it reaches the
// one under a *tls.Conn, to peek for data waiting before it writes.
func (c *watchedConn) NetConn() net.Conn { return c.Conn }

// watchedSysConn is a watchedConn on a socket go-redis checks the health of.
type watchedSysConn struct {
	*watchedConn
	sc syscall.Conn
}

func (c *watchedSysConn) SyscallConn() (syscall.RawConn, error) { return c.sc.SyscallConn() }

// Ping checks that Redis answers. An error of a client rediq made that reached
// nothing matches ErrUnreachable and says what is likely wrong.
func (b *Broker) Ping(ctx context.Context) error {
	pctx, p := watch(ctx)
	err := b.rdb.Ping(pctx).Err()
	if p.unsent(err) {
		return p.unreachable(err)
	}
	return err
}
