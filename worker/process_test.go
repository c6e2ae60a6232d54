package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// child is a worker process: this test binary run again in a childMain mode.
type child struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	exited chan struct{}
}

func startChild(t *testing.T, e *env, mode string, extraEnv ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(os.Args[0], "-test.run=^$"), exited: make(chan struct{})}
	c.cmd.Env = append(os.Environ(), "REDIQ_TEST_CHILD="+mode, "REDIQ_TEST_URL="+testredis.URL(), "REDIQ_TEST_NS="+e.ns)
	c.cmd.Env = append(c.cmd.Env, extraEnv...)
	c.cmd.Stdout, c.cmd.Stderr = &c.out, &c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = c.cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill()
		<-c.exited
	})
	return c
}

func (c *child) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

func (c *child) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-c.exited:
	case <-time.After(timeout):
		t.Fatalf("child did not exit within %s; output:\n%s", timeout, c.out.String())
	}
}

// A worker SIGKILLed while holding tasks loses none of them: another worker runs
// every one, the last within LeaseTTL plus one heartbeat of the kill.
func TestKilledWorkerLosesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 300
	const ttl = 2 * time.Second
	type done struct {
		id rediq.TaskID
		at time.Time
	}
	completed := newRecorder[done]()
	task := rediq.Register(e.app, "job", func(ctx context.Context, _ int) (int, error) {
		info, _ := rediq.CurrentTask(ctx)
		completed.add(done{info.ID, time.Now()})
		return 0, nil
	})
	ids, err := task.EnqueueMany(context.Background(), make([]int, n))
	if err != nil {
		t.Fatal(err)
	}

	ch := startChild(t, e, "hold", "REDIQ_TEST_LEASE_TTL="+ttl.String())
	testredis.WaitFor(t, 20*time.Second, "the child to hold 100 tasks", func() bool { return e.active("default") >= 100 })
	held := e.active("default")
	killedAt := time.Now()
	ch.signal(t, syscall.SIGKILL)
	ch.wait(t, 10*time.Second)
	t.Logf("killed a worker holding %d tasks", held)

	e.start(e.app, worker.Config{Concurrency: 50, LeaseTTL: ttl})
	all := completed.wait(t, n, 30*time.Second)
	seen := map[rediq.TaskID]bool{}
	var last time.Time
	for _, d := range all {
		seen[d.id] = true
		if d.at.After(last) {
			last = d.at
		}
	}
	for _, id := range ids {
		if !seen[id] {
			t.Fatalf("task %s was lost (child output: %s)", id, ch.out.String())
		}
	}
	took := last.Sub(killedAt)
	t.Logf("all %d tasks done %v after the kill (lease TTL %v)", n, took, ttl)
	if bound := ttl + ttl/3; took > bound {
		t.Fatalf("last task done %v after the kill, want within LeaseTTL plus one heartbeat (%v)", took, bound)
	}
	testredis.WaitFor(t, 5*time.Second, "leases and recovery counts to clear", func() bool {
		return e.active("default") == 0 && e.rdb.Exists(context.Background(), e.queue("default").Recovered).Val() == 0
	})
}

// SIGINT: running tasks finish, prefetched ones finish or go back to pending,
// nothing is lost; a second SIGINT skips the wait.
func TestSignalDrainsGracefully(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name            string
		shutdownTimeout string
		jobTime         string
		signals         int
		wantDoneAtLeast int64
	}{
		{"drain everything held", "20s", "100ms", 1, 12},
		{"timeout returns the rest", "150ms", "100ms", 1, 4},
		{"second signal skips the wait", "60s", "60s", 2, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			const n = 40
			task := rediq.Register(e.app, "job", func(context.Context, int) (int, error) { return 0, nil })
			if _, err := task.EnqueueMany(context.Background(), make([]int, n)); err != nil {
				t.Fatal(err)
			}
			ch := startChild(t, e, "main", "REDIQ_CONCURRENCY=4", "REDIQ_PREFETCH=8",
				"REDIQ_SHUTDOWN_TIMEOUT="+c.shutdownTimeout, "REDIQ_TEST_JOB_TIME="+c.jobTime, "REDIQ_LOG_LEVEL=warn")
			testredis.WaitFor(t, 20*time.Second, "the child to hold 12 tasks", func() bool { return e.active("default") == 12 })
			start := time.Now()
			for i := 0; i < c.signals; i++ {
				ch.signal(t, syscall.SIGINT)
				time.Sleep(50 * time.Millisecond) // two distinct signals, not one coalesced
			}
			ch.wait(t, 30*time.Second)
			if code := ch.cmd.ProcessState.ExitCode(); code != 0 {
				t.Fatalf("child exit code %d; output:\n%s", code, ch.out.String())
			}
			ctx := context.Background()
			doneN := e.rdb.SCard(ctx, e.ns+":done").Val()
			pending := e.pendingLen("default")
			t.Logf("stopped in %v: %d completed, %d pending", time.Since(start), doneN, pending)
			if doneN+pending != n {
				t.Fatalf("completed %d + pending %d != enqueued %d; output:\n%s", doneN, pending, n, ch.out.String())
			}
			if doneN < c.wantDoneAtLeast {
				t.Fatalf("%d completed, want at least %d (the running ones finish)", doneN, c.wantDoneAtLeast)
			}
			if a := e.active("default"); a != 0 {
				t.Fatalf("%d tasks still leased after a graceful stop", a)
			}
			if c.signals == 2 && time.Since(start) > 10*time.Second {
				t.Fatalf("a second signal should skip the %s wait; the stop took %v", c.shutdownTimeout, time.Since(start))
			}
		})
	}
}

