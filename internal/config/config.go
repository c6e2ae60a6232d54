// Package config reads and writes the settings file that "rediq config set"
// keeps: where Redis is, its TLS files and the key namespace, for the rediq
// command and worker.Main. Both decide each setting the same way: a flag wins
// over its environment variable, which wins over the file, which wins over the
// default (worker.Main: the program's own value).
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// EnvPath names the variable that points at another settings file than the
// one in the user's configuration directory (tests use it).
const EnvPath = "REDIQ_CONFIG"

// Setting is one setting of the file.
type Setting struct {
	Key string // as "rediq config set" takes it; also its flag's name
	Env string // its environment variable
}

// Settings lists what the file holds, in the order "rediq config show" shows them.
var Settings = []Setting{
	{"redis-url", "REDIQ_REDIS_URL"},
	{"namespace", "REDIQ_NAMESPACE"},
	{"tls-ca-file", "REDIQ_TLS_CA_FILE"},
	{"tls-cert-file", "REDIQ_TLS_CERT_FILE"},
	{"tls-key-file", "REDIQ_TLS_KEY_FILE"},
}

// Lookup returns the setting named key.
func Lookup(key string) (Setting, bool) {
	for _, s := range Settings {
		if s.Key == key {
			return s, true
		}
	}
	return Setting{}, false
}

// Keys lists the settings' keys, for messages.
func Keys() string {
	keys := make([]string, len(Settings))
	for i, s := range Settings {
		keys[i] = s.Key
	}
	return strings.Join(keys, ", ")
}

// File is the file's contents, setting key to value, as a JSON object. Keys
// it does not know (a newer rediq's) are kept when it is saved again.
type File map[string]string

// Path returns the file's path: $REDIQ_CONFIG, else rediq/config.json in the
// user's configuration directory (~/.config on Linux, see os.UserConfigDir).
func Path(getenv func(string) (string, bool)) (string, error) {
	if p, ok := getenv(EnvPath); ok && p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("config file: %w (or set $%s to its path)", err, EnvPath)
	}
	return filepath.Join(dir, "rediq", "config.json"), nil
}

// Load reads the file at path; a file that does not exist holds nothing.
func Load(path string) (File, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return File{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	f := File{}
	if len(strings.TrimSpace(string(b))) == 0 {
		return f, nil
	}
	if err := json.Unmarshal(b, &f); err != nil {
		// The error quotes no value: the file may hold a password.
		return nil, fmt.Errorf("config file %s: not a JSON object of strings", path)
	}
	return f, nil
}

// Save writes f to path, readable by its owner only (a Redis URL may hold a
// password), making its directory if need be. The file is replaced whole, so
// a reader never sees half of it.
func Save(path string, f File) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*.json")
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("config file: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("config file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	return nil
}

// Value is a setting as decided, and where it came from.
type Value struct {
	Value string
	// From is "--redis-url" (the flag), "$REDIQ_REDIS_URL" (the environment),
	// "redis-url in PATH" (the file), or "" (not set: the default applies).
	From string
}

// Resolve decides setting s. The order is the contract of the rediq command
// and worker.Main: flag > environment > file > default. An empty flag or
// variable counts as not given.
func Resolve(s Setting, flag string, getenv func(string) (string, bool), f File, path string) Value {
	if flag != "" {
		return Value{flag, "--" + s.Key}
	}
	if v, ok := getenv(s.Env); ok && v != "" {
		return Value{v, "$" + s.Env}
	}
	if v := f[s.Key]; v != "" {
		return Value{v, FromFile(s, path)}
	}
	return Value{}
}

// FromFile says that setting s came from the file at path, as Value.From does.
func FromFile(s Setting, path string) string { return s.Key + " in " + path }

// Redact returns a Redis URL fit to print: its password, and those in its
// password= options (a Sentinel URL's master password), shown as ***. What
// cannot be parsed as a URL is not shown at all.
func Redact(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL that cannot be parsed, not shown: it may hold a password)"
	}
	const mark = "rediqredactedpassword"
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), mark)
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", mark)
		u.RawQuery = q.Encode()
	}
	return strings.ReplaceAll(u.String(), mark, "***")
}
