package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
)

// The command line as a whole: global flags, help, usage errors, --output json.

// testServer is how the CLI names the test Redis: its address alone.
func testServer() string { return strings.TrimPrefix(testredis.URL(), "redis://") }

// The flags every command shares may come before the command (and before a
// group's action), as with git or kubectl, in each of pflag's spellings.
func TestGlobalFlagsBeforeTheCommand(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	fill(t, ns)
	url := testredis.URL()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"before", []string{"--redis-url", url, "--namespace", ns, "-o", "json", "queues"}},
		{"with =", []string{"--redis-url=" + url, "--namespace=" + ns, "--output=json", "queues"}},
		{"shorthand joined", []string{"-ojson", "--redis-url", url, "queues", "--namespace", ns}},
		{"some before, some after", []string{"--namespace", ns, "queues", "--redis-url", url, "--output", "json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, _, err := rediqCmd(t, tc.args...)
			if err != nil {
				t.Fatalf("rediq %s: %v", strings.Join(tc.args, " "), err)
			}
			var rows []queueRow
			if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 2 || rows[1].Queue != "emails" {
				t.Fatalf("rediq %s printed %q (%v); want the two queues as JSON", strings.Join(tc.args, " "), out, err)
			}
		})
	}
	t.Run("before a group's action", func(t *testing.T) {
		t.Parallel()
		out, _, err := rediqCmd(t, "--redis-url", url, "--namespace", ns, "tasks", "-s", "pending", "-q", "emails", "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var page struct{ Tasks []map[string]any }
		if err := json.Unmarshal([]byte(out), &page); err != nil || len(page.Tasks) != 2 {
			t.Fatalf("tasks: %q, %v", out, err)
		}
		id := fmt.Sprint(page.Tasks[0]["id"])
		for _, args := range [][]string{
			{"--redis-url", url, "--namespace", ns, "task", "show", id, "-o", "json"},
			{"task", "--redis-url", url, "--namespace", ns, "-o", "json", "show", id},
		} {
			out, _, err := rediqCmd(t, args...)
			var m map[string]any
			if err != nil || json.Unmarshal([]byte(out), &m) != nil || m["id"] != id {
				t.Fatalf("rediq %s: %q, %v; want task %s as JSON", strings.Join(args, " "), out, err, id)
			}
		}
	})
	t.Run("a flag without its value", func(t *testing.T) {
		t.Parallel()
		if _, _, err := rediqCmd(t, "--namespace"); !isUsage(err) || !strings.Contains(err.Error(), "--namespace needs a value") {
			t.Fatalf("err = %v", err)
		}
	})
}

// rediq --version is rediq version.
func TestVersionFlag(t *testing.T) {
	t.Parallel()
	want, _, err := rediqCmd(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := rediqCmd(t, "--version")
	if err != nil || out != want {
		t.Fatalf("--version: %q, %v; want %q", out, err, want)
	}
}

// A bare "rediq" is a usage mistake: the usage goes to stderr, and main
// exits 2 (a usage error).
func TestNoCommandIsAUsageError(t *testing.T) {
	t.Parallel()
	out, stderr, err := rediqCmd(t)
	if !isUsage(err) {
		t.Fatalf("err = %v; want a usage error (exit 2)", err)
	}
	if out != "" || !strings.Contains(stderr, "Usage:") || !strings.Contains(stderr, "queues") {
		t.Fatalf("stdout %q, stderr %q; want the usage on stderr only", out, stderr)
	}
}

// help takes -h after it, and a command or a group's action.
func TestHelpAfterHelp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"help", "-h"}, "Commands:"},
		{[]string{"help", "--help"}, "Commands:"},
		{[]string{"--namespace", "x", "help"}, "Commands:"},
		{[]string{"help", "queues"}, "rediq queues [flags]"},
		{[]string{"help", "batch"}, "rediq batch <action>"},
		{[]string{"help", "batch", "stat"}, "rediq batch stat N [flags]"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			out, _, err := rediqCmd(t, tc.args...)
			if err != nil || !strings.Contains(out, tc.want) {
				t.Fatalf("rediq %s: %v\n%s\nwant %q", strings.Join(tc.args, " "), err, out, tc.want)
			}
		})
	}
}

// An unknown command or action names the closest one.
func TestDidYouMean(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"queuess"}, `unknown command "queuess": did you mean "queues"?`},
		{[]string{"queue", "puase", "q"}, `queue: unknown action "puase": did you mean "pause"?`},
		{[]string{"verison"}, `did you mean "version"?`},
		{[]string{"bacth", "stat", "1"}, `did you mean "batch"?`},
		{[]string{"help", "quues"}, `did you mean "queues"?`},
		{[]string{"batch", "stats", "1"}, `batch: unknown action "stats": did you mean "stat"?`},
		{[]string{"task", "shwo", "x"}, `did you mean "show"?`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			_, _, err := rediqCmd(t, tc.args...)
			if !isUsage(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want a usage error containing %q", err, tc.want)
			}
		})
	}
	if _, _, err := rediqCmd(t, "frobnicate"); err == nil || strings.Contains(err.Error(), "did you mean") {
		t.Fatalf("frobnicate: %v; want no suggestion", err)
	}
}

// --output json is taken by version, task result and bench.
func TestOutputJSONEverywhere(t *testing.T) {
	t.Parallel()
	t.Run("version", func(t *testing.T) {
		t.Parallel()
		out, _, err := rediqCmd(t, "version", "-o", "json")
		var m map[string]string
		if err != nil || json.Unmarshal([]byte(out), &m) != nil || m["version"] == "" || m["go"] == "" {
			t.Fatalf("version -o json: %q, %v; want {\"version\": …}", out, err)
		}
	})
	t.Run("bench", func(t *testing.T) {
		t.Parallel()
		// Parsed, then refused for its --tasks: nothing runs.
		_, _, err := rediqCmd(t, "bench", "--output", "json", "--tasks", "0")
		if !isUsage(err) || !strings.Contains(err.Error(), "--tasks must be positive") {
			t.Fatalf("bench --output json: %v; want --output accepted", err)
		}
		_, _, err = rediqCmd(t, "bench", "-o", "table")
		if !isUsage(err) || !strings.Contains(err.Error(), "JSON only") {
			t.Fatalf("bench -o table: %v; want refused: bench prints JSON only", err)
		}
	})
	t.Run("task result", func(t *testing.T) {
		t.Parallel()
		ns := testredis.Namespace(t)
		app := newApp(t, ns)
		add := rediq.Register(app, "add", func(_ context.Context, a [2]int) (int, error) { return a[0] + a[1], nil },
			rediq.Retention(time.Minute))
		id, err := add.Enqueue(context.Background(), [2]int{1, 2})
		if err != nil {
			t.Fatal(err)
		}
		startWorker(t, app)
		waitState(t, app, id, rediq.StateSucceeded)
		if out := cmdOK(t, ns, "task", "result", string(id), "--output", "json"); out != "3\n" {
			t.Fatalf("task result --output json = %q, want 3", out)
		}
	})
}
