package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
)

// The frictions a new user met with the CLI (issue 12), each as a test.

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
		{[]string{"queue"}, `unknown command "queue": did you mean "queues"?`},
		{[]string{"verison"}, `did you mean "version"?`},
		{[]string{"bacth", "stat", "1"}, `did you mean "batch"?`},
		{[]string{"help", "queue"}, `did you mean "queues"?`},
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

// rediq tasks lists one state across queues, every state of a queue, or
// everything, one page across all of them; a queue that does not exist is
// an error naming the namespace and server.
func TestTasksAcrossQueuesAndStates(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	fill(t, ns) // default: 3 pending, 1 scheduled, 1 active, 1 dead; emails: 2 pending

	list := func(args ...string) (int, []map[string]any) {
		t.Helper()
		var page struct {
			Total int
			Tasks []map[string]any
		}
		out := cmdOK(t, ns, append(append([]string{"tasks"}, args...), "-o", "json")...)
		if err := json.Unmarshal([]byte(out), &page); err != nil {
			t.Fatalf("%v in %s", err, out)
		}
		return page.Total, page.Tasks
	}
	count := func(tasks []map[string]any, key string) map[string]int {
		m := map[string]int{}
		for _, task := range tasks {
			m[fmt.Sprint(task[key])]++
		}
		return m
	}

	total, tasks := list("--state", "pending")
	if got := count(tasks, "queue"); total != 5 || got["default"] != 3 || got["emails"] != 2 {
		t.Fatalf("--state pending: total %d, by queue %v; want 3 of default and 2 of emails", total, got)
	}
	total, tasks = list("--queue", "default")
	if got := count(tasks, "state"); total != 6 || got["pending"] != 3 || got["scheduled"] != 1 || got["active"] != 1 || got["dead"] != 1 {
		t.Fatalf("--queue default: total %d, by state %v", total, got)
	}
	total, all := list("--limit", "100")
	if total != 8 || len(all) != 8 {
		t.Fatalf("everything: total %d, %d tasks; want 8", total, len(all))
	}
	// Pages of the whole list, across its (queue, state) parts, add up to it.
	var paged []string
	for offset := 0; offset < 8; offset += 3 {
		n, page := list("--limit", "3", "--offset", fmt.Sprint(offset))
		if n != 8 {
			t.Fatalf("offset %d: total %d, want 8", offset, n)
		}
		for _, task := range page {
			paged = append(paged, fmt.Sprint(task["id"]))
		}
	}
	var whole []string
	for _, task := range all {
		whole = append(whole, fmt.Sprint(task["id"]))
	}
	if !slices.Equal(paged, whole) {
		t.Fatalf("pages %v, want the whole list %v", paged, whole)
	}
	// The table says which queue when there are several.
	out := cmdOK(t, ns, "tasks", "--state", "pending")
	if lines := strings.Split(out, "\n"); !slices.Contains(strings.Fields(lines[0]), "QUEUE") || !strings.Contains(out, "showing 1–5 of 5") {
		t.Fatalf("tasks --state pending:\n%s", out)
	}

	cmdFails(t, ns, []string{`tasks: no queue named "nosuch" in namespace "` + ns + `" on ` + testServer()},
		"tasks", "--queue", "nosuch", "--state", "dead")
}

