package testredis

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a TCP proxy on a loopback port in front of a Redis server, for
// tests that need the network to misbehave. Its methods are safe to call
// while traffic flows.
//
// A reply is one top-level RESP value read from the server (a push message
// counts as one; an attribute counts with the value it annotates). The proxy
// frames replies rather than counting TCP chunks so that HoldReplies(1, …)
// means one command's reply however the kernel split or merged the bytes,
// e.g. in a pipeline. What the client sends is forwarded as raw bytes.
//
// Replies on a connection stay in order: a held reply holds back the replies
// behind it. Reply faults (SetLatency, HoldReplies, DropReplies) apply to
// replies read from the server after the call, on any connection.
type Proxy struct {
	target    string
	ln        *net.TCPListener
	ctx       context.Context // cancelled by Close, ending dials to the target
	cancel    context.CancelFunc
	wg        sync.WaitGroup // every goroutine the proxy started
	closeOnce sync.Once

	mu        sync.Mutex
	links     map[*link]struct{}
	closed    bool
	accepted  int
	latency   time.Duration
	holdN     int
	holdFor   time.Duration
	dropN     int
	blackhole bool
	refuse    bool
	// HoldRepliesTo: replies to requests that match, n more of them
	holdMatch  func(req []byte) bool
	holdMatchN int
	holdMatchD time.Duration
	// CutAtRequests: requests that match, n more of them
	cutMatch  func(req []byte) bool
	cutMatchN int
}

// replyBacklog bounds the replies queued on a connection (delayed or held)
// before the proxy stops reading from the server.
const replyBacklog = 1024

// NewProxy starts a proxy in front of target (host:port), closed when t ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{target: target, ln: ln, ctx: ctx, cancel: cancel, links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port; clients connect here instead of to the target.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL is "redis://" + Addr. It carries no password: set one in the client's
// options if the target needs it.
func (p *Proxy) URL() string { return "redis://" + p.Addr() }

// SetLatency delays every reply by d from the moment the proxy reads it from
// the server; requests are not delayed. Replies read together arrive
// together, so a pipeline waits d once, not once per reply (up to
// replyBacklog replies in flight per connection). Zero turns it off.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = d
}

// HoldReplies holds the next n replies for d each (on top of any latency)
// before delivering them, or drops them if their connection closes meanwhile.
// With d beyond the client's read timeout this is "Redis ran the command but
// the reply came too late". It replaces any holds still pending.
func (p *Proxy) HoldReplies(n int, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holdN, p.holdFor = n, d
}

// DropReplies swallows the next n replies; the connection stays open, so the
// client waits until its read timeout. It replaces any drops still pending,
// and takes precedence over HoldReplies. A client that kept using the
// connection after the timeout would take later replies for earlier commands;
// go-redis closes it.
func (p *Proxy) DropReplies(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropN = n
}

// Blackhole, while on, delivers nothing in either direction on any
// connection, new or existing: the proxy still accepts connections and reads
// from both sides, but discards what it reads, as a network partition or a
// frozen peer would. Off delivers new data again; what was discarded is gone.
// Replies read while on do not count against HoldReplies or DropReplies.
// Requests are discarded in whole reads, so a server only sees half a command
// if the switch flips in the middle of one.
func (p *Proxy) Blackhole(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blackhole = on
}

// Refuse, while on, closes each new connection as soon as it is accepted;
// existing connections are untouched.
func (p *Proxy) Refuse(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = on
}

// CutAll resets every open connection on both sides: the client and the
// server each see a connection reset, and replies not yet delivered are lost.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close(true)
	}
}

// Conns is the number of connections accepted so far, refused ones included.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}

// Close stops accepting, closes every connection and waits for the proxy's
// goroutines to end. It is safe to call more than once.
func (p *Proxy) Close() {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		links := make([]*link, 0, len(p.links))
		for l := range p.links {
			links = append(links, l)
		}
		p.mu.Unlock()
		p.ln.Close()
		p.cancel()
		for _, l := range links {
			l.close(false)
		}
		p.wg.Wait()
	})
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.AcceptTCP()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// Such as running out of file descriptors: give some time to close.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.mu.Lock()
		p.accepted++
		refuse := p.refuse
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// link is one client connection and the proxy's connection to the target.
type link struct {
	client, server *net.TCPConn
	done           chan struct{} // closed once both connections are closed
	once           sync.Once

	mu    sync.Mutex
	holds []time.Duration // per request forwarded and not yet answered: extra hold of its reply
}

// close closes both connections; with reset, each peer sees a connection
// reset rather than an orderly close.
func (l *link) close(reset bool) {
	l.once.Do(func() {
		if reset {
			_ = l.client.SetLinger(0)
			_ = l.server.SetLinger(0)
		}
		l.client.Close()
		l.server.Close()
		close(l.done)
	})
}

// reply is a server reply on its way to the client.
type reply struct {
	data []byte
	at   time.Time // when to deliver it
}

