package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
)

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
