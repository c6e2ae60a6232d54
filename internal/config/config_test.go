package config

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

func TestConfigResolve(t *testing.T) {
	t.Parallel()
	url, _ := Lookup("redis-url")
	file := File{"redis-url": "redis://file:1"}
	cases := []struct {
		name string
		flag string
		env  map[string]string
		file File
		want Value
	}{
		{"default", "", nil, File{}, Value{}},
		{"file over default", "", nil, file, Value{"redis://file:1", "redis-url in /c.json"}},
		{"environment over file", "", map[string]string{"REDIQ_REDIS_URL": "redis://env:1"}, file,
			Value{"redis://env:1", "$REDIQ_REDIS_URL"}},
		{"flag over environment", "redis://flag:1", map[string]string{"REDIQ_REDIS_URL": "redis://env:1"}, file,
			Value{"redis://flag:1", "--redis-url"}},
		{"an empty variable is not given", "", map[string]string{"REDIQ_REDIS_URL": ""}, file,
			Value{"redis://file:1", "redis-url in /c.json"}},
		{"another setting's variable does not count", "", map[string]string{"REDIQ_NAMESPACE": "ns"}, File{}, Value{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if got := Resolve(url, c.flag, envOf(c.env), c.file, "/c.json"); got != c.want {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestConfigRedact(t *testing.T) {
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

func TestConfigFile(t *testing.T) {
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

func TestConfigPath(t *testing.T) {
	t.Parallel()
	if p, err := Path(envOf(map[string]string{EnvPath: "/x/c.json"})); err != nil || p != "/x/c.json" {
		t.Fatalf("$%s: %q, %v", EnvPath, p, err)
	}
	p, err := Path(envOf(nil))
	if dir, derr := os.UserConfigDir(); derr == nil && (err != nil || p != filepath.Join(dir, "rediq", "config.json")) {
		t.Fatalf("default: %q, %v", p, err)
	}
}
