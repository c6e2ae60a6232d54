package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
)

func TestBatchLogsOfARunningBatch(t *testing.T) {
	t.Parallel()
	e := newBatchEnv(t, 4)
	// Two tasks print and end; a third prints and runs until the batch stops.
	b := e.batch(rediq.BatchOptions{}, jobArgs{N: 1, Lines: 3}, jobArgs{N: 2, Lines: 3}, jobArgs{N: 3, Lines: 1, Sleep: time.Minute})
	testredis.WaitFor(t, 10*time.Second, "7 lines", func() bool {
		out, err := e.cmd(t, "batch", "logs", id(b))
		return err == nil && strings.Count(out, "] n=") == 7
	})
	// Without --follow it prints what is there and returns, though the batch runs.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out syncBuffer
	if err := await(t, runAsync(ctx, &out, append([]string{"batch", "logs", id(b)}, redisArgs(e.ns)...)...), 5*time.Second, "logs"); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 7 {
		t.Fatalf("%d lines, want 7:\n%s", n, out.String())
	}

	// --follow prints them and goes on with new ones, until the batch ends.
	var follow syncBuffer
	followed := runAsync(ctx, &follow, append([]string{"batch", "logs", id(b), "--follow", "-o", "json"}, redisArgs(e.ns)...)...)
	testredis.WaitFor(t, 10*time.Second, "the follower to print the 7 lines", func() bool { return strings.Count(follow.String(), "\n") == 7 })
	if _, err := e.job.Enqueue(context.Background(), jobArgs{N: 4, Lines: 2}, rediq.InBatch(b)); err != nil {
		t.Fatal(err)
	}
	testredis.WaitFor(t, 10*time.Second, "the follower to print the new lines", func() bool { return strings.Count(follow.String(), "\n") == 9 })
	if err := e.app.StopBatch(context.Background(), b.ID()); err != nil {
		t.Fatal(err)
	}
	if err := await(t, followed, 10*time.Second, "logs --follow of a stopped batch"); err != nil {
		t.Fatal(err)
	}
	texts := map[string]bool{}
	for _, l := range jsonLines[outputLineJSON](t, follow.String()) {
		texts[l.Text] = true
	}
	for _, want := range []string{"n=1 line=2", "n=3 line=0", "n=4 line=1"} {
		if !texts[want] {
			t.Fatalf("followed lines lack %q: %v", want, texts)
		}
	}

	// Ctrl-C (ctx's end) ends a follow without an error.
	b2 := e.batch(rediq.BatchOptions{}, jobArgs{N: 5, Lines: 1, Sleep: time.Minute})
	ictx, interrupt := context.WithCancel(context.Background())
	var f2 syncBuffer
	followed = runAsync(ictx, &f2, append([]string{"batch", "logs", id(b2), "-f"}, redisArgs(e.ns)...)...)
	testredis.WaitFor(t, 10*time.Second, "the line", func() bool { return strings.Contains(f2.String(), "n=5 line=0") })
	interrupt()
	if err := await(t, followed, 5*time.Second, "an interrupted logs --follow"); err != nil {
		t.Fatalf("interrupted: %v, want nil", err)
	}
}

