package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/core"
	"github.com/rediq/rediq/internal/settings"
	"github.com/rediq/rediq/internal/testredis"
)

// envOf is an environment of m's variables only. Without $REDIQ_CONFIG it
// names a settings file that does not exist: the user's must not change what
// the tests see.
func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		if k == settings.EnvPath && !ok {
			return filepath.Join(os.TempDir(), "rediq-worker-test-no-such-config.json"), true
		}
		return v, ok
	}
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	// prog is a program's own configuration, passed to Main.
	prog := Config{Queues: []string{"a", "b"}, Weights: map[string]int{"b": 2}, StrictPriority: true, Name: "prog",
		Concurrency: 50, Prefetch: 7, ShutdownTimeout: 5 * time.Second, MaxRecoveries: 9}
	cases := []struct {
		name string
		base Config
		args []string
		env  map[string]string
		want func(o *options) bool
	}{
		{"defaults", Config{}, nil, nil, func(o *options) bool {
			// Zero fields stay zero: New gives them their defaults.
			return reflect.DeepEqual(o.cfg, Config{}) && o.logLevel == "info" && o.logFormat == "console" &&
				o.namespace == "appns" && len(o.given) == 0 && !o.logGiven()
		}},
		{"flags", Config{}, []string{"--queue", "a", "-q", "b:3", "--skip-default-queue", "--strict", "--name", "w1", "--prefetch", "7",
			"-c", "100", "--executor-pool-size", "4", "--shutdown-timeout", "5s", "--lease-ttl", "3s",
			"--log-level", "debug", "--log-file", "/tmp/x.log", "--log-format", "json", "--redis-url", "redis://h:1/2",
			"--tls-ca-file", "ca.pem", "--tls-cert-file", "c.pem", "--tls-key-file", "k.pem", "--namespace", "other"}, nil,
			func(o *options) bool {
				c := o.cfg
				return slices.Equal(c.Queues, []string{"a", "b"}) && maps.Equal(c.Weights, map[string]int{"b": 3}) &&
					c.SkipDefaultQueue && c.StrictPriority && c.Name == "w1" && c.Prefetch == 7 && c.Concurrency == 100 &&
					c.ExecutorPoolSize == 4 && c.ShutdownTimeout == 5*time.Second && c.LeaseTTL == 3*time.Second &&
					o.logLevel == "debug" && o.logFile == "/tmp/x.log" && o.logFormat == "json" && o.redisURL == "redis://h:1/2" &&
					o.tls == core.TLSFiles{CA: "ca.pem", Cert: "c.pem", Key: "k.pem"} && o.namespace == "other" &&
					o.given["redis-url"] == "--redis-url" && o.given["namespace"] == "--namespace" && o.logGiven()
			}},
		{"environment", Config{}, nil, map[string]string{"REDIQ_QUEUES": "x, y:2", "REDIQ_CONCURRENCY": "42",
			"REDIQ_SKIP_DEFAULT_QUEUE": "true", "REDIQ_REDIS_URL": "redis://env:1", "REDIQ_SHUTDOWN_TIMEOUT": "1m",
			"REDIQ_NAMESPACE": "envns", "REDIQ_TLS_CA_FILE": "ca.pem", "REDIQ_LOG_LEVEL": ""},
			func(o *options) bool {
				return slices.Equal(o.cfg.Queues, []string{"x", "y"}) && o.cfg.Weights["y"] == 2 && o.cfg.Concurrency == 42 &&
					o.cfg.SkipDefaultQueue && o.redisURL == "redis://env:1" && o.cfg.ShutdownTimeout == time.Minute &&
					o.namespace == "envns" && o.tls.CA == "ca.pem" && o.given["redis-url"] == "$REDIQ_REDIS_URL" &&
					o.given["tls-ca-file"] == "$REDIQ_TLS_CA_FILE" && !o.logGiven() // an empty variable is not given
			}},
		{"flags beat environment", Config{}, []string{"--queue", "z", "-c", "5", "--redis-url", "redis://flag:1"},
			map[string]string{"REDIQ_QUEUES": "x,y", "REDIQ_CONCURRENCY": "42", "REDIQ_REDIS_URL": "redis://env:1"},
			func(o *options) bool {
				return slices.Equal(o.cfg.Queues, []string{"z"}) && o.cfg.Concurrency == 5 &&
					o.redisURL == "redis://flag:1" && o.given["redis-url"] == "--redis-url"
			}},
		{"program config kept without flags or environment", prog, nil, nil, func(o *options) bool {
			return reflect.DeepEqual(o.cfg, prog) && len(o.given) == 0
		}},
		{"environment overrides program", prog, nil, map[string]string{"REDIQ_CONCURRENCY": "42", "REDIQ_QUEUES": "x", "REDIQ_STRICT": "false"},
			func(o *options) bool {
				want := prog
				want.Concurrency, want.Queues, want.Weights, want.StrictPriority = 42, []string{"x"}, nil, false
				return reflect.DeepEqual(o.cfg, want)
			}},
		{"flag overrides environment and program", prog, []string{"-c", "5", "-q", "z:4"}, map[string]string{"REDIQ_CONCURRENCY": "42", "REDIQ_QUEUES": "x"},
			func(o *options) bool {
				want := prog
				want.Concurrency, want.Queues, want.Weights = 5, []string{"z"}, map[string]int{"z": 4}
				return reflect.DeepEqual(o.cfg, want)
			}},
		{"one repeated flag replaces the program's queues", prog, []string{"-q", "c", "-q", "d"}, nil,
			func(o *options) bool {
				return slices.Equal(o.cfg.Queues, []string{"c", "d"}) && o.cfg.Weights == nil
			}},
		{"wait for replicas", Config{}, []string{"--wait-replicas", "2"}, map[string]string{"REDIQ_WAIT_REPLICAS_TIMEOUT": "250ms"},
			func(o *options) bool {
				return o.cfg.WaitReplicas == 2 && o.cfg.WaitReplicasTimeout == 250*time.Millisecond &&
					o.given["wait-replicas"] == "--wait-replicas" && o.given["wait-replicas-timeout"] == "$REDIQ_WAIT_REPLICAS_TIMEOUT"
			}},
		{"wait for no replicas overrides the program", Config{WaitReplicas: 1}, nil, map[string]string{"REDIQ_WAIT_REPLICAS": "0"},
			func(o *options) bool { return o.cfg.WaitReplicas == -1 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			o, err := parseFlags("w", c.args, &bytes.Buffer{}, envOf(c.env), c.base, "appns")
			if err != nil {
				t.Fatal(err)
			}
			if !c.want(o) {
				t.Fatalf("parsed %+v", o)
			}
		})
	}
}

func TestParseFlagsErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--queue", "a:0"}, nil, "--queue \"a:0\": weight must be a positive integer"},
		{nil, map[string]string{"REDIQ_QUEUES": "a:x"}, "$REDIQ_QUEUES \"a:x\": weight must be a positive integer"},
		{[]string{"--concurrency", "lots"}, nil, "invalid argument"},
		{[]string{"extra"}, nil, `unexpected argument "extra"`},
		{nil, map[string]string{"REDIQ_CONCURRENCY": "many"}, "$REDIQ_CONCURRENCY"},
		{[]string{"--nope"}, nil, "unknown flag"},
	}
	for _, c := range cases {
		_, err := parseFlags("w", c.args, &bytes.Buffer{}, envOf(c.env), Config{}, "ns")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %v: error %v, want it to mention %q", c.args, c.env, err, c.want)
		}
	}
}

func TestHelpExplainsEveryFlag(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		base Config
		want []string
	}{
		{"library defaults", Config{}, []string{"default 10", "default 30s", "default 15s", `default "info"`, `default "appns"`,
			"default host:pid", "default --concurrency", "default GOMAXPROCS"}},
		{"program's settings", Config{Queues: []string{"emails", "b"}, Weights: map[string]int{"b": 3}, Concurrency: 50, LeaseTTL: time.Minute,
			Name: "mailer", Prefetch: 9, Logger: zap.NewNop()},
			[]string{"default 50", "default 1m0s", "default [emails,b:3]", `default "mailer"`, "default 9", "replaces the program's logger"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			_, err := parseFlags("myworker", []string{"--help"}, &out, envOf(nil), c.base, "appns")
			if !errors.Is(err, pflag.ErrHelp) {
				t.Fatalf("err = %v, want ErrHelp", err)
			}
			for _, s := range flagSettings {
				if !strings.Contains(out.String(), "--"+s.Key) || !strings.Contains(out.String(), "$"+s.Env) {
					t.Errorf("help lacks --%s or $%s:\n%s", s.Key, s.Env, out.String())
				}
			}
			for _, def := range c.want {
				if !strings.Contains(out.String(), def) {
					t.Errorf("help does not show %q:\n%s", def, out.String())
				}
			}
		})
	}
}

