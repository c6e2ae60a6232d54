package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
)

// smallBench is a bench run of a fraction of a second.
var smallBench = []string{"-n", "20", "-c", "2", "-p", "2", "--batch", "5", "--rate", "200", "--duration", "50ms"}

func TestCluster(t *testing.T) {
	t.Parallel()
	addrs := testredis.StartCluster(t)
	url := "redis+cluster://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2]

	ns := testredis.Namespace(t)
	app, err := rediq.New(rediq.Config{RedisURL: url, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	if _, ok := app.Redis().(*redis.ClusterClient); !ok {
		t.Fatalf("%s gave a %T, want a *redis.ClusterClient", url, app.Redis())
	}
	ctx := context.Background()
	// Queues whose keys hash to different nodes.
	ids := map[string][]rediq.TaskID{}
	for _, q := range []string{"a", "b", "c", "d"} {
		task := rediq.Register(app, "t"+q, func(context.Context, int) (int, error) { return 0, nil }, rediq.Queue(q))
		if ids[q], err = task.EnqueueMany(ctx, []int{1, 2}); err != nil {
			t.Fatalf("enqueue to queue %s on the cluster: %v", q, err)
		}
	}
	cluster := []string{"--redis-url", url, "--namespace", ns}

	t.Run("queues", func(t *testing.T) {
		t.Parallel()
		out, _, err := rediqCmd(t, "queues", "--output", "json", "--redis-url", url, "--namespace", ns)
		if err != nil {
			t.Fatal(err)
		}
		var rows []queueRow
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("%v in %s", err, out)
		}
		if len(rows) != 4 {
			t.Fatalf("got %s, want queues a to d", out)
		}
		for _, r := range rows {
			if r.Pending != 2 {
				t.Fatalf("got %s, want 2 pending in each queue", out)
			}
		}
	})
	t.Run("task show", func(t *testing.T) {
		t.Parallel()
		for _, q := range []string{"a", "d"} {
			out, _, err := rediqCmd(t, append([]string{"task", "show", string(ids[q][1]), "-o", "json"}, cluster...)...)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(out), &m); err != nil || m["queue"] != q || m["state"] != "pending" || m["args"] != 2.0 {
				t.Fatalf("task show of %s in queue %s: %s (%v)", ids[q][1], q, out, err)
			}
		}
		_, _, err := rediqCmd(t, append([]string{"task", "show", "nosuchtask"}, cluster...)...)
		if err == nil || isUsage(err) || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("unknown id on the cluster: %v", err)
		}
	})
	t.Run("tasks", func(t *testing.T) {
		t.Parallel()
		out, _, err := rediqCmd(t, append([]string{"tasks", "-q", "c", "-s", "pending"}, cluster...)...)
		if err != nil || !strings.Contains(out, string(ids["c"][0])) || !strings.Contains(out, "showing 1–2 of 2") {
			t.Fatalf("tasks of queue c on the cluster: %q, %v", out, err)
		}
	})
	t.Run("dead requeue", func(t *testing.T) {
		t.Parallel()
		out, _, err := rediqCmd(t, append([]string{"dead", "requeue", "-q", "b"}, cluster...)...)
		if err != nil || out != `requeued 0 dead tasks of queue "b"`+"\n" {
			t.Fatalf("dead requeue on the cluster: %q, %v", out, err)
		}
	})
	t.Run("bench", func(t *testing.T) {
		t.Parallel()
		out, stderr, err := rediqCmd(t, append([]string{"bench", "--redis-url", url}, smallBench...)...)
		if err != nil {
			t.Fatalf("%v; stderr:\n%s", err, stderr)
		}
		var res map[string]any
		if err := json.Unmarshal([]byte(out), &res); err != nil || res["tasks"] != 20.0 {
			t.Fatalf("bench printed %s (%v)", out, err)
		}
	})
}

