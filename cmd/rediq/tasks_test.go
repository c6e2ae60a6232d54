package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// waitTimeout bounds every wait on a worker in these tests.
const waitTimeout = 10 * time.Second

// newApp returns an App on the test Redis and namespace ns, closed when t ends.
func newApp(t *testing.T, ns string) *rediq.App {
	t.Helper()
	app, err := rediq.New(rediq.Config{RedisURL: testredis.URL(), Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() })
	return app
}

// startWorker runs a worker of app on the default queue until stop is called
// or the test ends, and checks that Run returned nil.
func startWorker(t *testing.T, app *rediq.App) (stop func()) {
	t.Helper()
	w, err := worker.New(app, worker.Config{Name: "w-" + t.Name(), Concurrency: 4, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("worker Run: %v", err)
				}
			case <-time.After(waitTimeout):
				t.Errorf("worker did not stop within %s", waitTimeout)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// waitState waits until the task is in state.
func waitState(t *testing.T, app *rediq.App, id rediq.TaskID, state rediq.TaskState) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		r, err := app.GetTask(context.Background(), id)
		if err == nil && r.State == state {
			return
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("it is %s", r.State)
			}
			t.Fatalf("task %s did not become %s within %s: %v", id, state, waitTimeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitCount waits until queue holds n tasks in state.
func waitCount(t *testing.T, app *rediq.App, state rediq.TaskState, n int) {
	t.Helper()
	testredis.WaitFor(t, waitTimeout, fmt.Sprintf("%d %s tasks", n, state), func() bool {
		_, total, err := app.ListTasks(context.Background(), rediq.DefaultQueue, state, rediq.ListOptions{Limit: 1})
		return err == nil && total == n
	})
}

// cmdOK runs a command that must succeed and returns its stdout.
func cmdOK(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, stderr, err := rediqCmd(t, append(args, redisArgs(ns)...)...)
	if err != nil {
		t.Fatalf("rediq %s: %v", strings.Join(args, " "), err)
	}
	if stderr != "" {
		t.Fatalf("rediq %s: stderr %q", strings.Join(args, " "), stderr)
	}
	return out
}

// cmdFails runs a command that must fail with a runtime error (exit 1) of
// one line containing each of want, and print nothing.
func cmdFails(t *testing.T, ns string, want []string, args ...string) string {
	t.Helper()
	out, _, err := rediqCmd(t, append(args, redisArgs(ns)...)...)
	if err == nil {
		t.Fatalf("rediq %s succeeded, printing %q; want an error", strings.Join(args, " "), out)
	}
	if isUsage(err) {
		t.Fatalf("rediq %s: %v is a usage error (exit 2); want exit 1", strings.Join(args, " "), err)
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Fatalf("rediq %s: error %q lacks %q", strings.Join(args, " "), msg, w)
		}
	}
	if strings.Contains(msg, "\n") || strings.Contains(msg, "rediq: ") {
		t.Fatalf("rediq %s: error %q: want one line without the library's \"rediq: \" (main prints one)", strings.Join(args, " "), msg)
	}
	if out != "" {
		t.Fatalf("rediq %s: stdout %q, want empty", strings.Join(args, " "), out)
	}
	return msg
}

// showFields parses the key/value table of "task show".
func showFields(t *testing.T, out string) map[string]string {
	t.Helper()
	f := map[string]string{}
	for line := range strings.Lines(out) {
		k, v, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "  ")
		if !ok || k == "" {
			continue
		}
		f[k] = strings.TrimSpace(v)
	}
	for _, k := range []string{"ID", "Name", "Queue", "State", "Priority", "Args", "Result", "Enqueued", "Due",
		"Started", "Finished", "Expires", "Retried", "Recovered", "Worker", "Retention", "Last error"} {
		if _, ok := f[k]; !ok {
			t.Fatalf("task show lacks %q:\n%s", k, out)
		}
	}
	return f
}

// showJSON runs "task show ID --output json" and decodes it.
func showJSON(t *testing.T, ns string, id rediq.TaskID) map[string]any {
	t.Helper()
	out := cmdOK(t, ns, "task", "show", string(id), "--output", "json")
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	return m
}

var (
	pastTime   = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ \((now|\d+s ago)\)$`)
	futureTime = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ \(in (59m\d+s|1h0m)\)$`)
)