func TestNewLogger(t *testing.T) {
	t.Parallel()
	for _, f := range []string{"json", "console"} {
		if _, err := newLogger("warn", "", f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := newLogger("loud", "", "json"); err == nil {
		t.Error("bad level accepted")
	}
	if _, err := newLogger("info", "", "xml"); err == nil {
		t.Error("bad format accepted")
	}
}

// given returns the options parseFlags makes of args and env, for an App in
// namespace ns.
func given(t *testing.T, args []string, env map[string]string, ns string) *options {
	t.Helper()
	o, err := parseFlags("w", args, &bytes.Buffer{}, envOf(env), Config{}, ns)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// A client the program passed in Config.Redis is never replaced.
func TestConfigureAppKeepsTheProgramsClient(t *testing.T) {
	t.Parallel()
	rdb := testredis.Client(t)
	ns := testredis.Namespace(t)
	app, err := rediq.New(rediq.Config{Redis: rdb, Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	c := core.Unwrap(app)

	for _, args := range [][]string{{"--redis-url", "redis://elsewhere:1"}, {"--tls-ca-file", "ca.pem"}} {
		err := configureApp(c, given(t, args, nil, ns), zap.NewNop())
		if err == nil || !strings.Contains(err.Error(), args[0]+": this program passes its own Redis client") {
			t.Errorf("%v: err = %v, want one saying the program passes its own client", args, err)
		}
	}

	obs, logs := observer.New(zap.InfoLevel)
	env := map[string]string{"REDIQ_REDIS_URL": "redis://elsewhere:1", "REDIQ_TLS_CERT_FILE": "c.pem"}
	if err := configureApp(c, given(t, nil, env, ns), zap.New(obs)); err != nil {
		t.Fatal(err)
	}
	var ignored []string
	for _, e := range logs.AllUntimed() {
		if e.Level == zap.InfoLevel && strings.Contains(e.Message, "the program passes its own Redis client") {
			ignored = append(ignored, e.ContextMap()["variable"].(string))
		}
	}
	slices.Sort(ignored)
	if !slices.Equal(ignored, []string{"REDIQ_REDIS_URL", "REDIQ_TLS_CERT_FILE"}) {
		t.Errorf("logged %v ignored, want both variables", ignored)
	}
	if app.Redis() != rdb {
		t.Fatal("the program's client was replaced")
	}
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("the program's client: %v", err)
	}
}

// The exit status and message of Main when the command line would replace the
// program's client.
func TestMainRefusesToReplaceTheProgramsClient(t *testing.T) {
	t.Parallel()
	rdb := testredis.Client(t)
	app, err := rediq.New(rediq.Config{Redis: rdb, Namespace: testredis.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	code := main(app, Config{}, "w", []string{"--redis-url", "redis://u:hunter2@elsewhere:1", "--log-level", "error"}, &stderr, envOf(nil))
	if msg := stderr.String(); code != 2 || !strings.Contains(msg, "w: --redis-url: this program passes its own Redis client") ||
		strings.Contains(msg, "hunter2") {
		t.Fatalf("exit %d, stderr %q; want 2 and a message that the program passes its own client", code, msg)
	}
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("the program's client was closed: %v", err)
	}
}

func TestConfigureAppReplacesItsOwnClient(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	newApp := func(cfg rediq.Config) *core.App {
		cfg.Namespace = ns
		app, err := rediq.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { app.Close() })
		return core.Unwrap(app)
	}

	t.Run("same endpoint: no new client", func(t *testing.T) {
		t.Parallel()
		c := newApp(rediq.Config{RedisURL: testredis.URL()})
		before := c.Redis()
		if err := configureApp(c, given(t, nil, map[string]string{"REDIQ_REDIS_URL": testredis.URL()}, ns), zap.NewNop()); err != nil {
			t.Fatal(err)
		}
		if c.Redis() != before {
			t.Fatal("the App redialed the URL it had")
		}
	})
	t.Run("flag beats environment beats program", func(t *testing.T) {
		t.Parallel()
		c := newApp(rediq.Config{RedisURL: "redis://127.0.0.1:1"})
		o := given(t, []string{"--redis-url", testredis.URL()}, map[string]string{"REDIQ_REDIS_URL": "redis://127.0.0.1:2"}, ns)
		if err := configureApp(c, o, zap.NewNop()); err != nil {
			t.Fatal(err)
		}
		if ep, _ := c.Endpoint(); ep.URL != testredis.URL() {
			t.Fatalf("endpoint %+v, want the flag's URL", ep)
		}
		if err := c.Redis().Ping(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("the environment's TLS file with the program's URL", func(t *testing.T) {
		t.Parallel()
		c := newApp(rediq.Config{RedisURL: "redis://127.0.0.1:1"})
		err := configureApp(c, given(t, nil, map[string]string{"REDIQ_TLS_CA_FILE": "ca.pem"}, ns), zap.NewNop())
		if err == nil || !strings.Contains(err.Error(), "TLS files given for a URL without TLS") {
			t.Fatalf("err = %v; want the program's redis:// URL refused with the environment's TLS file", err)
		}
	})
	t.Run("the program's TLS files with the environment's URL", func(t *testing.T) {
		t.Parallel()
		s := testredis.StartTLS(t)
		c := newApp(rediq.Config{RedisURL: "rediss://127.0.0.1:1", TLSCAFile: s.CAFile, TLSCertFile: s.CertFile, TLSKeyFile: s.KeyFile})
		if err := configureApp(c, given(t, nil, map[string]string{"REDIQ_REDIS_URL": "rediss://" + s.Addr}, ns), zap.NewNop()); err != nil {
			t.Fatal(err)
		}
		if err := c.Redis().Ping(context.Background()).Err(); err != nil {
			t.Fatalf("ping over TLS: %v", err)
		}
	})
	t.Run("bad URL", func(t *testing.T) {
		t.Parallel()
		c := newApp(rediq.Config{RedisURL: testredis.URL()})
		err := configureApp(c, given(t, nil, map[string]string{"REDIQ_REDIS_URL": "redis://u:hunter2@h:port"}, ns), zap.NewNop())
		if err == nil || !strings.HasPrefix(err.Error(), "$REDIQ_REDIS_URL: ") || strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestConfigureAppNamespace(t *testing.T) {
	t.Parallel()
	app, err := rediq.New(rediq.Config{RedisURL: testredis.URL(), Namespace: "prog"})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	c := core.Unwrap(app)
	if err := configureApp(c, given(t, nil, nil, "prog"), zap.NewNop()); err != nil || app.Namespace() != "prog" {
		t.Fatalf("no flag: %v, namespace %q; want prog kept", err, app.Namespace())
	}
	if err := configureApp(c, given(t, nil, map[string]string{"REDIQ_NAMESPACE": "env"}, "prog"), zap.NewNop()); err != nil || app.Namespace() != "env" {
		t.Fatalf("$REDIQ_NAMESPACE: %v, namespace %q; want env", err, app.Namespace())
	}
	o := given(t, []string{"--namespace", "flag"}, map[string]string{"REDIQ_NAMESPACE": "env"}, "env")
	if err := configureApp(c, o, zap.NewNop()); err != nil || app.Namespace() != "flag" {
		t.Fatalf("--namespace: %v, namespace %q; want flag", err, app.Namespace())
	}
	err = configureApp(c, given(t, []string{"--namespace", "a:b"}, nil, "flag"), zap.NewNop())
	if err == nil || !strings.HasPrefix(err.Error(), "--namespace: ") || app.Namespace() != "flag" {
		t.Fatalf("--namespace a:b: %v, namespace %q; want an error and no change", err, app.Namespace())
	}
}

func TestMainTakesOneConfig(t *testing.T) {
	t.Parallel()
	defer func() {
		if r := recover(); r == nil || !strings.HasPrefix(fmt.Sprint(r), "worker: ") {
			t.Fatalf("recovered %v, want a worker: panic", r)
		}
	}()
	Main(nil, Config{}, Config{})
}

// configFile writes a settings file of f and returns the environment that
// points at it, with env's variables.
func configFile(t *testing.T, f settings.File, env map[string]string) (path string, getenv func(string) (string, bool)) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "config.json")
	if err := settings.Save(path, f); err != nil {
		t.Fatal(err)
	}
	m := map[string]string{settings.EnvPath: path}
	maps.Copy(m, env)
	return path, envOf(m)
}

// The settings file ranks below the environment and above the program:
// flag > environment > file > program.
func TestParseFlagsConfigFile(t *testing.T) {
	t.Parallel()
	file := settings.File{"redis-url": "redis://file:1", "namespace": "filens", "tls-ca-file": "/file/ca.pem"}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want func(o *options, path string) bool
	}{
		{"file over the program", nil, nil, func(o *options, path string) bool {
			return o.redisURL == "redis://file:1" && o.namespace == "filens" && o.tls.CA == "/file/ca.pem" &&
				o.given["redis-url"] == "redis-url in "+path && o.given["namespace"] == "namespace in "+path &&
				o.given["tls-ca-file"] == "tls-ca-file in "+path && o.given["tls-cert-file"] == ""
		}},
		{"environment over the file", nil, map[string]string{"REDIQ_REDIS_URL": "redis://env:1", "REDIQ_NAMESPACE": ""},
			func(o *options, path string) bool {
				return o.redisURL == "redis://env:1" && o.given["redis-url"] == "$REDIQ_REDIS_URL" &&
					o.namespace == "filens" && o.given["namespace"] == "namespace in "+path // an empty variable is not given
			}},
		{"flag over the environment", []string{"--redis-url", "redis://flag:1", "--namespace", "flagns"},
			map[string]string{"REDIQ_REDIS_URL": "redis://env:1", "REDIQ_NAMESPACE": "envns"},
			func(o *options, path string) bool {
				return o.redisURL == "redis://flag:1" && o.given["redis-url"] == "--redis-url" &&
					o.namespace == "flagns" && o.given["namespace"] == "--namespace" && o.tls.CA == "/file/ca.pem"
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path, getenv := configFile(t, file, c.env)
			o, err := parseFlags("w", c.args, &bytes.Buffer{}, getenv, Config{}, "appns")
			if err != nil {
				t.Fatal(err)
			}
			if !c.want(o, path) {
				t.Fatalf("parsed %+v", o)
			}
		})
	}
	t.Run("no file: the program's", func(t *testing.T) {
		t.Parallel()
		o, err := parseFlags("w", nil, &bytes.Buffer{}, envOf(nil), Config{}, "appns")
		if err != nil || o.namespace != "appns" || len(o.given) != 0 {
			t.Fatalf("%+v, %v", o, err)
		}
	})
	t.Run("broken file", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "config.json")
		if err := os.WriteFile(path, []byte(`{"redis-url": "redis://u:hunter2@h`), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := parseFlags("w", nil, &bytes.Buffer{}, envOf(map[string]string{settings.EnvPath: path}), Config{}, "appns")
		if err == nil || !strings.Contains(err.Error(), path) || strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("err = %v; want one naming the file and not its contents", err)
		}
	})
}

// The App follows the file's URL and namespace over the program's, and a
// client the program passed in is kept whatever the file says.
func TestConfigureAppFromConfigFile(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	_, getenv := configFile(t, settings.File{"redis-url": testredis.URL(), "namespace": ns}, nil)
	o, err := parseFlags("w", nil, &bytes.Buffer{}, getenv, Config{}, "prog")
	if err != nil {
		t.Fatal(err)
	}

	app, err := rediq.New(rediq.Config{RedisURL: "redis://127.0.0.1:1", Namespace: "prog"})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	c := core.Unwrap(app)
	if err := configureApp(c, o, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if ep, _ := c.Endpoint(); ep.URL != testredis.URL() || app.Namespace() != ns {
		t.Fatalf("endpoint %+v, namespace %q; want the file's", ep, app.Namespace())
	}
	if err := c.Redis().Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}

	rdb := testredis.Client(t)
	own, err := rediq.New(rediq.Config{Redis: rdb, Namespace: "prog"})
	if err != nil {
		t.Fatal(err)
	}
	obs, logs := observer.New(zap.InfoLevel)
	if err := configureApp(core.Unwrap(own), o, zap.New(obs)); err != nil {
		t.Fatalf("a file's URL with the program's client: %v, want it ignored", err)
	}
	if own.Redis() != rdb {
		t.Fatal("the program's client was replaced")
	}
	if got := logs.FilterMessageSnippet("ignoring the settings file's Redis setting").Len(); got != 1 {
		t.Fatalf("logged %d notices of the ignored file setting, want 1: %+v", got, logs.AllUntimed())
	}
}

// Main's exit status and message for a bad URL in the settings file.
func TestMainConfigFileBadURL(t *testing.T) {
	t.Parallel()
	app, err := rediq.New(rediq.Config{RedisURL: testredis.URL(), Namespace: testredis.Namespace(t)})
	if err != nil {
		t.Fatal(err)
	}
	path, getenv := configFile(t, settings.File{"redis-url": "redis://u:hunter2@h:port"}, nil)
	var stderr bytes.Buffer
	code := main(app, Config{}, "w", []string{"--log-level", "error"}, &stderr, getenv)
	if msg := stderr.String(); code != 2 || !strings.Contains(msg, "w: redis-url in "+path+": ") || strings.Contains(msg, "hunter2") {
		t.Fatalf("exit %d, stderr %q; want 2 and a message naming the file's setting", code, msg)
	}
}

// An App's connection is fixed by its first use: Main's flags cannot change
// it afterwards, and say why; without such flags, Main runs on it.
func TestMainAfterTheAppWasUsed(t *testing.T) {
	t.Parallel()
	ns := testredis.Namespace(t)
	app, err := rediq.New(rediq.Config{RedisURL: testredis.URL(), Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	rdb := app.Redis() // the first use
	var stderr bytes.Buffer
	code := main(app, Config{}, "w", []string{"--namespace", "other", "--log-level", "error"}, &stderr, envOf(nil))
	if msg := stderr.String(); code != 2 || !strings.Contains(msg, "w: the App was used before worker.Main") {
		t.Fatalf("exit %d, stderr %q; want 2 and a message that the App was used before worker.Main", code, msg)
	}
	if app.Namespace() != ns || app.Redis() != rdb {
		t.Fatal("the used App's connection changed")
	}

	c := core.Unwrap(app)
	if err := configureApp(c, given(t, nil, map[string]string{"REDIQ_NAMESPACE": ns}, ns), zap.NewNop()); err != nil {
		t.Fatalf("settings that change nothing: %v", err)
	}
}
