package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/jedib0t/go-pretty/v6/table"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/settings"
)

func runConfig(_ context.Context, args []string, stdout, _ io.Writer) error {
	help := func() {
		fmt.Fprint(stdout, "Usage: rediq config <action> [flags]\n\n"+
			"Keeps the settings file of rediq and of workers run by worker.Main: where Redis is, its TLS files and the key namespace, so that they\n"+
			"need not be given each time. A flag wins over its environment variable, which\n"+
			"wins over the file, which wins over the default. The file is $REDIQ_CONFIG, else\n"+
			"rediq/config.json in the user's configuration directory; it is readable by its\n"+
			"owner only, as a Redis URL may hold a password.\n\nActions:\n"+
			"  set KEY VALUE  set a setting: "+settings.Keys()+"\n"+
			"  unset KEY      remove a setting from the file\n"+
			"  show           the settings a command would use, and where each comes from\n\n"+
			"Passwords are never printed. Run \"rediq config <action> --help\" for the flags.\n")
	}
	return runAction("config", "config show", []string{"set", "unset", "show"}, args, help,
		func(name string, rest []string) error {
			switch name {
			case "set":
				return configSet(rest, stdout)
			case "unset":
				return configUnset(rest, stdout)
			}
			return configShow(rest, stdout)
		})
}

// configFile returns the settings file's path and contents.
func configFile() (string, settings.File, error) {
	path, err := settings.Path(os.LookupEnv)
	if err != nil {
		return "", nil, err
	}
	f, err := settings.Load(path)
	return path, f, err
}

// shown is a setting's value fit to print: a URL without its password, "-"
// for none.
func shown(key, v string) string {
	switch {
	case v == "":
		return "-"
	case key == "redis-url":
		return settings.Redact(v)
	}
	return v
}

func configSet(args []string, stdout io.Writer) error {
	fs := newFlagSet("config set", "rediq config set KEY VALUE [flags]\n\n"+
		"Sets one setting in the file, checked first: a Redis URL must parse (it is not\n"+
		"dialed), a namespace be a valid one, a TLS file exist (its absolute path is kept).\n"+
		"Keys: "+settings.Keys()+".")
	out := registerOutput(fs, "{path, key, value}; the value without its password")
	pos, err := fs.parseArgs(args, stdout, "KEY", "VALUE")
	if err != nil {
		return err
	}
	s, ok := settings.Lookup(pos[0])
	if !ok {
		return usageErrorf("config set: unknown key %q: one of %s", pos[0], settings.Keys())
	}
	v, err := checkSetting(s.Key, pos[1])
	if err != nil {
		return usageErrorf("config set %s: %w", s.Key, err)
	}
	path, f, err := configFile()
	if err != nil {
		return fmt.Errorf("config set: %w", err)
	}
	f[s.Key] = v
	if err := settings.Save(path, f); err != nil {
		return fmt.Errorf("config set: %w", err)
	}
	if *out == outputJSON {
		return printJSON(stdout, struct {
			Path  string `json:"path"`
			Key   string `json:"key"`
			Value string `json:"value"`
		}{path, s.Key, shown(s.Key, v)})
	}
	_, err = fmt.Fprintf(stdout, "%s = %s (in %s)\n", s.Key, shown(s.Key, v), path)
	return err
}

// checkSetting validates value for key, returning what the file keeps.
func checkSetting(key, value string) (string, error) {
	if value == "" {
		return "", errors.New("empty value (\"rediq config unset " + key + "\" removes a setting)")
	}
	switch key {
	case "redis-url":
		if err := rediq.CheckRedisURL(value); err != nil {
			return "", libError(err) // never quotes the URL
		}
	case "namespace":
		if err := rediq.CheckNamespace(value); err != nil {
			return "", libError(err)
		}
	default: // a TLS file
		abs, err := filepath.Abs(value)
		if err != nil {
			return "", err
		}
		st, err := os.Stat(abs)
		if err != nil {
			return "", err
		}
		if !st.Mode().IsRegular() {
			return "", fmt.Errorf("%s is not a file", abs)
		}
		value = abs
	}
	return value, nil
}

