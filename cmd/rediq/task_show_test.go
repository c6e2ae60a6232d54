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