// go-redis's own log lines, such as a failed dial, go through the worker's
// logger: with --log-format json every line the process writes is JSON.
func TestMainRoutesGoRedisLogs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ch := startChild(t, e, "main", "REDIQ_REDIS_URL=redis://127.0.0.1:1/0?max_retries=-1", "REDIQ_LOG_FORMAT=json", "REDIQ_LOG_LEVEL=info")
	ch.wait(t, 30*time.Second)
	if code := ch.cmd.ProcessState.ExitCode(); code != 1 {
		t.Fatalf("exit code %d, want 1 (Redis unreachable); output:\n%s", code, ch.out.String())
	}
	routed := false
	for line := range strings.Lines(ch.out.String()) {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("a line that is not the logger's JSON: %q", line)
		}
		if entry["logger"] == "redis" && entry["level"] == "warn" && strings.Contains(entry["msg"].(string), "failed to dial") {
			routed = true
		}
	}
	if !routed {
		t.Fatalf("no warning from go-redis about the failed dial; output:\n%s", ch.out.String())
	}
}

// A program whose worker is one of its commands ("myapp worker --queue x")
// passes the arguments after the command to MainArgs, which reads them, names
// the command in its usage and errors, and returns the exit code: the program
// goes on after it.
func TestMainArgsRunsAsASubcommand(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, args string
		code       int
		say        []string
	}{
		{"help", "--help", 0, []string{"Usage: myapp worker [flags]", "MainArgs returned 0"}},
		{"bad flag", "--nope", 2, []string{"myapp worker: unknown flag: --nope", "MainArgs returned 2"}},
		{"stray argument", "--queue x extra", 2, []string{`myapp worker: unexpected argument "extra"`, "MainArgs returned 2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ch := startChild(t, e, "subcommand", "REDIQ_TEST_ARGS="+c.args)
			ch.wait(t, 30*time.Second)
			if code := ch.cmd.ProcessState.ExitCode(); code != c.code {
				t.Fatalf("exit code %d, want %d; output:\n%s", code, c.code, ch.out.String())
			}
			for _, s := range c.say {
				if !strings.Contains(ch.out.String(), s) {
					t.Fatalf("the output does not say %q:\n%s", s, ch.out.String())
				}
			}
		})
	}
	t.Run("run", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		double := rediq.Register(e.app, "double", func(_ context.Context, n int) (int, error) { return 2 * n, nil })
		// Queue x is served only if MainArgs read --queue x.
		id, err := double.Enqueue(context.Background(), 21, rediq.Queue("x"), rediq.Retention(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		ch := startChild(t, e, "subcommand", "REDIQ_TEST_ARGS=--queue x --log-level warn")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if got, err := double.Wait(ctx, id); err != nil || got != 42 {
			t.Fatalf("Wait: %d, %v; want 42 (the worker serves queue x); output:\n%s", got, err, ch.out.String())
		}
		ch.signal(t, syscall.SIGTERM)
		ch.wait(t, 30*time.Second)
		if code := ch.cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(ch.out.String(), "MainArgs returned 0") {
			t.Fatalf("exit code %d, want 0 after MainArgs returned 0; output:\n%s", code, ch.out.String())
		}
	})
}
