package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
)

// rediq limit show lists the limits a worker declared from code, with the
// tasks holding a slot per key; limit set replaces a task's limit (only
// known from a worker's declaration) and --clear removes it, code's too.
func TestLimitSetShow(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	app := newApp(t, ns)
	release := make(chan struct{})
	send := rediq.Register(app, "email.send", func(ctx context.Context, _ int) (int, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return 0, nil
	}, rediq.RateLimit(10, time.Second), rediq.Concurrency(2))
	rediq.Register(app, "report", func(context.Context, int) (int, error) { return 0, nil })
	startWorker(t, app)
	t.Cleanup(func() { close(release) }) // before the worker stops: cleanups run last first
	show := func() map[string]limitRow {
		t.Helper()
		out := cmdOK(t, ns, "limit", "show", "-o", "json")
		var rows []limitRow
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("limit show -o json: %v\n%s", err, out)
		}
		m := map[string]limitRow{}
		for _, r := range rows {
			m[r.Task] = r
		}
		return m
	}
	// A task running under key acme holds a slot of the code's concurrency.
	if _, err := send.Enqueue(context.Background(), 1, rediq.LimitKey("acme")); err != nil {
		t.Fatal(err)
	}
	testredis.WaitFor(t, waitTimeout, "email.send to run under key acme", func() bool { return show()["email.send"].Running["acme"] == 1 })
	r := show()["email.send"]
	if r.Queue != rediq.DefaultQueue || r.Rate != 10 || r.Per != "1s" || r.Concurrency != 2 || r.Source != "code" {
		t.Fatalf("declared in code: %+v", r)
	}
	if _, ok := show()["report"]; ok {
		t.Fatal("report, without limits in code, is listed")
	}
	out := cmdOK(t, ns, "limit", "show")
	want := [][]string{
		{"TASK", "QUEUE", "RATE", "CONCURRENCY", "SOURCE", "RUNNING"},
		{"email.send", "default", "10/s", "2", "code", "1", "(acme=1)"},
	}
	if rows := fields(out); !equalRows(rows, want) {
		t.Fatalf("limit show:\n%s\nwant rows %q", out, want)
	}

	// report is known only from the worker's declaration: this App set nothing.
	out = cmdOK(t, ns, "limit", "set", "report", "--rate", "100/s", "--concurrency", "20")
	if out != "limit of \"report\" on queue \"default\": 100/s, 20 at once\n" {
		t.Fatalf("limit set printed %q", out)
	}
	if r := show()["report"]; r.Rate != 100 || r.Per != "1s" || r.Concurrency != 20 || r.Source != "set" || len(r.Running) != 0 {
		t.Fatalf("after limit set: %+v", r)
	}
	// The call replaces the whole limit: --rate alone drops the concurrency.
	out = cmdOK(t, ns, "limit", "set", "email.send", "--rate", "5/250ms", "-o", "json")
	var got limitRow
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Rate != 5 || got.Per != "250ms" || got.Concurrency != 0 || got.Source != "set" {
		t.Fatalf("limit set -o json: %v\n%s", err, out)
	}
	if out := cmdOK(t, ns, "limit", "set", "email.send", "--clear"); out != "limit of \"email.send\" on queue \"default\": none\n" {
		t.Fatalf("limit set --clear printed %q", out)
	}
	out = cmdOK(t, ns, "limit", "show")
	want = [][]string{
		{"TASK", "QUEUE", "RATE", "CONCURRENCY", "SOURCE", "RUNNING"},
		{"email.send", "default", "-", "-", "set", "1", "(acme=1)"},
		{"report", "default", "100/s", "20", "set", "0"},
	}
	if rows := fields(out); !equalRows(rows, want) {
		t.Fatalf("limit show after --clear:\n%s\nwant rows %q", out, want)
	}

	_, _, err := rediqCmd(t, append([]string{"limit", "set", "nobody.runs.this", "--concurrency", "1"}, redisArgs(ns)...)...)
	if err == nil || isUsage(err) || !strings.Contains(err.Error(), `"nobody.runs.this"`) || !strings.Contains(err.Error(), "no worker that runs it has started") {
		t.Fatalf("limit set of an unknown task: %v; want a runtime error naming it", err)
	}
}