func TestSentinel(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t)
	sentinel := testredis.StartSentinel(t, "mymaster", strings.TrimPrefix(testredis.URL(), "redis://"))
	ns := testredis.Namespace(t)
	fill(t, ns)
	url := "redis+sentinel://" + sentinel + "?master_name=mymaster"
	out, _, err := rediqCmd(t, "queues", "--redis-url", url, "--namespace", ns)
	if err != nil || !strings.Contains(out, "emails") {
		t.Fatalf("queues through Sentinel: %q, %v; want the emails queue", out, err)
	}

	app := newApp(t, ns)
	task := rediq.Register(app, "sentinel", func(context.Context, string) (int, error) { return 0, nil }, rediq.Queue("s"))
	id, err := task.Enqueue(context.Background(), "hello")
	if err != nil {
		t.Fatal(err)
	}
	out, _, err = rediqCmd(t, "task", "show", string(id), "--redis-url", url, "--namespace", ns)
	if err != nil || !strings.Contains(out, `"hello"`) || !strings.Contains(out, "pending") {
		t.Fatalf("task show through Sentinel: %q, %v", out, err)
	}
	out, _, err = rediqCmd(t, "tasks", "-q", "s", "-s", "pending", "-o", "json", "--redis-url", url, "--namespace", ns)
	if err != nil || !strings.Contains(out, string(id)) {
		t.Fatalf("tasks through Sentinel: %q, %v", out, err)
	}
	if out, _, err = rediqCmd(t, "task", "delete", string(id), "--redis-url", url, "--namespace", ns); err != nil {
		t.Fatalf("task delete through Sentinel: %q, %v", out, err)
	}
}

func TestTLSFlags(t *testing.T) {
	t.Parallel()
	s := testredis.StartTLS(t)
	url := "rediss://" + s.Addr
	ns := testredis.Namespace(t)
	out, _, err := rediqCmd(t, "queues", "--redis-url", url, "--namespace", ns,
		"--tls-ca-file", s.CAFile, "--tls-cert-file", s.CertFile, "--tls-key-file", s.KeyFile)
	if err != nil || !strings.Contains(out, "No queues") {
		t.Fatalf("queues over TLS: %q, %v", out, err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing CA file", []string{"--tls-ca-file", "/nonexistent/ca.pem"}, "queues: TLS CA file: open /nonexistent/ca.pem: no such file"},
		{"certificate without key", []string{"--tls-cert-file", s.CertFile}, "queues: TLS client certificate and key go together"},
		{"key is not PEM", []string{"--tls-cert-file", s.CertFile, "--tls-key-file", s.CAFile}, "queues: TLS client certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := rediqCmd(t, append([]string{"queues", "--redis-url", "rediss://u:hunter2@" + s.Addr}, tc.args...)...)
			if !isUsage(err) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("err = %v; want a usage error saying %q", err, tc.want)
			}
		})
	}
}

func TestBenchFlags(t *testing.T) {
	t.Parallel()
	out, _, err := rediqCmd(t, "bench", "--help")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "--redis-url") || !strings.Contains(out, "--tls-ca-file") || strings.Contains(out, "--redis ") {
		t.Fatalf("bench --help: want --redis-url and the TLS flags, not --redis:\n%s", out)
	}
	_, _, err = rediqCmd(t, "bench", "--redis-url", "redis://u:hunter2@h:port")
	if !isUsage(err) || !strings.Contains(err.Error(), "bench: --redis-url: ") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("bad URL: %v", err)
	}
	// --redis still works, with a notice. (The bench reads INFO memory, which
	// miniredis lacks.)
	testredis.RequireReal(t)
	out, stderr, err := rediqCmd(t, append([]string{"bench", "--redis", testredis.URL()}, smallBench...)...)
	if err != nil {
		t.Fatalf("bench --redis: %v; stderr:\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "--redis has been deprecated, use --redis-url") {
		t.Errorf("no deprecation notice on stderr:\n%s", stderr)
	}
	if !strings.Contains(out, `"tasks":20`) {
		t.Errorf("bench printed %s", out)
	}
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