func TestTaskShow(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	app := newApp(t, ns)
	email := rediq.Register(app, "email", func(context.Context, emailArgs) (struct{}, error) { return struct{}{}, nil },
		rediq.Retention(time.Minute))
	before := time.Now().Truncate(time.Millisecond)
	id, err := email.Enqueue(context.Background(), emailArgs{"a@example.com"}, rediq.Delay(time.Hour), rediq.Priority(3),
		rediq.Retries(5)) // a per-call override is recorded with the task; Register's is not
	if err != nil {
		t.Fatal(err)
	}

	t.Run("table", func(t *testing.T) {
		t.Parallel()
		out := cmdOK(t, ns, "task", "show", string(id))
		f := showFields(t, out)
		for k, want := range map[string]string{
			"ID": string(id), "Name": "email", "Queue": "default", "State": "scheduled", "Priority": "3",
			"Args": `{"To":"a@example.com"}`, "Result": "-", "Started": "-", "Finished": "-", "Expires": "-",
			"Retried": "0/5", "Recovered": "0", "Worker": "-", "Retention": "1m0s", "Last error": "-",
		} {
			if f[k] != want {
				t.Errorf("%s = %q, want %q", k, f[k], want)
			}
		}
		if !pastTime.MatchString(f["Enqueued"]) {
			t.Errorf("Enqueued = %q, want local time and age", f["Enqueued"])
		}
		if !futureTime.MatchString(f["Due"]) {
			t.Errorf("Due = %q, want local time and \"in\" about an hour", f["Due"])
		}
		// Aligned: every value starts in the same column.
		col := -1
		for line := range strings.Lines(out) {
			k, _, _ := strings.Cut(line, "  ")
			at := len(k) + len(line[len(k):]) - len(strings.TrimLeft(line[len(k):], " "))
			if col >= 0 && at != col {
				t.Fatalf("values start at different columns:\n%s", out)
			}
			col = at
		}
	})

	t.Run("json", func(t *testing.T) {
		t.Parallel()
		m := showJSON(t, ns, id)
		for k, want := range map[string]any{
			"id": string(id), "name": "email", "queue": "default", "state": "scheduled", "priority": 3.0,
			"retried": 0.0, "max_retries": 5.0, "recovered": 0.0, "retention_ms": 60000.0,
		} {
			if m[k] != want {
				t.Errorf("%s = %v, want %v", k, m[k], want)
			}
		}
		if args, ok := m["args"].(map[string]any); !ok || args["To"] != "a@example.com" || len(args) != 1 {
			t.Errorf("args = %#v, want {\"To\": \"a@example.com\"} as a JSON value", m["args"])
		}
		for _, k := range []string{"result", "started_at", "finished_at", "expires_at", "last_error", "worker", "age"} {
			if v, ok := m[k]; ok {
				t.Errorf("%s = %v, want it left out", k, v)
			}
		}
		enq, err := time.Parse(time.RFC3339, fmt.Sprint(m["enqueued_at"]))
		if err != nil || enq.Before(before) || enq.After(time.Now()) {
			t.Errorf("enqueued_at = %v (%v), want RFC 3339 between %v and now", m["enqueued_at"], err, before)
		}
		due, err := time.Parse(time.RFC3339, fmt.Sprint(m["due_at"]))
		if err != nil || due.Sub(enq) < 59*time.Minute || due.Sub(enq) > 61*time.Minute {
			t.Errorf("due_at = %v (%v), want RFC 3339 an hour after enqueued_at", m["due_at"], err)
		}
	})
}

// An id no queue holds fails every action with exit 1, saying so and naming
// the namespace.
func TestTaskNotFound(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	for _, action := range []string{"show", "result", "cancel", "delete", "requeue"} {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			cmdFails(t, ns, []string{"task " + action + ": ", "nosuchtask", "not found", ns}, "task", action, "nosuchtask")
		})
	}
}