func configUnset(args []string, stdout io.Writer) error {
	fs := newFlagSet("config unset", "rediq config unset KEY [flags]\n\n"+
		"Removes one setting from the file: the environment or the default applies again.\n"+
		"Keys: "+settings.Keys()+".")
	out := registerOutput(fs, "{path, key, removed}")
	pos, err := fs.parseArgs(args, stdout, "KEY")
	if err != nil {
		return err
	}
	if _, ok := settings.Lookup(pos[0]); !ok {
		return usageErrorf("config unset: unknown key %q: one of %s", pos[0], settings.Keys())
	}
	path, f, err := configFile()
	if err != nil {
		return fmt.Errorf("config unset: %w", err)
	}
	_, had := f[pos[0]]
	if had {
		delete(f, pos[0])
		if err := settings.Save(path, f); err != nil {
			return fmt.Errorf("config unset: %w", err)
		}
	}
	if *out == outputJSON {
		return printJSON(stdout, struct {
			Path    string `json:"path"`
			Key     string `json:"key"`
			Removed bool   `json:"removed"`
		}{path, pos[0], had})
	}
	if !had {
		_, err = fmt.Fprintf(stdout, "%s was not set in %s\n", pos[0], path)
		return err
	}
	_, err = fmt.Fprintf(stdout, "removed %s from %s\n", pos[0], path)
	return err
}

// settingJSON is one setting as "config show --output json" prints it.
type settingJSON struct {
	Key    string  `json:"key"`
	Value  *string `json:"value"`  // null for none: a TLS file not set
	From   string  `json:"from"`   // "--flag", "$VARIABLE", "file" or "default"
	Source string  `json:"source"` // "flag", "environment", "file" or "default"
}

func configShow(args []string, stdout io.Writer) error {
	fs := newFlagSet("config show", "rediq config show [flags]\n\n"+
		"Shows the settings file's path and the settings a command would use — given the\n"+
		"connection flags below, if any, and the environment — each with where it comes\n"+
		"from: a flag, a variable, the file or the default. Passwords show as ***.")
	var rf redisFlags
	rf.register(fs)
	out := registerOutput(fs, `{path, file_exists, file: {key: value}, settings: [{key, value, from, source}]}; `+
		`value null when not set, source flag, environment, file or default`)
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	s, err := rf.resolve(os.LookupEnv)
	if err != nil {
		return usageErrorf("config show: %w", err)
	}
	f, exists := settings.File{}, false
	if s.Path != "" {
		if _, err := os.Stat(s.Path); err == nil {
			exists = true
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("config show: %w", err)
		}
		if f, err = settings.Load(s.Path); err != nil {
			return fmt.Errorf("config show: %w", err)
		}
	}
	shownSettings := showSettings(s)
	if *out == outputJSON {
		file := map[string]string{}
		for k, v := range f {
			file[k] = shown(k, v)
		}
		return printJSON(stdout, struct {
			Path       string            `json:"path"`
			FileExists bool              `json:"file_exists"`
			File       map[string]string `json:"file"`
			Settings   []settingJSON     `json:"settings"`
		}{s.Path, exists, file, shownSettings})
	}
	switch {
	case s.Path == "":
		fmt.Fprintf(stdout, "settings file: none (no configuration directory; set $%s)\n\n", settings.EnvPath)
	case !exists:
		fmt.Fprintf(stdout, "settings file: %s (not written yet)\n\n", s.Path)
	default:
		fmt.Fprintf(stdout, "settings file: %s\n\n", s.Path)
	}
	t := newTable("SETTING", "VALUE", "FROM")
	for _, j := range shownSettings {
		value := "-"
		if j.Value != nil {
			value = *j.Value
		}
		t.AppendRow(table.Row{j.Key, value, j.From})
	}
	return printTable(stdout, t)
}

// showSettings is each setting of the file as s decided it, with the value
// the default gives what nothing set, and where it came from.
func showSettings(s settings.Conn) []settingJSON {
	defaults := map[string]string{settings.RedisURL.Key: rediq.DefaultRedisURL, settings.Namespace.Key: rediq.DefaultNamespace}
	var list []settingJSON
	for _, st := range settings.Stored {
		v := *s.Field(st)
		j := settingJSON{Key: st.Key, From: v.From}
		switch {
		case v.From == "":
			j.From, j.Source = "default", "default"
			v.Value = defaults[st.Key]
		case v.From == settings.FromFile(st, s.Path):
			j.From, j.Source = "file", "file"
		case v.FromEnv():
			j.Source = "environment"
		default:
			j.Source = "flag"
		}
		if v.Value != "" {
			value := shown(st.Key, v.Value)
			j.Value = &value
		}
		list = append(list, j)
	}
	return list
}
