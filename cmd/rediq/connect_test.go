package main

import (
	"context"
	"encoding/json"
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
	for _, q := range []string{"a", "b", "c", "d"} {
		task := rediq.Register(app, "t"+q, func(context.Context, int) (int, error) { return 0, nil }, rediq.Queue(q))
		if _, err := task.EnqueueMany(ctx, []int{1, 2}); err != nil {
			t.Fatalf("enqueue to queue %s on the cluster: %v", q, err)
		}
	}

	t.Run("queues", func(t *testing.T) {
		t.Parallel()
		out, _, err := rediqCmd(t, "queues", "--json", "--redis-url", url, "--namespace", ns)
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
	out, _, err := rediqCmd(t, "queues", "--redis-url", "redis+sentinel://"+sentinel+"?master_name=mymaster", "--namespace", ns)
	if err != nil || !strings.Contains(out, "emails") {
		t.Fatalf("queues through Sentinel: %q, %v; want the emails queue", out, err)
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
