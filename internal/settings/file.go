// Package settings decides the settings that the rediq command and
// worker.Main share — where Redis is, its TLS files, the key namespace, the
// wait for replicas — and keeps the settings file that "rediq config set"
// writes. Both decide each setting the same way (Sources.Resolve): a flag wins
// over its environment variable, which wins over the file, which wins over
// the default (worker.Main: the program's own value).
package settings

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
