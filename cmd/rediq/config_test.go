package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/settings"
	"github.com/rediq/rediq/internal/testredis"
)

// noConnectionEnv points the settings file at path and clears the variables
// that would win over it. Tests that call it set the environment: not parallel.
func noConnectionEnv(t *testing.T, path string) {
	t.Setenv(settings.EnvPath, path)
	for _, s := range settings.Stored {
		t.Setenv(s.Env, "") // an empty variable counts as not given
	}
}

type shownConfig struct {
	Path       string            `json:"path"`
	FileExists bool              `json:"file_exists"`
	File       map[string]string `json:"file"`
	Settings   []settingJSON     `json:"settings"`
}

func (c shownConfig) get(key string) settingJSON {
	for _, s := range c.Settings {
		if s.Key == key {
			return s
		}
	}
	return settingJSON{}
}

// String shows s for a comparison: "key=value from FROM (SOURCE)", the
// value <null> when JSON had null.
func (s settingJSON) String() string {
	v := "<null>"
	if s.Value != nil {
		v = *s.Value
	}
	return s.Key + "=" + v + " from " + s.From + " (" + s.Source + ")"
}

func TestConfigCommands(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rediq", "config.json")
	noConnectionEnv(t, path)
	show := func(args ...string) shownConfig {
		t.Helper()
		out, _, err := rediqCmd(t, append([]string{"config", "show", "-o", "json"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "hunter2") {
			t.Fatalf("config show printed a password:\n%s", out)
		}
		return decodeAs[shownConfig](t, out)
	}

	c := show()
	if c.Path != path || c.FileExists || len(c.File) != 0 || len(c.Settings) != len(settings.Stored) ||
		c.get("redis-url").String() != "redis-url="+rediq.DefaultRedisURL+" from default (default)" ||
		c.get("namespace").String() != "namespace="+rediq.DefaultNamespace+" from default (default)" ||
		c.get("tls-ca-file").String() != "tls-ca-file=<null> from default (default)" {
		t.Fatalf("no file: %+v", c)
	}

	out, _, err := rediqCmd(t, "config", "set", "redis-url", "redis://u:hunter2@127.0.0.1:1/0")
	if err != nil || out != "redis-url = redis://u:***@127.0.0.1:1/0 (in "+path+")\n" {
		t.Fatalf("config set: %q, %v", out, err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the file: %v, %v; want mode 0600: it holds a password", st, err)
	}
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), "hunter2") {
		t.Fatalf("the file does not hold the URL as given: %s", b)
	}
	const fromFile = "redis://u:***@127.0.0.1:1/0"
	c = show()
	if !c.FileExists || c.File["redis-url"] != fromFile || c.get("redis-url").String() != "redis-url="+fromFile+" from file (file)" {
		t.Fatalf("from the file: %+v", c)
	}
	// The table says the same, without the password.
	tout, _, err := rediqCmd(t, "config", "show")
	if err != nil || strings.Contains(tout, "hunter2") || !strings.Contains(tout, "settings file: "+path+"\n") {
		t.Fatalf("config show: %v\n%s", err, tout)
	}
	if rows := fields(tout); !equalRows(rows[2:4], [][]string{{"SETTING", "VALUE", "FROM"}, {"redis-url", fromFile, "file"}}) {
		t.Fatalf("config show:\n%s", tout)
	}

	// flag > environment > file > default.
	t.Setenv("REDIQ_REDIS_URL", "redis://:hunter2@env:1")
	if got := show().get("redis-url"); got.String() != "redis-url=redis://:***@env:1 from $REDIQ_REDIS_URL (environment)" {
		t.Fatalf("environment over the file: %+v", got)
	}
	if got := show("--redis-url", "redis://flag:1").get("redis-url"); got.String() != "redis-url=redis://flag:1 from --redis-url (flag)" {
		t.Fatalf("flag over the environment: %+v", got)
	}
	t.Setenv("REDIQ_REDIS_URL", "")

	// The other settings; a TLS file is kept by its absolute path.
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, []byte("not checked until dialed"), 0o600); err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	rel, err := filepath.Rel(wd, ca)
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range [][2]string{{"namespace", "myapp"}, {"tls-ca-file", rel}} {
		if _, _, err := rediqCmd(t, "config", "set", kv[0], kv[1]); err != nil {
			t.Fatalf("config set %s: %v", kv[0], err)
		}
	}
	c = show("--namespace", "flagns")
	if c.get("namespace").String() != "namespace=flagns from --namespace (flag)" || c.get("tls-ca-file").String() != "tls-ca-file="+ca+" from file (file)" ||
		c.File["namespace"] != "myapp" {
		t.Fatalf("namespace and TLS file: %+v", c)
	}
	j := decodeAs[map[string]any](t, mustRun(t, "config", "unset", "namespace", "-o", "json"))
	if j["removed"] != true || j["key"] != "namespace" {
		t.Fatalf("unset: %v", j)
	}
	if out := mustRun(t, "config", "unset", "namespace"); out != "namespace was not set in "+path+"\n" {
		t.Fatalf("unset again: %q", out)
	}
	if got := show().get("namespace"); got.From != "default" {
		t.Fatalf("after unset: %+v", got)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"config", "set", "redis-url", "http://u:hunter2@x"}, "config set redis-url: redis URL: unsupported scheme"},
		{[]string{"config", "set", "redis-url", "redis://u:hunter2@h:port"}, "config set redis-url: redis URL: "},
		{[]string{"config", "set", "redis-url", ""}, "rediq config unset redis-url"},
		{[]string{"config", "set", "namespace", "a:b"}, "config set namespace: "},
		{[]string{"config", "set", "tls-key-file", filepath.Join(dir, "nosuch.pem")}, "config set tls-key-file: "},
		{[]string{"config", "set", "password", "x"}, `config set: unknown key "password": one of redis-url, namespace`},
		{[]string{"config", "set", "redis-url"}, "config set: missing VALUE"},
		{[]string{"config", "unset", "port"}, `config unset: unknown key "port"`},
		{[]string{"config"}, "config: missing action"},
		{[]string{"config", "get"}, `config: unknown action "get"`},
	} {
		out, _, err := rediqCmd(t, tc.args...)
		if !isUsage(err) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "hunter2") || out != "" {
			t.Errorf("%q: %q, %v; want a usage error containing %q", tc.args, out, err, tc.want)
		}
	}
	if c := show(); c.File["redis-url"] != fromFile {
		t.Fatalf("a refused set changed the file: %+v", c)
	}
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, _, err := rediqCmd(t, args...)
	if err != nil {
		t.Fatalf("rediq %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// Commands connect where the precedence says: flag > environment > file >
// default. Not parallel: it sets the environment.
func TestConfigPrecedence(t *testing.T) {
	ns := testredis.Namespace(t)
	fill(t, ns)
	path := filepath.Join(t.TempDir(), "config.json")
	noConnectionEnv(t, path)
	queues := func(args ...string) string {
		t.Helper()
		return mustRun(t, append([]string{"queues"}, args...)...)
	}

	// The file alone.
	mustRun(t, "config", "set", "redis-url", testredis.URL())
	mustRun(t, "config", "set", "namespace", ns)
	if out := queues(); !strings.Contains(out, "emails") {
		t.Fatalf("from the file: %q; want the emails queue", out)
	}
	// The environment over the file, a flag over the environment.
	other := testredis.Namespace(t)
	t.Setenv("REDIQ_NAMESPACE", other)
	if out := queues(); !strings.Contains(out, `namespace "`+other+`"`) {
		t.Fatalf("$REDIQ_NAMESPACE over the file: %q", out)
	}
	if out := queues("--namespace", ns); !strings.Contains(out, "emails") {
		t.Fatalf("--namespace over $REDIQ_NAMESPACE: %q", out)
	}
	t.Setenv("REDIQ_NAMESPACE", "")
	// The same for the URL: the file's names no server.
	mustRun(t, "config", "set", "redis-url", "redis://127.0.0.1:1/0?max_retries=-1&dial_timeout=1s")
	t.Setenv("REDIQ_REDIS_URL", testredis.URL())
	if out := queues(); !strings.Contains(out, "emails") {
		t.Fatalf("$REDIQ_REDIS_URL over the file: %q", out)
	}
	t.Setenv("REDIQ_REDIS_URL", "redis://127.0.0.1:1/0?max_retries=-1&dial_timeout=1s")
	if out := queues("--redis-url", testredis.URL()); !strings.Contains(out, "emails") {
		t.Fatalf("--redis-url over $REDIQ_REDIS_URL: %q", out)
	}
	t.Setenv("REDIQ_REDIS_URL", "")

	// A bad URL in the file is a usage error that names the file, not the password.
	if err := os.WriteFile(path, []byte(`{"redis-url": "redis://u:hunter2@h:port"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := rediqCmd(t, "queues")
	if !isUsage(err) || !strings.Contains(err.Error(), "queues: redis-url in "+path+": ") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("bad URL in the file: %v", err)
	}
	// A file that is not JSON.
	if err := os.WriteFile(path, []byte(`redis-url = x`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := rediqCmd(t, "queues"); !isUsage(err) || !strings.Contains(err.Error(), "config file "+path+": not a JSON object") {
		t.Fatalf("broken file: %v", err)
	}
}

// config show -o json gives null for a setting that is not set, and says
// where each comes from. Not parallel: it sets the environment.
func TestConfigShowJSONUnset(t *testing.T) {
	noConnectionEnv(t, filepath.Join(t.TempDir(), "config.json"))
	out := mustRun(t, "config", "show", "-o", "json")
	var c struct {
		Settings []map[string]any `json:"settings"`
	}
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	for _, s := range c.Settings {
		v, has := s["value"]
		switch s["key"] {
		case "tls-ca-file", "tls-cert-file", "tls-key-file":
			if !has || v != nil || s["source"] != "default" {
				t.Errorf("%v: want value null and source default", s)
			}
		case "namespace":
			if v != rediq.DefaultNamespace || s["source"] != "default" {
				t.Errorf("%v: want the default namespace, source default", s)
			}
		}
	}
	t.Setenv("REDIQ_NAMESPACE", "envns")
	out = mustRun(t, "config", "show", "-o", "json", "--redis-url", "redis://h:1")
	for _, want := range []string{`"source": "environment"`, `"source": "flag"`} {
		if !strings.Contains(out, want) {
			t.Errorf("config show lacks %s:\n%s", want, out)
		}
	}
}
