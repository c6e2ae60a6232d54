package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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
