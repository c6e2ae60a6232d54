package main

import (
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/rediq/rediq/internal/testredis"
)

// rediq queue pause and resume change what rediq queues shows; pause returns
// at once when no worker serves the queue.
func TestQueuePauseResume(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	fill(t, ns)
	paused := func() bool {
		t.Helper()
		out, _, err := rediqCmd(t, append([]string{"queues", "-o", "json"}, redisArgs(ns)...)...)
		var rows []map[string]any
		if err != nil || json.Unmarshal([]byte(out), &rows) != nil {
			t.Fatalf("queues: %v\n%s", err, out)
		}
		for _, r := range rows {
			if r["queue"] == "emails" {
				return r["paused"] == true
			}
		}
		t.Fatalf("no queue emails in %s", out)
		return false
	}
	out, _, err := rediqCmd(t, append([]string{"queue", "pause", "emails"}, redisArgs(ns)...)...)
	if err != nil || !strings.Contains(out, `queue "emails" paused`) || !paused() {
		t.Fatalf("pause: %v\n%s", err, out)
	}
	out, _, err = rediqCmd(t, append([]string{"queue", "resume", "emails", "-o", "json"}, redisArgs(ns)...)...)
	var got struct {
		Queue  string
		Paused bool
	}
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || got.Queue != "emails" || got.Paused || paused() {
		t.Fatalf("resume: %v\n%s", err, out)
	}
	if _, _, err := rediqCmd(t, append([]string{"queue", "pause", "bad name"}, redisArgs(ns)...)...); err == nil {
		t.Fatal("pause of an invalid queue name succeeded")
	}
}

// rediq queue purge deletes the states named; without --yes it asks on a
// terminal and refuses elsewhere.
func TestQueuePurge(t *testing.T) {
	ns := testredis.Namespace(t) // not parallel: it replaces stdin
	fill(t, ns)
	args := append([]string{"queue", "purge", "emails", "--state", "pending"}, redisArgs(ns)...)
	if _, _, err := rediqCmd(t, args...); err == nil || !strings.Contains(err.Error(), "pass --yes") {
		t.Fatalf("purge without --yes off a terminal = %v", err)
	}
	defer func(r io.Reader, f func() bool) { stdin, stdinIsTerminal = r, f }(stdin, stdinIsTerminal)
	stdinIsTerminal = func() bool { return true }
	stdin = strings.NewReader("no\n")
	if _, _, err := rediqCmd(t, args...); err == nil || !strings.Contains(err.Error(), "not confirmed") {
		t.Fatalf("purge answered no = %v", err)
	}
	stdin = strings.NewReader("yes\n")
	out, _, err := rediqCmd(t, args...)
	if err != nil || !strings.Contains(out, `purged 2 tasks of queue "emails"`) {
		t.Fatalf("purge = %v\n%s", err, out)
	}
	out, _, err = rediqCmd(t, append(args, "--yes", "-o", "json")...)
	if err != nil || !strings.Contains(out, `"purged": 0`) {
		t.Fatalf("second purge = %v\n%s", err, out)
	}
	if _, _, err := rediqCmd(t, append([]string{"queue", "purge", "emails", "--state", "active", "--yes"}, redisArgs(ns)...)...); err == nil {
		t.Fatal("purge of active succeeded")
	}
}

// rediq queue window sets, shows and clears a queue's run window, and
// refuses a bad spec.
func TestQueueWindowCommand(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	out, _, err := rediqCmd(t, append([]string{"queue", "window", "emails", "Mon-Fri", "09:00-17:30", "Europe/Berlin"}, redisArgs(ns)...)...)
	if err != nil || !strings.Contains(out, "Mon-Fri 09:00-17:30 Europe/Berlin") {
		t.Fatalf("set: %v\n%s", err, out)
	}
	out, _, err = rediqCmd(t, append([]string{"queue", "window", "emails", "-o", "json"}, redisArgs(ns)...)...)
	var got struct{ Queue, Window string }
	if err != nil || json.Unmarshal([]byte(out), &got) != nil || got.Window != "Mon-Fri 09:00-17:30 Europe/Berlin" {
		t.Fatalf("show: %v\n%s", err, out)
	}
	if _, _, err := rediqCmd(t, append([]string{"queue", "window", "emails", "9-17"}, redisArgs(ns)...)...); err == nil || !strings.Contains(err.Error(), "9-17") {
		t.Fatalf("bad spec: %v", err)
	}
	out, _, err = rediqCmd(t, append([]string{"queue", "window", "emails", "--clear"}, redisArgs(ns)...)...)
	if err != nil || !strings.Contains(out, "no window") {
		t.Fatalf("clear: %v\n%s", err, out)
	}
}