// The CLI names the server and namespace in an empty answer and in errors:
// the machine's default Redis must not pass for an empty namespace.
func TestAnswersNameTheServer(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	where := fmt.Sprintf("namespace %q on %s", ns, testServer())
	if out := cmdOK(t, ns, "queues"); out != "No queues in "+where+".\n" {
		t.Fatalf("queues: %q", out)
	}
	if out := cmdOK(t, ns, "batch", "list"); out != "No batches in "+where+".\n" {
		t.Fatalf("batch list: %q", out)
	}
	cmdFails(t, ns, []string{"task show: task nosuch not found in " + where}, "task", "show", "nosuch")
	cmdFails(t, ns, []string{"batch stat: batch 7 not found in " + where}, "batch", "stat", "7")
	cmdFails(t, ns, []string{"batch stat: no batches in " + where}, "batch", "stat", "--latest")

	fill(t, ns)
	if out := cmdOK(t, ns, "tasks", "--queue", "emails", "--state", "dead"); out != `No dead tasks in queue "emails" of `+where+".\n" {
		t.Fatalf("tasks: %q", out)
	}
	// A password never shows.
	out, _, err := rediqCmd(t, "queues", "--redis-url", "redis://u:hunter2@127.0.0.1:1/0?max_retries=-1&dial_timeout=1s", "--namespace", ns)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("(namespace %q on 127.0.0.1:1)", ns)) || strings.Contains(err.Error(), "hunter2") || out != "" {
		t.Fatalf("unreachable: %q, %v", out, err)
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

// dump --file refuses a file that exists, unless --append or --force.
func TestBatchDumpExistingFile(t *testing.T) {
	t.Parallel()
	e := newBatchEnv(t, 2)
	b := e.batch(rediq.BatchOptions{Detached: true}, jobArgs{N: 1}, jobArgs{N: 2}, jobArgs{N: 3})
	e.wait(b)
	file := filepath.Join(t.TempDir(), "rows.jsonl")
	if err := os.WriteFile(file, []byte("keep me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := e.cmd(t, "batch", "dump", id(b), "-t", "rows", "--file", file, "--pop")
	if err == nil || !strings.Contains(err.Error(), file+" exists: --append") {
		t.Fatalf("dump to an existing file: %v; want refused", err)
	}
	if data, _ := os.ReadFile(file); string(data) != "keep me\n" {
		t.Fatalf("the refused dump changed the file: %q", data)
	}
	if n := len(jsonLines[jobRow](t, e.ok(t, "batch", "dump", id(b), "-t", "rows"))); n != 3 {
		t.Fatalf("the refused --pop took rows: %d left, want 3", n)
	}
	out := e.ok(t, "batch", "dump", id(b), "-t", "rows", "-n", "2", "--file", file, "--append")
	if data, _ := os.ReadFile(file); !strings.HasPrefix(string(data), "keep me\n") || strings.Count(string(data), "\n") != 3 ||
		!strings.HasPrefix(out, "appended 2 rows") {
		t.Fatalf("--append: %q, file %q", out, data)
	}
	e.ok(t, "batch", "dump", id(b), "-t", "rows", "-n", "1", "--file", file, "--force")
	if data, _ := os.ReadFile(file); strings.Contains(string(data), "keep me") || strings.Count(string(data), "\n") != 1 {
		t.Fatalf("--force: file %q; want one row in place of what it held", data)
	}
	if _, err := e.cmd(t, "batch", "dump", id(b), "--append"); !isUsage(err) {
		t.Fatalf("--append without --file: %v; want a usage error", err)
	}
}

// After dump --pop, the ROWS of batch list and the stat count what the
// tables still hold.
func TestBatchRowsAfterPop(t *testing.T) {
	t.Parallel()
	e := newBatchEnv(t, 2)
	args := make([]jobArgs, 5)
	for i := range args {
		args[i] = jobArgs{N: 2*i + 1} // odd: a row each in "rows", none in "extra"
	}
	b := e.batch(rediq.BatchOptions{Detached: true}, args...)
	e.wait(b)
	e.ok(t, "batch", "dump", id(b), "-t", "rows", "-n", "2", "--pop")

	rows := fields(e.ok(t, "batch", "list"))
	col := slices.Index(rows[0], "ROWS")
	if col < 0 || len(rows) != 2 || rows[1][col] != "3" {
		t.Fatalf("batch list after popping 2 of 5 rows: %q; want ROWS 3", rows)
	}
	var j map[string]any
	if err := json.Unmarshal([]byte(e.ok(t, "batch", "stat", id(b), "-o", "json")), &j); err != nil || j["rows_held"] != 3.0 || j["rows"] != 5.0 {
		t.Fatalf("stat json: %v (%v); want rows 5 (collected), rows_held 3", j, err)
	}
	if out := e.ok(t, "batch", "stat", id(b)); !strings.Contains(out, "rows:     3 in the tables, 5 collected, 2 popped") {
		t.Fatalf("stat:\n%s", out)
	}
}

// A bad namespace is called a namespace, not a queue name.
func TestNamespaceValidationSaysNamespace(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"config", "set", "namespace", "bad ns"},
		{"queues", "--namespace", "bad ns"},
	} {
		_, _, err := rediqCmd(t, args...)
		if !isUsage(err) || !strings.Contains(err.Error(), `namespace "bad ns" contains`) || strings.Contains(err.Error(), "queue name") {
			t.Errorf("rediq %s: %v; want a usage error about the namespace", strings.Join(args, " "), err)
		}
	}
}

// config show -o json gives null for a setting that is not set, and says
// where each comes from. Not parallel: it sets the environment.
func TestConfigShowJSONUnset(t *testing.T) {
	noConnectionEnv(t, filepath.Join(t.TempDir(), "config.json"))
	out := mustRun(t, "config", "show", "-o", "json")
	var c struct {
		Settings []map[string]any `json:"settings"`
	}
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	for _, s := range c.Settings {
		v, has := s["value"]
		switch s["key"] {
		case "tls-ca-file", "tls-cert-file", "tls-key-file":
			if !has || v != nil || s["source"] != "default" {
				t.Errorf("%v: want value null and source default", s)
			}
		case "namespace":
			if v != rediq.DefaultNamespace || s["source"] != "default" {
				t.Errorf("%v: want the default namespace, source default", s)
			}
		}
	}
	t.Setenv("REDIQ_NAMESPACE", "envns")
	out = mustRun(t, "config", "show", "-o", "json", "--redis-url", "redis://h:1")
	for _, want := range []string{`"source": "environment"`, `"source": "flag"`} {
		if !strings.Contains(out, want) {
			t.Errorf("config show lacks %s:\n%s", want, out)
		}
	}
}

// task show of an active task says whether its handler runs or it waits in
// its worker's prefetch, on which worker, and the retries allowed.
func TestTaskShowActiveAttempt(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	app := newApp(t, ns)
	block := rediq.Register(app, "block", func(ctx context.Context, _ int) (int, error) {
		<-ctx.Done()
		return 0, context.Cause(ctx)
	})
	id, err := block.Enqueue(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	startWorker(t, app)
	waitState(t, app, id, rediq.StateActive)
	// The fetch marks a task started a moment before its handler runs.
	testredis.WaitFor(t, waitTimeout, "the handler to start", func() bool {
		out := cmdOK(t, ns, "task", "show", string(id))
		return strings.Contains(out, "running now")
	})
	out := cmdOK(t, ns, "task", "show", string(id))
	if !strings.Contains(out, "Max retries") || !strings.Contains(out, "as registered (rediq.Retries; default 3)") ||
		!strings.Contains(out, "Worker") || !strings.Contains(out, "w-"+t.Name()) {
		t.Fatalf("task show of an active task:\n%s", out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(cmdOK(t, ns, "task", "show", string(id), "-o", "json")), &m); err != nil || m["running"] != true {
		t.Fatalf("json: %v (%v); want running true", m, err)
	}
	if err := app.CancelTask(context.Background(), id); err != nil {
		t.Fatal(err)
	}

	// A task leased but not started (fill's active one) waits for a handler.
	other := testredis.Namespace(t)
	fill(t, other)
	var page struct{ Tasks []map[string]any }
	if err := json.Unmarshal([]byte(cmdOK(t, other, "tasks", "-q", "default", "-s", "active", "-o", "json")), &page); err != nil || len(page.Tasks) != 1 {
		t.Fatalf("fill's active task: %v, %v", page, err)
	}
	out = cmdOK(t, other, "task", "show", fmt.Sprint(page.Tasks[0]["id"]))
	if !strings.Contains(out, "not yet: fetched by the worker") {
		t.Fatalf("task show of a prefetched task:\n%s", out)
	}
}
