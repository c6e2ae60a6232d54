package worker

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestParseFlags(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want func(o *options) bool
	}{
		{"defaults", nil, nil, func(o *options) bool {
			return o.cfg.Concurrency == DefaultConcurrency && o.cfg.ShutdownTimeout == DefaultShutdownTimeout &&
				o.cfg.LeaseTTL == DefaultLeaseTTL && o.logLevel == "info" && o.logFormat == "console" && len(o.cfg.Queues) == 0
		}},
		{"flags", []string{"--queue", "a", "-q", "b:3", "--skip-default-queue", "--strict", "--name", "w1", "--prefetch", "7",
			"-c", "100", "--executor-pool-size", "4", "--shutdown-timeout", "5s", "--lease-ttl", "3s",
			"--log-level", "debug", "--log-file", "/tmp/x.log", "--log-format", "json", "--redis-url", "redis://h:1/2"}, nil,
			func(o *options) bool {
				c := o.cfg
				return slices.Equal(c.Queues, []string{"a", "b"}) && maps.Equal(c.Weights, map[string]int{"b": 3}) &&
					c.SkipDefaultQueue && c.StrictPriority && c.Name == "w1" && c.Prefetch == 7 && c.Concurrency == 100 &&
					c.ExecutorPoolSize == 4 && c.ShutdownTimeout == 5*time.Second && c.LeaseTTL == 3*time.Second &&
					o.logLevel == "debug" && o.logFile == "/tmp/x.log" && o.logFormat == "json" && o.redisURL == "redis://h:1/2"
			}},
		{"environment", nil, map[string]string{"REDIQ_QUEUES": "x, y:2", "REDIQ_CONCURRENCY": "42",
			"REDIQ_SKIP_DEFAULT_QUEUE": "true", "REDIQ_REDIS_URL": "redis://env:1", "REDIQ_SHUTDOWN_TIMEOUT": "1m"},
			func(o *options) bool {
				return slices.Equal(o.cfg.Queues, []string{"x", "y"}) && o.cfg.Weights["y"] == 2 && o.cfg.Concurrency == 42 &&
					o.cfg.SkipDefaultQueue && o.redisURL == "redis://env:1" && o.cfg.ShutdownTimeout == time.Minute
			}},
		{"flags beat environment", []string{"--queue", "z", "-c", "5"}, map[string]string{"REDIQ_QUEUES": "x,y", "REDIQ_CONCURRENCY": "42"},
			func(o *options) bool { return slices.Equal(o.cfg.Queues, []string{"z"}) && o.cfg.Concurrency == 5 }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			o, err := parseFlags("w", c.args, &bytes.Buffer{}, envOf(c.env))
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
		{[]string{"--queue", "a:0"}, nil, "weight must be a positive integer"},
		{[]string{"--concurrency", "lots"}, nil, "invalid argument"},
		{[]string{"extra"}, nil, `unexpected argument "extra"`},
		{nil, map[string]string{"REDIQ_CONCURRENCY": "many"}, "$REDIQ_CONCURRENCY"},
		{[]string{"--nope"}, nil, "unknown flag"},
	}
	for _, c := range cases {
		_, err := parseFlags("w", c.args, &bytes.Buffer{}, envOf(c.env))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %v: error %v, want it to mention %q", c.args, c.env, err, c.want)
		}
	}
}

func TestHelpExplainsEveryFlag(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	_, err := parseFlags("myworker", []string{"--help"}, &out, envOf(nil))
	if !errors.Is(err, pflag.ErrHelp) {
		t.Fatalf("err = %v, want ErrHelp", err)
	}
	for _, fe := range flagEnv {
		if !strings.Contains(out.String(), "--"+fe[0]) || !strings.Contains(out.String(), "$"+fe[1]) {
			t.Errorf("help lacks --%s or $%s:\n%s", fe[0], fe[1], out.String())
		}
	}
	for _, def := range []string{"default 10", "default 30s", "default 15s", `default "info"`} {
		if !strings.Contains(out.String(), def) {
			t.Errorf("help does not show %q", def)
		}
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