func TestBatchStop(t *testing.T) {
	t.Parallel()
	e := newBatchEnv(t, 1)
	slow := jobArgs{Lines: 1, Sleep: time.Minute}
	b := e.batch(rediq.BatchOptions{Detached: true}, slow, slow, slow)
	testredis.WaitFor(t, 10*time.Second, "a task to run", func() bool { return e.stat(b.ID()).Running == 1 })

	out := e.ok(t, "batch", "stop", id(b))
	if want := fmt.Sprintf("stopped batch %d: 2 unstarted tasks will not start; the workers cancel the 1 running\n", b.ID()); out != want {
		t.Fatalf("stop printed %q, want %q", out, want)
	}
	testredis.WaitFor(t, 10*time.Second, "every task to end cancelled", func() bool {
		st := e.stat(b.ID())
		return st.Running == 0 && st.Unstarted == 0 && st.Cancelled == 3
	})
	st := e.stat(b.ID())
	if !st.Stopped || st.StopReason != "stopped by StopBatch" || st.Started != 1 {
		t.Fatalf("stat %+v", st)
	}
	if out := e.ok(t, "batch", "stat", id(b)); !strings.Contains(out, "stopped:  yes, ") || !strings.Contains(out, ": stopped by StopBatch") {
		t.Fatalf("stat of a stopped batch:\n%s", out)
	}
	if out := e.ok(t, "batch", "stop", id(b)); out != fmt.Sprintf("batch %d had already stopped: stopped by StopBatch\n", b.ID()) {
		t.Fatalf("stop again: %q", out)
	}
	j := decodeAs[map[string]any](t, e.ok(t, "batch", "stop", id(b), "-o", "json"))
	if j["stopped"] != false || j["state"] != "stopped" || j["stop_reason"] != "stopped by StopBatch" || j["batch"] != float64(b.ID()) {
		t.Fatalf("stop -o json: %v", j)
	}

	done := e.batch(rediq.BatchOptions{Detached: true}, jobArgs{N: 1})
	e.wait(done)
	j = decodeAs[map[string]any](t, e.ok(t, "batch", "stop", id(done), "-o", "json"))
	if j["stopped"] != false || j["state"] != "completed" {
		t.Fatalf("stop of a completed batch: %v", j)
	}
}

// syncBuffer is a strings.Builder safe for a command writing while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// runAsync runs the command line in a goroutine under ctx; its error comes on
// the channel.
func runAsync(ctx context.Context, stdout *syncBuffer, args ...string) chan error {
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, stdout, &syncBuffer{}) }()
	return done
}

// await returns what done delivers, failing t if nothing comes within d.
func await(t *testing.T, done chan error, d time.Duration, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s did not return within %s", what, d)
		return nil
	}
}

// batch errors shows, per error, some ids of the tasks that died of it.
func TestBatchErrorsTaskIDs(t *testing.T) {
	t.Parallel()
	e := newBatchEnv(t, 4)
	args := make([]jobArgs, 12)
	for i := range args {
		args[i] = jobArgs{N: 2 * i, Fail: true} // all "boom kind 0"
	}
	args = append(args, jobArgs{N: 1, Fail: true}) // "boom kind 1"
	b := e.batch(rediq.BatchOptions{Detached: true}, args...)
	testredis.WaitFor(t, 30*time.Second, "the worker to count every end", func() bool { return e.stat(b.ID()).Failed == 13 })
	e.wait(b)

	type errorJSON struct {
		Error   string         `json:"error"`
		Tasks   int            `json:"tasks"`
		TaskIDs []rediq.TaskID `json:"task_ids"`
	}
	got := decodeAs[[]errorJSON](t, e.ok(t, "batch", "errors", id(b), "-o", "json"))
	if len(got) != 2 || got[0].Error != "boom kind 0" || got[0].Tasks != 12 || len(got[0].TaskIDs) != 10 ||
		got[1].Error != "boom kind 1" || got[1].Tasks != 1 || len(got[1].TaskIDs) != 1 {
		t.Fatalf("errors %+v; want 12 of kind 0 with 10 ids, 1 of kind 1 with its id", got)
	}
	for _, g := range got {
		for _, tid := range g.TaskIDs {
			r, err := e.app.GetTask(context.Background(), tid)
			if err != nil || r.State != rediq.StateDead || r.LastError != g.Error {
				t.Fatalf("task %s of %q: %+v, %v; want dead of that error", tid, g.Error, r, err)
			}
		}
	}
	rows := fields(e.ok(t, "batch", "errors", id(b)))
	want := strings.Join([]string{string(got[0].TaskIDs[0]), string(got[0].TaskIDs[1]), string(got[0].TaskIDs[2])}, ",")
	if len(rows) != 3 || strings.Join(rows[0], " ") != "TASKS TASK IDS ERROR" ||
		strings.Join(rows[1], " ") != "12 "+want+" +9 more boom kind 0" ||
		strings.Join(rows[2], " ") != "1 "+string(got[1].TaskIDs[0])+" boom kind 1" {
		t.Fatalf("errors table %q", rows)
	}
}
