package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/core"
	"github.com/rediq/rediq/internal/settings"
	"github.com/rediq/rediq/internal/testredis"
)

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{}) // as main does
	// No settings file unless a test writes one: the user's must not change
	// what the tests connect to.
	os.Setenv(settings.EnvPath, filepath.Join(os.TempDir(), fmt.Sprintf("rediq-cli-test-%d-none.json", os.Getpid())))
	testredis.Main(m)
}

// rediqCmd runs the command line args and returns its stdout, stderr and error.
func rediqCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), args, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// redisArgs points a command at the test Redis and a namespace of its own.
func redisArgs(ns string) []string {
	return []string{"--redis-url", testredis.URL(), "--namespace", ns}
}

func isUsage(err error) bool {
	var u *usageError
	return errors.As(err, &u)
}

type emailArgs struct{ To string }

// fill gives namespace ns two queues:
//
//	default: 3 pending, 1 scheduled, 1 active, 1 dead, 1 worker
//	emails:  2 pending
func fill(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	app, err := rediq.New(rediq.Config{RedisURL: testredis.URL(), Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	noop := func(context.Context, int) (int, error) { return 0, nil }
	resize := rediq.Register(app, "resize", noop)
	email := rediq.Register(app, "email", func(context.Context, emailArgs) (struct{}, error) { return struct{}{}, nil },
		rediq.Queue("emails"))

	if _, err := resize.EnqueueMany(ctx, []int{1, 2, 3, 4, 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := resize.Enqueue(ctx, 6, rediq.Delay(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := email.EnqueueMany(ctx, []emailArgs{{"a@example.com"}, {"b@example.com"}}); err != nil {
		t.Fatal(err)
	}

	// A worker session leases two of the five: one stays active, one is killed.
	b := core.Unwrap(app).Broker()
	q := b.Queue(rediq.DefaultQueue)
	if _, err := b.Heartbeat(ctx, "w1", time.Hour, true, []*broker.Queue{q}); err != nil {
		t.Fatal(err)
	}
	got, err := b.Fetch(ctx, "w1", time.Hour, []broker.FetchRequest{{Queue: q, N: 2}})
	if err != nil || len(got[0].Tasks) != 2 {
		t.Fatalf("fetch = %+v, %v; want 2 messages", got, err)
	}
	k := got[0].Tasks[1]
	kill := broker.Settlement{Queue: q, Session: "w1", Token: k.Token, ID: k.ID, Outcome: broker.Kill, Body: k.Body}
	if _, err := b.Settle(ctx, broker.DeadRetention{MaxAge: time.Hour, MaxLen: 100}, []broker.Settlement{kill}); err != nil {
		t.Fatal(err)
	}
}

func TestQueues(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	fill(t, ns)

	t.Run("table", func(t *testing.T) {
		t.Parallel()
		out, _, err := rediqCmd(t, append([]string{"queues"}, redisArgs(ns)...)...)
		if err != nil {
			t.Fatal(err)
		}
		var rows [][]string
		for line := range strings.Lines(out) {
			rows = append(rows, strings.Fields(line))
		}
		want := [][]string{
			{"QUEUE", "PENDING", "SCHEDULED", "ACTIVE", "DEAD", "WORKERS", "CANCELLED", "EXPIRED", "PAUSED"},
			{"default", "3", "1", "1", "1", "1", "0", "0", "no"},
			{"emails", "2", "0", "0", "0", "0", "0", "0", "no"},
		}
		if !equalRows(rows, want) {
			t.Fatalf("got\n%s\nwant rows %q", out, want)
		}
		// Aligned: every line's fields start where the header's do.
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		for _, l := range lines[1:] {
			if got, want := fieldStarts(l), fieldStarts(lines[0]); !slices.Equal(got, want) {
				t.Fatalf("fields start at %v, header's at %v:\n%s", got, want, out)
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		t.Parallel()
		out, _, err := rediqCmd(t, append([]string{"queues", "--output", "json"}, redisArgs(ns)...)...)
		if err != nil {
			t.Fatal(err)
		}
		var got []map[string]any
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("%v in %s", err, out)
		}
		want := []map[string]any{
			{"queue": "default", "pending": 3.0, "scheduled": 1.0, "active": 1.0, "dead": 1.0, "workers": 1.0, "cancelled": 0.0, "expired": 0.0, "paused": false},
			{"queue": "emails", "pending": 2.0, "scheduled": 0.0, "active": 0.0, "dead": 0.0, "workers": 0.0, "cancelled": 0.0, "expired": 0.0, "paused": false},
		}
		if len(got) != len(want) {
			t.Fatalf("got %d queues, want %d: %s", len(got), len(want), out)
		}
		for i := range want {
			if len(got[i]) != len(want[i]) {
				t.Fatalf("queue %d = %v, want %v", i, got[i], want[i])
			}
			for k, v := range want[i] {
				if got[i][k] != v {
					t.Fatalf("queue %d = %v, want %v", i, got[i], want[i])
				}
			}
		}
	})
}

// --json, which came before --output, still works, with a notice.
func TestQueuesJSONAlias(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	fill(t, ns)
	out, stderr, err := rediqCmd(t, append([]string{"queues", "--json"}, redisArgs(ns)...)...)
	if err != nil {
		t.Fatal(err)
	}
	var rows []queueRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 2 {
		t.Fatalf("queues --json printed %s (%v); want 2 queues", out, err)
	}
	if !strings.Contains(stderr, "--json has been deprecated, use --output json") {
		t.Errorf("no deprecation notice on stderr: %q", stderr)
	}
}

// fieldStarts returns the offsets where the fields of line begin.
func fieldStarts(line string) []int {
	var starts []int
	for i := range len(line) {
		if line[i] != ' ' && (i == 0 || line[i-1] == ' ') {
			starts = append(starts, i)
		}
	}
	return starts
}

func equalRows(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if strings.Join(a[i], " ") != strings.Join(b[i], " ") {
			return false
		}
	}
	return true
}

func TestQueuesEmptyNamespace(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"text", nil, `No queues in namespace "` + ns + `" on ` + testServer() + ".\n"},
		{"json", []string{"-o", "json"}, "[]\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append(append([]string{"queues"}, redisArgs(ns)...), tc.args...)
			out, _, err := rediqCmd(t, args...)
			if err != nil || out != tc.want {
				t.Fatalf("got %q, %v; want %q", out, err, tc.want)
			}
		})
	}
}

func TestQueuesUnreachableRedis(t *testing.T) {
	t.Parallel()
	out, stderr, err := rediqCmd(t, "queues", "--redis-url", "redis://127.0.0.1:1", "--namespace", testredis.Namespace(t))
	if err == nil {
		t.Fatalf("no error; stdout %q", out)
	}
	if isUsage(err) {
		t.Fatalf("%v is a usage error; want a runtime error", err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "queues: ") || !strings.Contains(msg, "127.0.0.1:1") || strings.Contains(msg, "\n") {
		t.Fatalf("error %q: want one line starting with \"queues: \" naming the address", msg)
	}
	if out != "" || stderr != "" {
		t.Fatalf("stdout %q, stderr %q; want both empty", out, stderr)
	}
}

func TestRedisTimeoutIsExplained(t *testing.T) {
	t.Parallel()
	cause := errors.New("no answer from Redis within 10s")
	ctx, cancel := context.WithTimeoutCause(context.Background(), time.Nanosecond, cause)
	defer cancel()
	<-ctx.Done()
	if got := redisError(ctx, ctx.Err()); got != cause {
		t.Fatalf("redisError = %v, want %v", got, cause)
	}
	other := errors.New("connection refused")
	if got := redisError(ctx, other); got != other {
		t.Fatalf("redisError = %v, want %v unchanged", got, other)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"help for unknown command", []string{"help", "frobnicate"}, `unknown command "frobnicate"`},
		{"unknown flag before command", []string{"--bogus", "queues"}, "unknown flag --bogus before the command"},
		{"unknown flag", []string{"queues", "--bogus"}, "queues: unknown flag: --bogus"},
		{"argument", []string{"queues", "extra"}, `queues: unexpected argument "extra"`},
		{"bad url", []string{"queues", "--redis-url", "http://x"}, "queues: --redis-url: "},
		{"url password not echoed", []string{"queues", "--redis-url", "redis://u:hunter2@h:port"}, "queues: --redis-url: "},
		{"bad namespace", []string{"queues", "--namespace", "a:b"}, "queues: --namespace: "},
		{"version argument", []string{"version", "now"}, `version: unexpected argument "now"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, _, err := rediqCmd(t, tc.args...)
			if !isUsage(err) {
				t.Fatalf("err = %v; want a usage error", err)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || strings.Contains(msg, "\n") || strings.Contains(msg, "hunter2") {
				t.Fatalf("err = %q; want one line containing %q", msg, tc.want)
			}
			if out != "" {
				t.Fatalf("stdout = %q, want empty", out)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	out, _, err := rediqCmd(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out)
	if len(f) != 4 || f[0] != "rediq" || f[1] == "" || f[2] != runtime.Version() || !strings.HasSuffix(out, "\n") {
		t.Fatalf("version printed %q; want \"rediq <version> %s <os>/<arch>\"", out, runtime.Version())
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"help", []string{"help"}, []string{"Usage:", "queues", "version", "help"}},
		{"--help", []string{"--help"}, []string{"Usage:", "queues", "version", "help"}},
		{"-h", []string{"-h"}, []string{"Usage:", "queues", "version", "help"}},
		{"queues --help", []string{"queues", "--help"}, []string{"rediq queues", "--redis-url", "REDIQ_REDIS_URL", "--namespace", "REDIQ_NAMESPACE", "--output"}},
		{"help queues", []string{"help", "queues"}, []string{"rediq queues", "--redis-url", "--output"}},
		{"version -h", []string{"version", "-h"}, []string{"rediq version"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out, stderr, err := rediqCmd(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if stderr != "" {
				t.Errorf("stderr = %q, want empty", stderr)
			}
		})
	}
}

// The environment supplies the URL and namespace when the flags do not, and a
// flag wins over it. Not parallel: it sets the environment.
func TestRedisFlagsFromEnvironment(t *testing.T) {
	ns := testredis.Namespace(t)
	fill(t, ns)
	t.Setenv("REDIQ_REDIS_URL", testredis.URL())
	t.Setenv("REDIQ_NAMESPACE", ns)
	out, _, err := rediqCmd(t, "queues")
	if err != nil || !strings.Contains(out, "emails") {
		t.Fatalf("from the environment: %q, %v; want the emails queue", out, err)
	}
	other := testredis.Namespace(t)
	out, _, err = rediqCmd(t, "queues", "--namespace", other)
	if err != nil || !strings.Contains(out, other) {
		t.Fatalf("--namespace over the environment: %q, %v; want namespace %s", out, err, other)
	}
	t.Setenv("REDIQ_REDIS_URL", "redis://127.0.0.1:1")
	if out, _, err = rediqCmd(t, "queues", "--redis-url", testredis.URL()); err != nil || !strings.Contains(out, "emails") {
		t.Fatalf("--redis-url over the environment: %q, %v", out, err)
	}
}
