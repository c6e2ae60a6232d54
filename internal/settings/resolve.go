package settings

import "strings"

// Setting is one setting that a flag, an environment variable and perhaps
// the settings file can give.
type Setting struct {
	Key    string // its flag's name; also its key in the file, when it is kept there
	Env    string // its environment variable
	InFile bool   // "rediq config set" keeps it in the settings file
}

// The settings that the rediq command and worker.Main share.
var (
	RedisURL    = Setting{"redis-url", "REDIQ_REDIS_URL", true}
	Namespace   = Setting{"namespace", "REDIQ_NAMESPACE", true}
	TLSCAFile   = Setting{"tls-ca-file", "REDIQ_TLS_CA_FILE", true}
	TLSCertFile = Setting{"tls-cert-file", "REDIQ_TLS_CERT_FILE", true}
	TLSKeyFile  = Setting{"tls-key-file", "REDIQ_TLS_KEY_FILE", true}
	// The wait for replicas is a property of a deployment's Redis rather
	// than of a user, so the file does not keep it.
	WaitReplicas        = Setting{"wait-replicas", "REDIQ_WAIT_REPLICAS", false}
	WaitReplicasTimeout = Setting{"wait-replicas-timeout", "REDIQ_WAIT_REPLICAS_TIMEOUT", false}
)

// Stored lists what the file holds, in the order "rediq config show" shows them.
var Stored = []Setting{RedisURL, Namespace, TLSCAFile, TLSCertFile, TLSKeyFile}

// Lookup returns the setting of the file named key.
func Lookup(key string) (Setting, bool) {
	for _, s := range Stored {
		if s.Key == key {
			return s, true
		}
	}
	return Setting{}, false
}

// Keys lists the file's keys, for messages.
func Keys() string {
	keys := make([]string, len(Stored))
	for i, s := range Stored {
		keys[i] = s.Key
	}
	return strings.Join(keys, ", ")
}

// Value is a setting as decided, and where it came from.
type Value struct {
	Value string
	// From is "--redis-url" (the flag), "$REDIQ_REDIS_URL" (the environment),
	// "redis-url in PATH" (the file), or "" (not set: the default applies).
	From string
}

// FromFlag reports whether v came from the command line.
func (v Value) FromFlag() bool { return strings.HasPrefix(v.From, "--") }

// FromEnv reports whether v came from the environment.
func (v Value) FromEnv() bool { return strings.HasPrefix(v.From, "$") }

// Sources are where a setting comes from when its flag is not given: the
// environment, then the settings file.
type Sources struct {
	Getenv func(string) (string, bool)
	File   File
	Path   string // the file's; "" when none could be named (then File is empty)
}

// Open returns the sources of getenv's environment: it names and reads the
// settings file. No configuration directory (no $HOME) means no file rather
// than an error: the flags and the environment still work.
func Open(getenv func(string) (string, bool)) (Sources, error) {
	src := Sources{Getenv: getenv, File: File{}}
	path, err := Path(getenv)
	if err != nil {
		return src, nil
	}
	f, err := Load(path)
	if err != nil {
		return src, err
	}
	src.File, src.Path = f, path
	return src, nil
}

// Resolve decides setting s. The order is the contract of the rediq command
// and worker.Main: flag > environment > file > default. given says whether
// the command line gave the flag, whose value is flag. An empty variable or
// file value counts as not given; whether an empty flag does is the
// caller's to say (worker.Main's --tls-ca-file "" drops the program's file).
func (src Sources) Resolve(s Setting, flag string, given bool) Value {
	if given {
		return Value{flag, "--" + s.Key}
	}
	if src.Getenv != nil {
		if v, ok := src.Getenv(s.Env); ok && v != "" {
			return Value{v, "$" + s.Env}
		}
	}
	if v := src.File[s.Key]; s.InFile && v != "" {
		return Value{v, FromFile(s, src.Path)}
	}
	return Value{}
}

// FromFile says that setting s came from the file at path, as Value.From does.
func FromFile(s Setting, path string) string { return s.Key + " in " + path }

// Conn is the connection settings as decided, each with where it came from.
// A Value without From leaves the setting to the default.
type Conn struct {
	RedisURL, Namespace                Value
	TLSCAFile, TLSCertFile, TLSKeyFile Value
	WaitReplicas, WaitReplicasTimeout  Value
	Path                               string // the settings file's, "" if none could be named
}

// Conn decides the connection settings; flag returns a setting's flag and
// whether the command line gave it.
func (src Sources) Conn(flag func(Setting) (value string, given bool)) Conn {
	c := Conn{Path: src.Path}
	for _, s := range append(Stored[:len(Stored):len(Stored)], WaitReplicas, WaitReplicasTimeout) {
		v, given := flag(s)
		*c.Field(s) = src.Resolve(s, v, given)
	}
	return c
}

// Field returns the field of c that holds setting s (nil for another setting).
func (c *Conn) Field(s Setting) *Value {
	switch s.Key {
	case RedisURL.Key:
		return &c.RedisURL
	case Namespace.Key:
		return &c.Namespace
	case TLSCAFile.Key:
		return &c.TLSCAFile
	case TLSCertFile.Key:
		return &c.TLSCertFile
	case TLSKeyFile.Key:
		return &c.TLSKeyFile
	case WaitReplicas.Key:
		return &c.WaitReplicas
	case WaitReplicasTimeout.Key:
		return &c.WaitReplicasTimeout
	}
	return nil
}

// NonEmpty is the flag function of a command line where an empty flag
// counts as not given (the rediq command's): flags maps a setting's key to
// its flag's value.
func NonEmpty(flags map[string]string) func(Setting) (string, bool) {
	return func(s Setting) (string, bool) {
		v := flags[s.Key]
		return v, v != ""
	}
}
