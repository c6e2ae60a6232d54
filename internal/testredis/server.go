package testredis

import (
	"errors"
	neturl "net/url"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Server is a redis-server of one test's own, for tests that kill and restart
// it. It keeps its port and data directory across restarts.
type Server struct {
	path string
	port int
	dir  string
	cfg  serverConfig

	mu   sync.Mutex
	proc *process // nil while stopped
}

type serverConfig struct {
	aof      bool
	password string
	args     []string
}

// ServerOption configures StartServer.
type ServerOption interface{ apply(*serverConfig) }

type serverOption func(*serverConfig)

func (f serverOption) apply(c *serverConfig) { f(c) }

// WithAOF turns on the append-only file with an fsync per write, so a SIGKILL
// (Kill) loses nothing the server acknowledged and Restart brings it back.
func WithAOF() ServerOption { return serverOption(func(c *serverConfig) { c.aof = true }) }

// WithPassword makes the server require pw (requirepass). URL includes it.
func WithPassword(pw string) ServerOption {
	return serverOption(func(c *serverConfig) { c.password = pw })
}

// WithArgs passes extra redis-server arguments, such as "--maxmemory", "1mb".
// They come last, so they override the defaults.
func WithArgs(args ...string) ServerOption {
	return serverOption(func(c *serverConfig) { c.args = append(c.args, args...) })
}

// readyTimeout bounds a start, including loading the AOF.
const readyTimeout = 10 * time.Second

// StartServer starts a redis-server on a free loopback port for t alone and
// kills it when t ends. Without redis-server installed it skips t, or fails it
// under REDIQ_TEST_REQUIRE_REDIS=1.
func StartServer(t testing.TB, opts ...ServerOption) *Server {
	t.Helper()
	s := &Server{path: needServer(t), dir: t.TempDir()}
	for _, o := range opts {
		o.apply(&s.cfg)
	}
	// Registered after TempDir, so it runs before the directory is removed.
	t.Cleanup(s.Kill)
	// The port can be taken between freePort and the server's bind: try another.
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if s.port, err = freePort(); err != nil {
			continue
		}
		if s.proc, err = s.start(); err == nil {
			return s
		}
	}
	t.Fatalf("start redis-server: %v", err)
	return nil
}

func (s *Server) start() (*process, error) {
	args := serverArgs(s.port, s.dir)
	if s.cfg.aof {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	}
	if s.cfg.password != "" {
		args = append(args, "--requirepass", s.cfg.password)
	}
	args = append(args, s.cfg.args...)
	p, err := launch(s.path, args)
	if err != nil {
		return nil, err
	}
	if err := p.waitReady(s.Addr(), s.cfg.password, readyTimeout); err != nil {
		return nil, err
	}
	return p, nil
}

// Addr is the server's host:port. It does not change across restarts.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// URL is the server's redis:// URL, with the password if there is one.
func (s *Server) URL() string {
	u := neturl.URL{Scheme: "redis", Host: s.Addr()}
	if s.cfg.password != "" {
		u.User = neturl.UserPassword("", s.cfg.password)
	}
	return u.String()
}

// Kill ends the server with SIGKILL, as a crash would, and waits until it has
// exited. It does nothing if the server is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.kill()
		s.proc = nil
	}
}

// Stop shuts the server down cleanly (SIGTERM, as an operator would), waiting
// up to 5 seconds before killing it. It does nothing if the server is not running.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.stop(5 * time.Second)
		s.proc = nil
	}
}

// Restart starts the server again on the same port and directory, killing it
// first if it is running, and returns once it answers PING with its data
// (the AOF, under WithAOF) loaded. Call it from the test's goroutine.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.kill()
		s.proc = nil
	}
	// Something may have taken the port while the server was down, e.g. a
	// client's ephemeral port; it is usually freed within moments.
	deadline := time.Now().Add(5 * time.Second)
	for {
		p, err := s.start()
		if err == nil {
			s.proc = p
			return
		}
		if !errors.Is(err, errExited) || time.Now().After(deadline) {
			t.Fatalf("restart redis-server on %s: %v", s.Addr(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
