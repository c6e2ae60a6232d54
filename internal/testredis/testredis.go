// Package testredis gives each test package a Redis of its own: a redis-server
// started on a free loopback port (or the one in REDIQ_TEST_REDIS_URL), falling
// back to an in-process miniredis when redis-server is not installed, unless
// REDIQ_TEST_REQUIRE_REDIS=1 makes that a failure. Each test takes a random key
// namespace on it, so tests run in parallel.
//
// For fault injection, a test can start a server of its own (StartServer) that
// it kills and restarts, and put a Proxy in front of any server to delay, hold,
// drop or cut its traffic. Every redis-server started here dies with the test
// binary on Linux, even when it panics or is killed by go test -timeout.
package testredis

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

var (
	url  string
	real bool
)

// Main starts the package's Redis, runs the tests, stops it and checks that no
// goroutine leaked. Call it from TestMain.
func Main(m *testing.M) {
	code := run(m)
	os.Exit(code)
}

func run(m *testing.M) int {
	stop, err := start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testredis:", err)
		return 1
	}
	code := m.Run()
	stop()
	if code == 0 {
		// go-redis starts a prober after a client's dials fail in a row; it
		// sleeps a second between tries and notices its client's Close only
		// then. It is go-redis's, bounded, and not a leak of ours.
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

func start() (stop func(), err error) {
	if u := os.Getenv("REDIQ_TEST_REDIS_URL"); u != "" {
		url, real = u, true
		return func() {}, nil
	}
	if path, lookErr := exec.LookPath("redis-server"); lookErr == nil {
		for attempt := 0; attempt < 5; attempt++ {
			stop, err = startServer(path)
			if err == nil {
				real = true
				return stop, nil
			}
		}
		if os.Getenv("REDIQ_TEST_REQUIRE_REDIS") == "1" {
			return nil, fmt.Errorf("REDIQ_TEST_REQUIRE_REDIS=1 and redis-server would not start: %w", err)
		}
		fmt.Fprintf(os.Stderr, "testredis: redis-server would not start (%v); using miniredis\n", err)
	} else if os.Getenv("REDIQ_TEST_REQUIRE_REDIS") == "1" {
		return nil, errors.New("REDIQ_TEST_REQUIRE_REDIS=1 but redis-server is not installed")
	} else {
		fmt.Fprintln(os.Stderr, "testredis: redis-server not found: running on miniredis (an in-process fake); tests that need a real server are skipped and say so (install redis-server, or set REDIQ_TEST_REDIS_URL)")
	}
	mr, err := miniredis.Run()
	if err != nil {
		return nil, err
	}
	url = "redis://" + mr.Addr()
	return mr.Close, nil
}

func startServer(path string) (func(), error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "rediq-redis-")
	if err != nil {
		return nil, err
	}
	p, err := launch(path, serverArgs(port, dir))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if err := p.waitReady(addr, "", 10*time.Second); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("redis-server on port %d: %w", port, err)
	}
	url = "redis://" + addr
	return func() {
		p.kill()
		os.RemoveAll(dir)
	}, nil
}

// URL is the package's Redis.
func URL() string { return url }

// Real reports whether the tests run on a real redis-server.
func Real() bool { return real }

// RequireReal skips t on miniredis.
func RequireReal(t testing.TB) {
	t.Helper()
	if !real {
		t.Skip("needs a real redis-server (install redis-server to run it)")
	}
}

// Namespace returns a key namespace no other test uses.
func Namespace(t testing.TB) string {
	return fmt.Sprintf("rqtest%08x", rand.Uint32())
}

// Client returns a client of the package's Redis, closed when t ends.
func Client(t testing.TB) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// WaitFor polls cond until it holds or timeout passes, then fails t with msg.
func WaitFor(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ClientFor returns a client of the Redis at url (a server of the test's own),
// closed when t ends. It does not retry: a test that kills its server sees
// the failure at once.
func ClientFor(t testing.TB, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.DialerRetries = 1
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// ClosedPort returns a loopback address on which nothing listens: the kernel
// gave its port to a listener that is closed again.
func ClosedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
