package testredis_test

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq/internal/testredis"
)

// proxied starts a server with a proxy in front and returns a client through
// the proxy (tuned by tune) and one straight to the server, to see what the
// server really did. The proxied client has connected already, so the next
// reply through the proxy answers the test's own command, not go-redis's
// connection handshake.
func proxied(t *testing.T, tune func(*redis.Options)) (*testredis.Proxy, *redis.Client, *redis.Client) {
	t.Helper()
	srv := testredis.StartServer(t)
	p := testredis.NewProxy(t, srv.Addr())
	c := client(t, p.URL(), tune)
	if err := c.Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	return p, c, client(t, srv.URL(), nil)
}

func TestProxyPassesTraffic(t *testing.T) {
	t.Parallel()
	_, c, _ := proxied(t, nil)
	ctx := t.Context()
	big := strings.Repeat("x", 1<<20) // many TCP chunks, one reply
	if err := c.Set(ctx, "big", big, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(ctx, "big").Result(); err != nil || got != big {
		t.Fatalf("GET big: %d bytes, %v", len(got), err)
	}
	// A pipeline: replies arrive merged in chunks.
	cmds, err := c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for range 1000 {
			pipe.Incr(ctx, "n")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if last := cmds[len(cmds)-1].(*redis.IntCmd).Val(); last != 1000 {
		t.Fatalf("last INCR = %d; want 1000", last)
	}
}

func TestHoldReplies(t *testing.T) {
	t.Parallel()
	p, c, direct := proxied(t, impatient)
	ctx := t.Context()

	p.HoldReplies(1, 500*time.Millisecond)
	if err := c.Set(ctx, "k", "v", 0).Err(); !isTimeout(err) {
		t.Fatalf("SET through a held reply = %v; want a timeout", err)
	}
	if got, err := direct.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("the server did not run SET: GET k = %q, %v", got, err)
	}
	// One reply only: the next command, on a new connection, goes through.
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if got := p.Conns(); got != 2 {
		t.Fatalf("Conns = %d; want 2 (go-redis drops a connection that timed out)", got)
	}
}

func TestHoldRepliesDelivers(t *testing.T) {
	t.Parallel()
	p, c, _ := proxied(t, nil) // a 3s read timeout: patient enough
	p.HoldReplies(1, 100*time.Millisecond)
	start := time.Now()
	if err := c.Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Fatalf("held PING answered in %s; want at least 100ms", took)
	}
}

func TestDropReplies(t *testing.T) {
	t.Parallel()
	p, c, direct := proxied(t, impatient)
	ctx := t.Context()

	p.DropReplies(1)
	if err := c.Set(ctx, "k", "v", 0).Err(); !isTimeout(err) {
		t.Fatalf("SET with its reply dropped = %v; want a timeout", err)
	}
	if got, err := direct.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("the server did not run SET: GET k = %q, %v", got, err)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	p, c, _ := proxied(t, nil)
	ctx := t.Context()
	const d = 300 * time.Millisecond

	p.SetLatency(d)
	start := time.Now()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < d {
		t.Fatalf("PING with %s latency took %s", d, took)
	}
	// Latency, not a queue: a pipeline of 100 waits d about once.
	start = time.Now()
	_, err := c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for range 100 {
			pipe.Incr(ctx, "n")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < d || took > 10*d {
		t.Fatalf("pipeline with %s latency took %s; want about %s", d, took, d)
	}

	p.SetLatency(0)
	start = time.Now()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took >= d {
		t.Fatalf("PING without latency took %s", took)
	}
}

func TestBlackhole(t *testing.T) {
	t.Parallel()
	p, c, direct := proxied(t, impatient)
	ctx := t.Context()

	p.Blackhole(true)
	if err := c.Set(ctx, "k", "v", 0).Err(); !isTimeout(err) {
		t.Fatalf("SET into a blackhole = %v; want a timeout", err)
	}
	if err := direct.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("SET reached the server through a blackhole: GET k = %v", err)
	}
	// A new connection fares no better: go-redis's handshake times out.
	if err := c.Ping(ctx).Err(); !isTimeout(err) {
		t.Fatalf("PING on a new connection into a blackhole = %v; want a timeout", err)
	}

	p.Blackhole(false)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET after the blackhole: %v", err)
	}
	if got := p.Conns(); got < 3 {
		t.Fatalf("Conns = %d; want at least 3", got)
	}
}

