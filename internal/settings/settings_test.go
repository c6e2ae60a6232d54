package settings

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func envOf(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// The precedence of every setting: flag > environment > file > default.
func TestSettingsResolve(t *testing.T) {
	t.Parallel()
	file := File{"redis-url": "redis://file:1", "wait-replicas": "3"}
	cases := []struct {
		name    string
		setting Setting
		flag    string
		given   bool
		env     map[string]string
		file    File
		want    Value
	}{
		{"default", RedisURL, "", false, nil, File{}, Value{}},
		{"file over default", RedisURL, "", false, nil, file, Value{"redis://file:1", "redis-url in /c.json"}},
		{"environment over file", RedisURL, "", false, map[string]string{"REDIQ_REDIS_URL": "redis://env:1"}, file,
			Value{"redis://env:1", "$REDIQ_REDIS_URL"}},
		{"flag over environment", RedisURL, "redis://flag:1", true, map[string]string{"REDIQ_REDIS_URL": "redis://env:1"}, file,
			Value{"redis://flag:1", "--redis-url"}},
		{"an empty variable is not given", RedisURL, "", false, map[string]string{"REDIQ_REDIS_URL": ""}, file,
			Value{"redis://file:1", "redis-url in /c.json"}},
		{"another setting's variable does not count", RedisURL, "", false, map[string]string{"REDIQ_NAMESPACE": "ns"}, File{}, Value{}},
		{"a flag given empty wins", TLSCAFile, "", true, map[string]string{"REDIQ_TLS_CA_FILE": "env.pem"}, File{"tls-ca-file": "f.pem"},
			Value{"", "--tls-ca-file"}},
		{"a flag not given does not count", Namespace, "appns", false, nil, File{"namespace": "filens"},
			Value{"filens", "namespace in /c.json"}},
		{"a setting the file does not keep", WaitReplicas, "", false, nil, file, Value{}},
		{"its environment", WaitReplicas, "", false, map[string]string{"REDIQ_WAIT_REPLICAS": "2"}, file,
			Value{"2", "$REDIQ_WAIT_REPLICAS"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			src := Sources{Getenv: envOf(c.env), File: c.file, Path: "/c.json"}
			if got := src.Resolve(c.setting, c.flag, c.given); got != c.want {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

// Conn decides each connection setting on its own, from its own flag,
// variable and key.
func TestSettingsConn(t *testing.T) {
	t.Parallel()
	src := Sources{
		Getenv: envOf(map[string]string{"REDIQ_NAMESPACE": "envns", "REDIQ_TLS_CA_FILE": "", "REDIQ_WAIT_REPLICAS_TIMEOUT": "1s"}),
		File:   File{"redis-url": "redis://file:1", "namespace": "filens", "tls-ca-file": "/f/ca.pem"},
		Path:   "/c.json",
	}
	got := src.Conn(NonEmpty(map[string]string{"tls-cert-file": "c.pem", "tls-key-file": ""}))
	want := Conn{
		RedisURL:            Value{"redis://file:1", "redis-url in /c.json"},
		Namespace:           Value{"envns", "$REDIQ_NAMESPACE"},
		TLSCAFile:           Value{"/f/ca.pem", "tls-ca-file in /c.json"},
		TLSCertFile:         Value{"c.pem", "--tls-cert-file"},
		WaitReplicasTimeout: Value{"1s", "$REDIQ_WAIT_REPLICAS_TIMEOUT"},
		Path:                "/c.json",
	}
	if got != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if !got.TLSCertFile.FromFlag() || got.TLSCertFile.FromEnv() || !got.Namespace.FromEnv() || got.RedisURL.FromFlag() {
		t.Fatalf("FromFlag/FromEnv disagree with From: %+v", got)
	}
}

// Open reads the file that $REDIQ_CONFIG names; a missing one holds nothing.
func TestSettingsOpen(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.json")
	src, err := Open(envOf(map[string]string{EnvPath: path}))
	if err != nil || src.Path != path || len(src.File) != 0 {
		t.Fatalf("no file: %+v, %v", src, err)
	}
	if err := Save(path, File{"namespace": "ns"}); err != nil {
		t.Fatal(err)
	}
	src, err = Open(envOf(map[string]string{EnvPath: path}))
	if err != nil || src.Resolve(Namespace, "", false) != (Value{"ns", "namespace in " + path}) {
		t.Fatalf("file: %+v, %v", src, err)
	}
}

func TestSettingsRedact(t *testing.T) {
	t.Parallel()
	cases := []struct{ in, want string }{
		{"", ""},
		{"redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"redis://user:hunter2@host:6379/1", "redis://user:***@host:6379/1"},
		{"redis://:hunter2@host:6379", "redis://:***@host:6379"},
		{"rediss://user@host:6379", "rediss://user@host:6379"},
		{"redis+sentinel://s:sentpw@h:26379?master_name=m&password=hunter2", "redis+sentinel://s:***@h:26379?master_name=m&password=***"},
		{"redis://u:pa%25ss@h:1", "redis://u:***@h:1"},
		{"redis://u:hunter2@h:port%zz", "(a URL that cannot be parsed, not shown: it may hold a password)"},
	}
	for _, c := range cases {
		got := Redact(c.in)
		if got != c.want {
			t.Errorf("Redact(%q) = %q, want %q", c.in, got, c.want)
		}
		if strings.Contains(got, "hunter2") || strings.Contains(got, "sentpw") {
			t.Errorf("Redact(%q) = %q shows a password", c.in, got)
		}
	}
}

func TestSettingsFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sub", "config.json")
	f, err := Load(path)
	if err != nil || len(f) != 0 {
		t.Fatalf("missing file: %v, %v; want empty", f, err)
	}
	want := File{"redis-url": "redis://u:pw@h:1", "namespace": "ns", "future-key": "kept"}
	if err := Save(path, want); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("file mode %v, want 0600: it may hold a password", st.Mode().Perm())
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("loaded %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("loaded %v, want %v", got, want)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("directory holds %d files, want the config alone (no temporary left)", len(entries))
	}

	if err := os.WriteFile(path, []byte(`{"redis-url": "redis://u:hunter2@h`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), path) {
		t.Fatalf("broken file: err = %v; want one naming the file and quoting nothing of it", err)
	}
}

func TestSettingsPath(t *testing.T) {
	t.Parallel()
	if p, err := Path(envOf(map[string]string{EnvPath: "/x/c.json"})); err != nil || p != "/x/c.json" {
		t.Fatalf("$%s: %q, %v", EnvPath, p, err)
	}
	p, err := Path(envOf(nil))
	if dir, derr := os.UserConfigDir(); derr == nil && (err != nil || p != filepath.Join(dir, "rediq", "config.json")) {
		t.Fatalf("default: %q, %v", p, err)
	}
}
