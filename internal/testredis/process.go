package testredis

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// process is one run of redis-server. It dies with the test binary (see
// dieWithParent), and its exit is observed by the goroutine that started it.
type process struct {
	cmd    *exec.Cmd
	log    *tailBuffer
	exited chan struct{} // closed once the process has been reaped
	err    error         // Wait's result; read it only after exited is closed
}

// errExited says redis-server exited before it answered, which on a fixed
// port usually means the port was taken.
var errExited = errors.New("redis-server exited")

// launch starts redis-server with args.
func launch(path string, args []string) (*process, error) {
	p := &process{log: &tailBuffer{max: 8 << 10}, exited: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// The parent-death signal fires when the thread that forked the child
		// exits, not the process. Holding this goroutine on its thread until
		// the child is reaped keeps the runtime from retiring that thread under
		// a live server; Wait blocks a thread anyway, so it costs nothing.
		runtime.LockOSThread()
		cmd := exec.Command(path, args...)
		cmd.Stdout, cmd.Stderr = p.log, p.log
		// A fork of redis-server (AOF rewrite) could hold the output pipe open.
		cmd.WaitDelay = 2 * time.Second
		dieWithParent(cmd)
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		p.cmd = cmd
		started <- nil
		p.err = cmd.Wait()
		close(p.exited)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// kill ends the process with SIGKILL and waits until it is reaped.
// It is fine to call on a process that already exited.
func (p *process) kill() {
	select {
	case <-p.exited:
		return // reaped: its pid may belong to someone else by now
	default:
	}
	_ = killGroup(p.cmd.Process)
	<-p.exited
}

// stop asks the process to shut down (SIGTERM), waits up to timeout, then kills it.
func (p *process) stop(timeout time.Duration) {
	if err := terminate(p.cmd.Process); err == nil {
		select {
		case <-p.exited:
			return
		case <-time.After(timeout):
		}
	}
	p.kill()
}

// waitReady waits until the server at addr answers PING, which it does only
// once it has loaded its data (before that it answers LOADING). It speaks RESP
// itself rather than through go-redis, whose pool retries each refused dial
// 5 times, 100ms apart, logging every failure. If it fails, the process is dead.
func (p *process) waitReady(addr, password string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ping(addr, password)
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%w (%v): %s", errExited, p.err, p.log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.kill()
			return fmt.Errorf("redis-server did not answer within %s: %w", timeout, err)
		}
	}
}

// ping sends PING (after AUTH if there is a password) and wants +PONG.
func ping(addr, password string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	var req []byte
	if password != "" {
		req = command(req, "AUTH", password)
	}
	if _, err := c.Write(command(req, "PING")); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	var reply []byte
	if password != "" {
		if reply, err = readValue(r, nil); err != nil {
			return err
		}
	}
	if reply, err = readValue(r, reply); err != nil {
		return err
	}
	if !bytes.HasSuffix(reply, []byte("+PONG\r\n")) {
		return fmt.Errorf("PING: %q", reply)
	}
	return nil
}

// command appends args to buf as a RESP command.
func command(buf []byte, args ...string) []byte {
	buf = fmt.Appendf(buf, "*%d\r\n", len(args))
	for _, a := range args {
		buf = fmt.Appendf(buf, "$%d\r\n%s\r\n", len(a), a)
	}
	return buf
}

// serverArgs are the arguments every test server gets: loopback only, no RDB
// snapshots, data in dir. Later arguments override these.
func serverArgs(port int, dir string) []string {
	return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--maxclients", "2000"}
}

// freePort returns a loopback port nothing listens on right now. Another
// process may take it before we do; callers retry.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tailBuffer keeps the last max bytes written to it: enough of redis-server's
// log to say why it exited, without growing for the life of the server.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