// An empty namespace has no limits, and says where it looked.
func TestLimitShowNone(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	if out := cmdOK(t, ns, "limit", "show"); !strings.HasPrefix(out, "No limits in namespace \""+ns+"\" on "+testServer()) {
		t.Fatalf("limit show = %q", out)
	}
	if out := cmdOK(t, ns, "limit", "show", "-o", "json"); out != "[]\n" {
		t.Fatalf("limit show -o json = %q", out)
	}
}

// Mistakes on the command line are usage errors (exit 2), bounds the
// library checks too.
func TestLimitUsageErrors(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no limit", []string{"limit", "set", "t"}, "give --rate, --concurrency or both, or --clear"},
		{"no task", []string{"limit", "set", "--rate", "1/s"}, "limit set: missing TASK"},
		{"two tasks", []string{"limit", "set", "a", "b", "--rate", "1/s"}, `unexpected argument "b"`},
		{"clear and rate", []string{"limit", "set", "t", "--clear", "--rate", "1/s"}, "not both"},
		{"concurrency 0", []string{"limit", "set", "t", "--concurrency", "0"}, "--concurrency 0: 1 or more"},
		{"concurrency x", []string{"limit", "set", "t", "--concurrency", "x"}, `invalid argument "x" for "--concurrency"`},
		{"rate without /", []string{"limit", "set", "t", "--rate", "100"}, "want N/DURATION"},
		{"rate not a number", []string{"limit", "set", "t", "--rate", "x/s"}, `"x" is not a whole number`},
		{"rate 0", []string{"limit", "set", "t", "--rate", "0/s"}, `"0" is not a whole number of 1 or more`},
		{"rate negative", []string{"limit", "set", "t", "--rate", "-5/s"}, `"-5" is not a whole number`},
		{"no period", []string{"limit", "set", "t", "--rate", "100/"}, `"" is not a period`},
		{"bad period", []string{"limit", "set", "t", "--rate", "100/day"}, `"day" is not a period`},
		{"period without unit", []string{"limit", "set", "t", "--rate", "100/10"}, `"10" is not a period`},
		{"period 0", []string{"limit", "set", "t", "--rate", "100/0s"}, `"0s" is not a period`},
		{"period under 1ms", []string{"limit", "set", "t", "--rate", "5/100us"}, "period of 1ms or more"},
		{"rate too high", []string{"limit", "set", "t", "--rate", "2000000/s"}, "more than 1,000,000"},
		{"show argument", []string{"limit", "show", "t"}, `limit show: unexpected argument "t"`},
		{"no action", []string{"limit"}, "limit: missing action: one of set, show"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, _, err := rediqCmd(t, append(tc.args, redisArgs(ns)...)...)
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

func TestParseRate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in  string
		n   int
		per time.Duration
	}{
		{"100/s", 100, time.Second},
		{"100/1s", 100, time.Second},
		{"6000/m", 6000, time.Minute},
		{"100/h", 100, time.Hour},
		{"5/250ms", 5, 250 * time.Millisecond},
		{"1/1m30s", 1, 90 * time.Second},
	} {
		n, per, err := parseRate(tc.in)
		if err != nil || n != tc.n || per != tc.per {
			t.Errorf("parseRate(%q) = %d, %s, %v; want %d, %s", tc.in, n, per, err, tc.n, tc.per)
		}
	}
}

// rediq help limit and --help of each action.
func TestLimitHelp(t *testing.T) {
	t.Parallel()
	for args, want := range map[string]string{
		"help limit":        "rediq limit <action>",
		"limit set --help":  "It replaces the whole limit",
		"help limit show":   "rediq limit show [flags]",
		"limit --help":      "set   replace the limit of task TASK",
		"help":              "limit      set or show the rate and concurrency limits of tasks",
		"limit set -h":      "--rate N/DURATION",
		"limit show --help": "--output",
		"help limit set":    "--concurrency int",
	} {
		out, _, err := rediqCmd(t, strings.Fields(args)...)
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("rediq %s: %v\n%s\nwant %q", args, err, out, want)
		}
	}
}