func TestTasksPaging(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	app := newApp(t, ns)
	resize := rediq.Register(app, "resize", func(context.Context, int) (int, error) { return 0, nil })
	ids, err := resize.EnqueueMany(context.Background(), make([]int, 25))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("table", func(t *testing.T) {
		t.Parallel()
		out := cmdOK(t, ns, "tasks", "--queue", "default", "--state", "pending")
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != 1+20+1 {
			t.Fatalf("got %d lines, want a header, 20 tasks (the default --limit) and a footer:\n%s", len(lines), out)
		}
		if got := strings.Fields(lines[0]); !slices.Equal(got, []string{"ID", "NAME", "STATE", "PRIORITY", "RETRIED", "ENQUEUED"}) {
			t.Fatalf("header %q", lines[0])
		}
		for i, l := range lines[1:21] {
			f := strings.Fields(l)
			if len(f) < 6 || f[0] != string(ids[i]) || f[1] != "resize" || f[2] != "pending" || f[3] != "0" || f[4] != "0" {
				t.Fatalf("row %d = %q, want task %s, resize, pending, 0, 0", i, l, ids[i])
			}
			if enq := strings.Join(f[5:], " "); !pastTime.MatchString(enq) {
				t.Fatalf("row %d ENQUEUED = %q, want local time and age", i, enq)
			}
			if got, want := fieldStarts(l)[:6], fieldStarts(lines[0]); !slices.Equal(got, want) {
				t.Fatalf("row %d fields start at %v, header's at %v:\n%s", i, got, want, out)
			}
		}
		if lines[21] != "showing 1–20 of 25" {
			t.Fatalf("footer %q, want \"showing 1–20 of 25\"", lines[21])
		}
		out = cmdOK(t, ns, "tasks", "--queue", "default", "--state", "pending", "--offset", "20", "--limit", "10")
		if lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); len(lines) != 1+5+1 || lines[6] != "showing 21–25 of 25" {
			t.Fatalf("second page:\n%s\nwant 5 tasks and \"showing 21–25 of 25\"", out)
		}
		out = cmdOK(t, ns, "tasks", "--queue", "default", "--state", "pending", "--offset", "30")
		if !strings.Contains(out, "showing none of 25") {
			t.Fatalf("past the end:\n%s", out)
		}
	})

	t.Run("json", func(t *testing.T) {
		t.Parallel()
		var got []rediq.TaskID
		for offset := 0; offset < 25; offset += 10 {
			out := cmdOK(t, ns, "tasks", "-q", "default", "-s", "pending", "--offset", fmt.Sprint(offset), "--limit", "10", "-o", "json")
			var page struct {
				Total int
				Tasks []map[string]any
			}
			if err := json.Unmarshal([]byte(out), &page); err != nil {
				t.Fatalf("%v in %s", err, out)
			}
			if page.Total != 25 {
				t.Fatalf("total = %d, want 25", page.Total)
			}
			for _, task := range page.Tasks {
				if task["state"] != "pending" || task["args"] != 0.0 {
					t.Fatalf("task %v, want pending with args 0", task)
				}
				got = append(got, rediq.TaskID(fmt.Sprint(task["id"])))
			}
		}
		if !slices.Equal(got, ids) {
			t.Fatalf("the pages hold %v, want the tasks in enqueue order %v", got, ids)
		}
	})

	t.Run("empty", func(t *testing.T) {
		t.Parallel()
		out := cmdOK(t, ns, "tasks", "--queue", "default", "--state", "dead")
		if want := `No dead tasks in queue "default" of namespace "` + ns + `" on ` + testServer() + ".\n"; out != want {
			t.Fatalf("got %q, want %q", out, want)
		}
		out = cmdOK(t, ns, "tasks", "--queue", "default", "--state", "dead", "--output", "json")
		var page map[string]any
		if err := json.Unmarshal([]byte(out), &page); err != nil || page["total"] != 0.0 || page["tasks"] == nil {
			t.Fatalf("got %s (%v), want total 0 and an empty array", out, err)
		}
	})
}