func TestCutAll(t *testing.T) {
	t.Parallel()

	t.Run("the client sees a reset", func(t *testing.T) {
		t.Parallel()
		srv := testredis.StartServer(t)
		p := testredis.NewProxy(t, srv.Addr())
		conn, err := net.DialTimeout("tcp", p.Addr(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(conn)
		if _, err := conn.Write([]byte("PING\r\n")); err != nil {
			t.Fatal(err)
		}
		if line, err := r.ReadString('\n'); err != nil || line != "+PONG\r\n" {
			t.Fatalf("PING = %q, %v", line, err)
		}
		p.CutAll()
		if _, err := r.ReadString('\n'); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("read after CutAll = %v; want a connection reset", err)
		}
	})

	t.Run("a command in flight fails", func(t *testing.T) {
		t.Parallel()
		p, c, direct := proxied(t, noRetries) // a 3s read timeout: the cut comes first
		ctx := t.Context()
		p.HoldReplies(1, time.Minute)
		done := make(chan error, 1)
		go func() { done <- c.Set(ctx, "k", "v", 0).Err() }()
		testredis.WaitFor(t, 5*time.Second, "the server to run SET", func() bool {
			return direct.Get(ctx, "k").Val() == "v"
		})
		p.CutAll()
		select {
		case err := <-done:
			if err == nil || isTimeout(err) {
				t.Fatalf("SET cut in flight = %v; want a connection error", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("SET still waiting 2s after CutAll")
		}
	})

	t.Run("a pooled client reconnects", func(t *testing.T) {
		t.Parallel()
		p, c, _ := proxied(t, noRetries)
		p.CutAll()
		// go-redis checks a pooled connection before use and dials anew if
		// the peer reset it, so even without retries the command succeeds.
		if err := c.Ping(t.Context()).Err(); err != nil {
			t.Fatalf("PING after CutAll: %v", err)
		}
		if got := p.Conns(); got != 2 {
			t.Fatalf("Conns = %d; want 2", got)
		}
	})
}

func TestRefuse(t *testing.T) {
	t.Parallel()
	p, c, _ := proxied(t, noRetries)
	ctx := t.Context()

	p.Refuse(true)
	p.CutAll() // or the pooled connection would serve the next command
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING through a refusing proxy succeeded")
	}
	p.Refuse(false)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Refuse(false): %v", err)
	}
	if got := p.Conns(); got != 3 {
		t.Fatalf("Conns = %d; want 3 (first, refused, last)", got)
	}
}

func TestProxyCloseEndsHeldReplies(t *testing.T) {
	t.Parallel()
	p, c, _ := proxied(t, noRetries)
	p.HoldReplies(1, time.Minute)
	done := make(chan error, 1)
	go func() { done <- c.Ping(t.Context()).Err() }()
	// Close must not wait out the minute; the goroutine check in Main catches
	// anything it leaves running.
	testredis.WaitFor(t, 5*time.Second, "PING to reach the proxy", func() bool { return p.Conns() == 1 })
	start := time.Now()
	p.Close()
	p.Close()
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Close took %s", took)
	}
	if err := <-done; err == nil {
		t.Fatal("PING answered through a closed proxy")
	}
}

// TestFaultsUnderTraffic turns every fault on and off while clients run
// commands, for the race detector; afterwards the proxy must be healthy.
func TestFaultsUnderTraffic(t *testing.T) {
	t.Parallel()
	p, _, _ := proxied(t, nil)
	deadline := time.Now().Add(500 * time.Millisecond)
	var wg sync.WaitGroup
	for i := range 4 {
		c := client(t, p.URL(), func(o *redis.Options) {
			o.ReadTimeout = 50 * time.Millisecond
			o.DialTimeout = 50 * time.Millisecond
		})
		wg.Go(func() {
			for time.Now().Before(deadline) {
				_ = c.Set(t.Context(), fmt.Sprint("k", i), i, 0).Err()
			}
		})
	}
	faults := []func(){
		func() { p.SetLatency(time.Duration(rand.IntN(20)) * time.Millisecond) },
		func() { p.HoldReplies(rand.IntN(3), 100*time.Millisecond) },
		func() { p.DropReplies(rand.IntN(3)) },
		func() { p.Blackhole(rand.IntN(2) == 0) },
		func() { p.Refuse(rand.IntN(2) == 0) },
		p.CutAll,
		func() { _ = p.Conns() },
	}
	for time.Now().Before(deadline) {
		faults[rand.IntN(len(faults))]()
		time.Sleep(5 * time.Millisecond)
	}
	wg.Wait()

	p.SetLatency(0)
	p.HoldReplies(0, 0)
	p.DropReplies(0)
	p.Blackhole(false)
	p.Refuse(false)
	p.CutAll()
	c := client(t, p.URL(), nil)
	if err := c.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("PING after the faults: %v", err)
	}
}