// serve relays one client connection: this goroutine reads replies, one
// delivers them when due, one forwards requests.
func (p *Proxy) serve(client *net.TCPConn) {
	defer p.wg.Done()
	d := net.Dialer{Timeout: 5 * time.Second}
	server, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		// The client sees its connection closed, as if the target were down.
		client.Close()
		return
	}
	l := &link{client: client, server: server.(*net.TCPConn), done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.close(false)
		return
	}
	p.links[l] = struct{}{}
	p.mu.Unlock()

	replies := make(chan reply, replyBacklog)
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		p.forwardRequests(l)
		l.close(false)
	}()
	go func() {
		defer p.wg.Done()
		p.deliverReplies(l, replies)
		l.close(false)
	}()
	p.readReplies(l, replies)
	<-l.done
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// forwardRequests relays requests one RESP value at a time, noting for each
// whether HoldRepliesTo wants its reply held. Replies are paired with requests
// in order, which holds on request/response connections (not on a pub/sub one,
// where pushes come unasked: HoldRepliesTo is for commands).
func (p *Proxy) forwardRequests(l *link) {
	r := bufio.NewReaderSize(l.client, 32<<10)
	for {
		var req []byte
		first, err := r.Peek(1)
		if err == nil && first[0] != '*' { // an inline command, as from telnet
			req, err = r.ReadBytes('\n')
		} else if err == nil {
			req, err = readValue(r, nil)
		}
		if err != nil {
			return
		}
		if p.blackholed() {
			continue
		}
		if p.cutAt(req) {
			l.close(true) // neither this request nor any behind it reaches the server
			return
		}
		hold := p.matchRequest(req)
		l.mu.Lock()
		l.holds = append(l.holds, hold)
		l.mu.Unlock()
		if _, err := l.server.Write(req); err != nil {
			return
		}
	}
}

func (p *Proxy) matchRequest(req []byte) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.holdMatchN > 0 && p.holdMatch(req) {
		p.holdMatchN--
		return p.holdMatchD
	}
	return 0
}

// CutAtRequests resets the connection of each of the next n requests for
// which match (given the request's raw RESP bytes) is true, before that
// request reaches the server: "the command was sent, and never ran". The
// requests before it on the connection ran; their replies may not arrive.
func (p *Proxy) CutAtRequests(match func(req []byte) bool, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutMatch, p.cutMatchN = match, n
}

// CutsLeft is how many of CutAtRequests' cuts have not matched a request yet.
func (p *Proxy) CutsLeft() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cutMatchN
}

func (p *Proxy) cutAt(req []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cutMatchN > 0 && p.cutMatch(req) {
		p.cutMatchN--
		return true
	}
	return false
}

// HoldsLeft is how many of HoldRepliesTo's holds have not matched a request yet.
func (p *Proxy) HoldsLeft() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.holdMatchN
}

// HoldRepliesTo holds for d the replies to the next n requests for which match
// (given the request's raw RESP bytes) is true, on any connection: "this one
// command ran, but its reply came after the client's read timeout".
func (p *Proxy) HoldRepliesTo(match func(req []byte) bool, n int, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holdMatch, p.holdMatchN, p.holdMatchD = match, n, d
}

// readReplies reads replies from the server and queues those to deliver. It
// closes replies when the server side ends, so that what the server sent
// before closing (the +OK to QUIT) still reaches the client.
func (p *Proxy) readReplies(l *link, replies chan<- reply) {
	defer close(replies)
	r := bufio.NewReaderSize(l.server, 32<<10)
	for {
		data, err := readValue(r, nil)
		if err != nil {
			return // the connection closed, or the target does not speak RESP
		}
		at, deliver := p.plan(time.Now())
		if !deliver {
			continue
		}
		l.mu.Lock()
		if len(l.holds) > 0 {
			at = at.Add(l.holds[0])
			l.holds = l.holds[1:]
		}
		l.mu.Unlock()
		select {
		case replies <- reply{data: data, at: at}:
		case <-l.done:
			return
		}
	}
}

// plan decides the fate of a reply read at now.
func (p *Proxy) plan(now time.Time) (at time.Time, deliver bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case p.blackhole:
		return at, false
	case p.dropN > 0:
		p.dropN--
		return at, false
	}
	at = now.Add(p.latency)
	if p.holdN > 0 {
		p.holdN--
		at = at.Add(p.holdFor)
	}
	return at, true
}

func (p *Proxy) deliverReplies(l *link, replies <-chan reply) {
	for {
		var r reply
		select {
		case next, ok := <-replies:
			if !ok {
				return
			}
			r = next
		case <-l.done:
			return
		}
		if wait := time.Until(r.at); wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-timer.C:
			case <-l.done:
				timer.Stop()
				return
			}
		}
		// A reply that comes due during a blackhole is lost with the rest.
		if p.blackholed() {
			continue
		}
		if _, err := l.client.Write(r.data); err != nil {
			return
		}
	}
}

func (p *Proxy) blackholed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blackhole
}