func TestTaskCancelPending(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	app := newApp(t, ns)
	kept := rediq.Register(app, "kept", func(context.Context, int) (int, error) { return 0, nil }, rediq.Retention(time.Minute))
	id, err := kept.Enqueue(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if out := cmdOK(t, ns, "task", "cancel", string(id)); out != "cancelled task "+string(id)+"\n" {
		t.Fatalf("cancel printed %q", out)
	}
	m := showJSON(t, ns, id)
	if m["state"] != "cancelled" || m["finished_at"] == nil {
		t.Fatalf("after cancel, show = %v; want cancelled with a finished_at", m)
	}
	f := showFields(t, cmdOK(t, ns, "task", "show", string(id)))
	if f["State"] != "cancelled" || !pastTime.MatchString(f["Finished"]) {
		t.Fatalf("after cancel, show: State %q, Finished %q", f["State"], f["Finished"])
	}
	cmdFails(t, ns, []string{"task cancel: ", string(id), "already finished", "cancelled"}, "task", "cancel", string(id))
	cmdFails(t, ns, []string{"task result: ", string(id), "is cancelled", "no result"}, "task", "result", string(id))
	cmdFails(t, ns, []string{"task requeue: ", string(id), "is cancelled", "only a dead or retry"}, "task", "requeue", string(id))

	// A cancelled task's record can be deleted; then it is gone.
	if out := cmdOK(t, ns, "task", "delete", string(id)); out != "deleted task "+string(id)+"\n" {
		t.Fatalf("delete printed %q", out)
	}
	cmdFails(t, ns, []string{"not found"}, "task", "show", string(id))
}

func TestTaskDelete(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	app := newApp(t, ns)
	resize := rediq.Register(app, "resize", func(context.Context, int) (int, error) { return 0, nil })
	ids, err := resize.EnqueueMany(context.Background(), []int{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if out := cmdOK(t, ns, "task", "delete", string(ids[0])); out != "deleted task "+string(ids[0])+"\n" {
		t.Fatalf("delete printed %q", out)
	}
	cmdFails(t, ns, []string{"not found"}, "task", "show", string(ids[0]))
	cmdFails(t, ns, []string{"not found"}, "task", "delete", string(ids[0]))
	out := cmdOK(t, ns, "tasks", "--queue", "default", "--state", "pending", "-o", "json")
	if !strings.Contains(out, `"total": 1`) || !strings.Contains(out, string(ids[1])) {
		t.Fatalf("after the delete, pending = %s; want only %s", out, ids[1])
	}
}

// A task a worker is running: delete and requeue refuse, cancel asks its
// worker, which cancels the handler.
func TestTaskActive(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	app := newApp(t, ns)
	block := rediq.Register(app, "block", func(ctx context.Context, _ int) (int, error) {
		<-ctx.Done()
		return 0, context.Cause(ctx)
	}, rediq.Retention(time.Minute))
	id, err := block.Enqueue(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	startWorker(t, app)
	waitState(t, app, id, rediq.StateActive)

	f := showFields(t, cmdOK(t, ns, "task", "show", string(id)))
	if f["State"] != "active" || !strings.HasPrefix(f["Worker"], "w-"+t.Name()) {
		t.Errorf("show: State %q, Worker %q; want active on a session of w-%s", f["State"], f["Worker"], t.Name())
	}
	cmdFails(t, ns, []string{"task delete: ", string(id), "is active", "cancel it first"}, "task", "delete", string(id))
	cmdFails(t, ns, []string{"task requeue: ", string(id), "is active"}, "task", "requeue", string(id))
	cmdFails(t, ns, []string{"task result: ", string(id), "is active", "no result yet"}, "task", "result", string(id))

	out := cmdOK(t, ns, "task", "cancel", string(id))
	// The worker may have cancelled the handler before the command looked.
	if out != "cancel requested for task "+string(id)+": the worker running it cancels its handler\n" &&
		out != "cancelled task "+string(id)+"\n" {
		t.Fatalf("cancel printed %q", out)
	}
	waitState(t, app, id, rediq.StateCancelled)
	if m := showJSON(t, ns, id); m["state"] != "cancelled" {
		t.Fatalf("after the handler returned, show = %v; want cancelled", m)
	}
}

// Tasks of a handler that always fails die at once (Retries(0)): they list
// with their error, show it, have no result, and can be requeued one by one
// or all at once.
func TestDeadTasks(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	app := newApp(t, ns)
	doomed := rediq.Register(app, "doomed", func(context.Context, int) (int, error) {
		return 0, errors.New("disk full\nwhile writing /var/tmp/x")
	}, rediq.Retries(0))
	ids, err := doomed.EnqueueMany(context.Background(), []int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	stop := startWorker(t, app)
	waitCount(t, app, rediq.StateDead, 3)
	stop() // so that requeued tasks stay pending

	out := cmdOK(t, ns, "tasks", "--queue", "default", "--state", "dead")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 5 || !slices.Equal(strings.Fields(lines[0]), []string{"ID", "NAME", "STATE", "PRIORITY", "RETRIED", "ENQUEUED", "ERROR"}) {
		t.Fatalf("dead tasks:\n%s\nwant a header with ERROR, 3 tasks and a footer", out)
	}
	for _, l := range lines[1:4] {
		if !strings.Contains(l, " dead ") || !strings.HasSuffix(l, "disk full while writing /var/tmp/x") {
			t.Fatalf("row %q: want state dead and the error on one line", l)
		}
	}
	if lines[4] != "showing 1–3 of 3" {
		t.Fatalf("footer %q", lines[4])
	}

	f := showFields(t, cmdOK(t, ns, "task", "show", string(ids[0])))
	if f["State"] != "dead" || f["Retried"] != "0" || f["Last error"] != "disk full" || !pastTime.MatchString(f["Finished"]) {
		t.Errorf("show of a dead task: %q", f)
	}
	if m := showJSON(t, ns, ids[0]); m["last_error"] != "disk full\nwhile writing /var/tmp/x" || m["state"] != "dead" {
		t.Errorf("show --output json of a dead task: %v", m)
	}
	cmdFails(t, ns, []string{"task result: ", string(ids[0]), "is dead", "no result", "disk full while writing"},
		"task", "result", string(ids[0]))

	if out := cmdOK(t, ns, "task", "requeue", string(ids[0])); out != "requeued task "+string(ids[0])+"\n" {
		t.Fatalf("requeue printed %q", out)
	}
	if m := showJSON(t, ns, ids[0]); m["state"] != "pending" || m["last_error"] != nil {
		t.Fatalf("after requeue, show = %v; want pending without an error", m)
	}
	cmdFails(t, ns, []string{"task requeue: ", string(ids[0]), "is pending"}, "task", "requeue", string(ids[0]))

	if out := cmdOK(t, ns, "dead", "requeue", "--queue", "default"); out != `requeued 2 dead tasks of queue "default"`+"\n" {
		t.Fatalf("dead requeue printed %q", out)
	}
	out = cmdOK(t, ns, "tasks", "--queue", "default", "--state", "pending", "--output", "json")
	var page struct{ Total int }
	if err := json.Unmarshal([]byte(out), &page); err != nil || page.Total != 3 {
		t.Fatalf("after requeueing, pending = %s (%v); want all 3", out, err)
	}
	out = cmdOK(t, ns, "dead", "requeue", "--queue", "default", "-o", "json")
	if !strings.Contains(out, `"requeued": 0`) {
		t.Fatalf("dead requeue of an empty dead set printed %s", out)
	}
}

// sameJSON reports whether a and b hold the same JSON value.
func sameJSON(t *testing.T, a, b string) bool {
	t.Helper()
	return reflect.DeepEqual(decodeJSON(t, a), decodeJSON(t, b))
}

func decodeJSON(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%v in %s", err, s)
	}
	return v
}

type sum struct {
	Sum  int
	Tags []string
	Blob []byte
	ByID map[int]string
}

func TestTaskResult(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	app := newApp(t, ns)
	add := rediq.Register(app, "add", func(_ context.Context, a [2]int) (sum, error) {
		return sum{Sum: a[0] + a[1], Tags: []string{"x", "<y>"}, Blob: []byte("hi"), ByID: map[int]string{7: "seven"}}, nil
	}, rediq.Retention(time.Minute))
	id, err := add.Enqueue(context.Background(), [2]int{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	pending, err := add.Enqueue(context.Background(), [2]int{3, 4}, rediq.Delay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	startWorker(t, app)
	waitState(t, app, id, rediq.StateSucceeded)

	out := cmdOK(t, ns, "task", "result", string(id))
	want := `{"Blob":"aGk=","ByID":{"7":"seven"},"Sum":3,"Tags":["x","<y>"]}`
	if !sameJSON(t, out, want) {
		t.Fatalf("result %s, want %s", out, want)
	}
	if strings.Contains(out, `\u003c`) {
		t.Errorf("result %s: < escaped", out)
	}

	m := showJSON(t, ns, id)
	if !reflect.DeepEqual(m["result"], decodeJSON(t, want)) || m["state"] != "succeeded" || m["started_at"] == nil {
		t.Errorf("show --output json of a succeeded task: %v", m)
	}
	f := showFields(t, cmdOK(t, ns, "task", "show", string(id)))
	if f["Result"] != `{"Blob":"aGk=","ByID":{"7":"seven"},"Sum":3,"Tags":["x","<y>"]}` || f["Args"] != "[1,2]" {
		t.Errorf("show of a succeeded task: Result %q, Args %q", f["Result"], f["Args"])
	}
	cmdFails(t, ns, []string{"task result: ", string(pending), "is scheduled", "no result yet", "rediq.Retention"},
		"task", "result", string(pending))
}

func TestTasksUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad state", []string{"tasks", "--queue", "q", "--state", "deceased"},
			`tasks: --state "deceased": one of scheduled, pending, active, retry, dead, succeeded, cancelled, expired`},
		{"bad queue", []string{"tasks", "--queue", "a:b", "--state", "dead"}, `tasks: --queue: queue name "a:b" contains`},
		{"dead requeue bad queue", []string{"dead", "requeue", "--queue", "a b"}, `dead requeue: --queue: queue name "a b" contains`},
		{"zero limit", []string{"tasks", "-q", "q", "-s", "dead", "--limit", "0"}, "tasks: --limit must be positive"},
		{"negative offset", []string{"tasks", "-q", "q", "-s", "dead", "--offset", "-1"}, "tasks: --offset must not be negative"},
		{"bad output", []string{"tasks", "-q", "q", "-s", "dead", "-o", "yaml"}, `"yaml" is not table or json`},
		{"queues bad output", []string{"queues", "--output", "csv"}, `queues: invalid argument "csv"`},
		{"task without action", []string{"task"}, "task: missing action: one of show, result, cancel, delete, requeue"},
		{"task unknown action", []string{"task", "frob", "x"}, `task: unknown action "frob"`},
		{"task flag first", []string{"task", "--bogus", "show", "id"}, "task: flag --bogus before the action"},
		{"task without id", []string{"task", "show"}, "task show: missing ID"},
		{"task two ids", []string{"task", "delete", "a", "b"}, `task delete: unexpected argument "b"`},
		{"task empty id", []string{"task", "cancel", ""}, "task cancel: empty ID"},
		{"result output", []string{"task", "result", "x", "-o", "yaml"}, `task result: invalid argument "yaml"`},
		{"dead without action", []string{"dead"}, "dead: missing action: requeue"},
		{"dead unknown action", []string{"dead", "list"}, `dead: unknown action "list"`},
		{"dead requeue without queue", []string{"dead", "requeue"}, "dead requeue: --queue is required"},
		{"dead requeue argument", []string{"dead", "requeue", "-q", "x", "y"}, `dead requeue: unexpected argument "y"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, _, err := rediqCmd(t, tc.args...)
			if !isUsage(err) {
				t.Fatalf("err = %v; want a usage error", err)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") {
				t.Fatalf("err = %q; want one line containing %q", msg, tc.want)
			}
			if out != "" {
				t.Fatalf("stdout = %q, want empty", out)
			}
		})
	}
}

func TestTaskHelp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"task --help", []string{"task", "--help"}, []string{"rediq task <action> ID", "show", "result", "cancel", "delete", "requeue"}},
		{"help task", []string{"help", "task"}, []string{"rediq task <action> ID"}},
		{"task show --help", []string{"task", "show", "--help"}, []string{"rediq task show ID", "--output", "--redis-url", "--namespace"}},
		{"tasks --help", []string{"tasks", "-h"}, []string{"rediq tasks [--queue Q] [--state STATE]", "--limit", "--offset", "--output", "dead"}},
		{"dead --help", []string{"help", "dead"}, []string{"rediq dead <action>", "requeue"}},
		{"dead requeue --help", []string{"dead", "requeue", "--help"}, []string{"rediq dead requeue --queue Q", "--queue", "--redis-url"}},
		{"usage", []string{"help"}, []string{"tasks", "task", "dead"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, _, err := rediqCmd(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestMsgpackJSON(t *testing.T) {
	t.Parallel()
	type inner struct{ A int }
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"nil", nil, `null`},
		{"int", -7, `-7`},
		{"string", "<a&b>", `"<a&b>"`},
		{"struct", struct {
			Name string
			In   inner
		}{"x", inner{2}}, `{"In":{"A":2},"Name":"x"}`},
		{"int keys", map[int]string{1: "a", 2: "b"}, `{"1":"a","2":"b"}`},
		{"nested int keys", []any{map[int8]any{1: map[uint]bool{3: true}}}, `[{"1":{"3":true}}]`},
		{"bytes", []byte("hi"), `"aGk="`},
		{"float", 1.5, `1.5`},
		{"NaN", math.NaN(), `"NaN"`},
		{"infinity", []float64{math.Inf(1), math.Inf(-1)}, `["+Inf","-Inf"]`},
		{"float32", float32(0.25), `0.25`},
		{"time", time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), `"2025-03-01T12:00:00Z"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			raw, err := msgpack.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			got, err := msgpackJSON(raw)
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %s, %v; want %s", got, err, tc.want)
			}
		})
	}
	if got, err := msgpackJSON(nil); err != nil || string(got) != "null" {
		t.Errorf("no bytes: %s, %v; want null", got, err)
	}
	if _, err := msgpackJSON([]byte{0xc1}); err == nil {
		t.Errorf("0xc1 (never used in msgpack) decoded")
	}
	if got := jsonValue([]byte{0xc1}); !strings.Contains(string(got), `"msgpack_base64":"wQ=="`) {
		t.Errorf("jsonValue of bad msgpack = %s, want the bytes and the error", got)
	}
}

func TestAge(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.Local)
	for _, tc := range []struct {
		at   time.Time
		want string
	}{
		{now, "now"},
		{now.Add(-500 * time.Millisecond), "now"},
		{now.Add(-3 * time.Second), "3s ago"},
		{now.Add(-(2*time.Minute + 3*time.Second)), "2m3s ago"},
		{now.Add(-(26*time.Hour + 5*time.Minute + 9*time.Second)), "26h5m ago"},
		{now.Add(-(50 * time.Hour)), "2d2h ago"},
		{now.Add(90 * time.Second), "in 1m30s"},
	} {
		if got := relative(tc.at, now); got != tc.want {
			t.Errorf("relative(now%+v) = %q, want %q", tc.at.Sub(now), got, tc.want)
		}
	}
	if got := localTime(time.Time{}, now); got != "-" {
		t.Errorf("localTime(zero) = %q, want -", got)
	}
	if got, want := localTime(now.Add(-time.Minute), now), now.Add(-time.Minute).Format(timeLayout)+" (1m0s ago)"; got != want {
		t.Errorf("localTime = %q, want %q", got, want)
	}
}
