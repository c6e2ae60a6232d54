package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
)

// Without a terminal: a line when it starts, one every --interval, and one
// at the end; exit status 0 once the batch completes.
func TestBatchWaitLines(t *testing.T) {
	t.Parallel()
	e := newBatchEnv(t, 2)
	args := make([]jobArgs, 8)
	for i := range args {
		args[i] = jobArgs{N: i, Sleep: 100 * time.Millisecond}
	}
	b := e.batch(rediq.BatchOptions{Detached: true}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out syncBuffer
	done := runAsync(ctx, &out, append([]string{"batch", "wait", id(b), "--interval", "100ms"}, redisArgs(e.ns)...)...)
	// Until its producer says it is done adding tasks (Close, for a detached
	// batch), a batch does not complete: the lines go on.
	testredis.WaitFor(t, 10*time.Second, "three lines", func() bool { return strings.Count(out.String(), "\n") >= 3 })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := await(t, done, 20*time.Second, "batch wait"); err != nil {
		t.Fatalf("%v; output:\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	progress := regexp.MustCompile(fmt.Sprintf(`^batch %d: \d+/8 done \(\d+ succeeded, 0 failed, 0 cancelled\), \d+ running, [0-9.]+ tasks/s, ETA \S+$`, b.ID()))
	for _, l := range lines[:len(lines)-1] {
		if !progress.MatchString(l) {
			t.Fatalf("line %q is not a progress line; output:\n%s", l, out.String())
		}
	}
	end := regexp.MustCompile(fmt.Sprintf(`^batch %d completed: 8/8 done \(8 succeeded, 0 failed, 0 cancelled\) in \S+, [0-9.]+ tasks/s$`, b.ID()))
	if last := lines[len(lines)-1]; !end.MatchString(last) {
		t.Fatalf("last line %q", last)
	}
	if strings.Contains(out.String(), "\x1b") || strings.Contains(out.String(), "\r") {
		t.Fatalf("terminal control characters in the output of a pipe:\n%q", out.String())
	}

	// --output json: the stat at the end, alone.
	j := decodeAs[batchJSON](t, e.ok(t, "batch", "wait", id(b), "-o", "json"))
	if j.ID != b.ID() || j.State != "completed" || j.Succeeded != 8 {
		t.Fatalf("wait -o json: %+v", j)
	}
}

// A batch that stops ends the wait with exit status 1 and the reason.
func TestBatchWaitStopped(t *testing.T) {
	t.Parallel()
	e := newBatchEnv(t, 1)
	b := e.batch(rediq.BatchOptions{}, jobArgs{Sleep: time.Minute}, jobArgs{Sleep: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out syncBuffer
	done := runAsync(ctx, &out, append([]string{"batch", "wait", id(b)}, redisArgs(e.ns)...)...)
	testredis.WaitFor(t, 10*time.Second, "the first line", func() bool { return out.String() != "" })
	testredis.WaitFor(t, 10*time.Second, "a task to run", func() bool { return e.stat(b.ID()).Running == 1 })
	if err := e.app.StopBatch(context.Background(), b.ID()); err != nil {
		t.Fatal(err)
	}
	err := await(t, done, 10*time.Second, "batch wait")
	if err == nil || isUsage(err) || !errors.Is(err, rediq.ErrBatchStopped) ||
		err.Error() != fmt.Sprintf("batch wait: batch %d stopped: stopped by StopBatch", b.ID()) {
		t.Fatalf("err = %v; want the batch stopped, with the reason", err)
	}
	// The end counts what BatchStat says from then on: the running task
	// cancelled, the other never started.
	if !strings.Contains(out.String(), fmt.Sprintf("batch %d stopped: 2/2 done (0 succeeded, 0 failed, 2 cancelled (1 never started)) in ", b.ID())) {
		t.Fatalf("output:\n%s", out.String())
	}
	if st := e.stat(b.ID()); st.Running != 0 || st.NeverStarted != 1 || st.Cancelled != 2 {
		t.Fatalf("stat %+v", st)
	}
	// A wait begun after the stop ends at once, the same way.
	jout, err := e.cmd(t, "batch", "wait", id(b), "-o", "json")
	if j := decodeAs[batchJSON](t, jout); !errors.Is(err, rediq.ErrBatchStopped) || j.State != "stopped" || j.NeverStarted != 1 {
		t.Fatalf("wait -o json of a stopped batch: %v\n%s", err, jout)
	}
	if out := e.ok(t, "batch", "stat", id(b)); !strings.Contains(out, "2 cancelled (1 never started), 0 running, 0 unstarted") {
		t.Fatalf("stat of the stopped batch:\n%s", out)
	}
}

// A detached batch whose producer enqueued and went away (its App closed,
// without Close or Wait on the batch) completes when its tasks have ended:
// the wait returns.
func TestBatchWaitDetachedWithoutItsProducer(t *testing.T) {
	t.Parallel()
	e := newBatchEnv(t, 4)
	producer, err := rediq.New(rediq.Config{RedisURL: testredis.URL(), Namespace: e.ns})
	if err != nil {
		t.Fatal(err)
	}
	job := rediq.Register(producer, "job", func(context.Context, jobArgs) ([]jobRow, error) { return nil, nil },
		rediq.ResultTable("rows"), rediq.Retries(0))
	b, err := producer.NewBatch(context.Background(), rediq.BatchOptions{Detached: true})
	if err != nil {
		t.Fatal(err)
	}
	args := make([]jobArgs, 20)
	for i := range args {
		args[i] = jobArgs{N: i, Sleep: 10 * time.Millisecond}
	}
	if _, err := job.EnqueueMany(context.Background(), args, rediq.InBatch(b)); err != nil {
		t.Fatal(err)
	}
	if err := producer.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out syncBuffer
	done := runAsync(ctx, &out, append([]string{"batch", "wait", id(b), "--interval", "1h"}, redisArgs(e.ns)...)...)
	if err := await(t, done, 20*time.Second, "batch wait"); err != nil {
		t.Fatalf("%v; output:\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), fmt.Sprintf("batch %d completed: 20/20 done (20 succeeded, 0 failed, 0 cancelled) in ", b.ID())) {
		t.Fatalf("output:\n%s", out.String())
	}
}

// On a terminal the wait draws a bar that redraws itself.
func TestBatchWaitBarOnATerminal(t *testing.T) {
	t.Parallel()
	e := newBatchEnv(t, 2)
	args := make([]jobArgs, 8)
	for i := range args {
		args[i] = jobArgs{N: i, Sleep: 100 * time.Millisecond}
	}
	b := e.batch(rediq.BatchOptions{Detached: true}, args...)

	ptmx, tty, err := pty.Open()
	if errors.Is(err, pty.ErrUnsupported) {
		t.Skip("no pseudo-terminals here")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	if !isTerminal(tty) {
		t.Fatal("isTerminal(the pty) = false")
	}
	var screen syncBuffer
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = io.Copy(&screen, ptmx) // until the tty is closed (EIO)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"batch", "wait", id(b), "--interval", "1h"}, redisArgs(e.ns)...), tty, &bytes.Buffer{})
	}()
	// The bar is drawn before the batch can complete (Close), so that the
	// end redraws it.
	testredis.WaitFor(t, 10*time.Second, "the bar", func() bool { return strings.Contains(screen.String(), " / 8 [") })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	err = await(t, done, 20*time.Second, "batch wait")
	tty.Close()
	select {
	case <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("the pty's output did not end")
	}
	if err != nil {
		t.Fatalf("%v; screen:\n%q", err, screen.String())
	}
	s := screen.String()
	// The bar is drawn, then redrawn in place (cursor up, erase), and ends full.
	for _, want := range []string{
		fmt.Sprintf("batch %d ", b.ID()),
		"8 / 8",
		"100 %",
		"tasks/s, ETA",
		"\x1b[1A\x1b[J",
		fmt.Sprintf("batch %d completed: 8/8 done (8 succeeded, 0 failed, 0 cancelled)", b.ID()),
	} {
		if !strings.Contains(s, want) {
			t.Fatalf("the terminal shows no %q:\n%q", want, s)
		}
	}
	if !regexp.MustCompile(`\[=+[>=]?-*\]`).MatchString(s) {
		t.Fatalf("no bar [===>---] on the terminal:\n%q", s)
	}
}

// batch wait takes --latest, as batch stat does.
func TestBatchWaitLatest(t *testing.T) {
	t.Parallel()
	e := newBatchEnv(t, 2)
	b := e.batch(rediq.BatchOptions{Detached: true}, jobArgs{N: 1}, jobArgs{N: 2})
	e.wait(b)
	j := decodeAs[batchJSON](t, e.ok(t, "batch", "wait", "--latest", "-o", "json"))
	if j.ID != b.ID() || j.State != "completed" {
		t.Fatalf("batch wait --latest: %+v; want batch %d completed", j, b.ID())
	}
	if _, err := e.cmd(t, "batch", "wait", "--latest", id(b)); !isUsage(err) {
		t.Fatalf("N and --latest: %v; want a usage error", err)
	}
}
