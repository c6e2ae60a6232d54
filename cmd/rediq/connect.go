package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/config"
	"github.com/rediq/rediq/internal/core"
)

// ioTimeout bounds the Redis I/O of one command, so that an unreachable or stuck
// server ends in an error rather than a hang.
const ioTimeout = 10 * time.Second

// redisFlags are the flags of every command that touches Redis.
type redisFlags struct {
	url       string
	tls       core.TLSFiles
	namespace string
}

// register adds the connection flags and --namespace.
func (r *redisFlags) register(fs *flagSet) {
	r.registerConn(fs)
	fs.StringVar(&r.namespace, "namespace", "", "key namespace of the app [$REDIQ_NAMESPACE] (default "+rediq.DefaultNamespace+")")
}

// registerConn adds the flags that say how to reach Redis.
func (r *redisFlags) registerConn(fs *flagSet) {
	fs.StringVar(&r.url, "redis-url", "", "Redis URL: redis://[user:password@]host:port/db, rediss:// (TLS), "+
		"redis+cluster://host:port?addr=host:port…, redis+sentinel://host:port?master_name=NAME… [$REDIQ_REDIS_URL] (default "+rediq.DefaultRedisURL+")")
	fs.StringVar(&r.tls.CA, "tls-ca-file", "", "PEM file of the CA certificates that verify Redis over TLS [$REDIQ_TLS_CA_FILE] (default: the system's)")
	fs.StringVar(&r.tls.Cert, "tls-cert-file", "", "PEM file of the client certificate offered to Redis over TLS; needs --tls-key-file [$REDIQ_TLS_CERT_FILE]")
	fs.StringVar(&r.tls.Key, "tls-key-file", "", "PEM file of the client certificate's private key [$REDIQ_TLS_KEY_FILE]")
}

// settings are the connection settings as decided from the flags, the
// environment and the config file.
type settings struct {
	url, namespace, tlsCA, tlsCert, tlsKey config.Value
	path                                   string // the config file's, "" if none could be named
}

// resolve decides each connection setting from the flags, getenv and the
// config file ("rediq config set").
func (r *redisFlags) resolve(getenv func(string) (string, bool)) (settings, error) {
	var s settings
	f := config.File{}
	// No configuration directory (no $HOME) means no file, not an error: the
	// flags and the environment still work.
	if path, err := config.Path(getenv); err == nil {
		s.path = path
		if f, err = config.Load(path); err != nil {
			return s, err
		}
	}
	// The precedence, per setting: flag > environment > file > default
	// (rediq.New's, for what all three leave empty).
	get := func(key, flag string) config.Value {
		st, _ := config.Lookup(key)
		return config.Resolve(st, flag, getenv, f, s.path)
	}
	s.url, s.namespace = get("redis-url", r.url), get("namespace", r.namespace)
	s.tlsCA, s.tlsCert, s.tlsKey = get("tls-ca-file", r.tls.CA), get("tls-cert-file", r.tls.Cert), get("tls-key-file", r.tls.Key)
	return s, nil
}

// open returns an App for the flags, the environment and the config file,
// which rediq.New completes with its defaults; the caller closes it. A bad
// URL, TLS file or namespace is a usage error.
func (r *redisFlags) open() (*rediq.App, *broker.Broker, error) {
	s, err := r.resolve(os.LookupEnv)
	if err != nil {
		return nil, nil, usageErrorf("%w", err)
	}
	app, err := rediq.New(rediq.Config{RedisURL: s.url.Value, Namespace: s.namespace.Value,
		TLSCAFile: s.tlsCA.Value, TLSCertFile: s.tlsCert.Value, TLSKeyFile: s.tlsKey.Value})
	if ue := (*core.URLError)(nil); errors.As(err, &ue) {
		// ue's message never holds the URL, which may hold a password.
		return nil, nil, usageErrorf("%s: %w", cmp.Or(s.url.From, "--redis-url"), ue.Err)
	}
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "rediq: ")
		if s.namespace.From != "" && strings.HasPrefix(msg, "namespace: ") {
			msg = s.namespace.From + strings.TrimPrefix(msg, "namespace")
		}
		return nil, nil, usageErrorf("%s", msg)
	}
	return app, core.Unwrap(app).Broker(), nil
}

// withTimeout bounds ctx by ioTimeout.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, ioTimeout, fmt.Errorf("no answer from Redis within %s", ioTimeout))
}

// redisError explains an error of Redis I/O done under ctx from withTimeout:
// a bare "context deadline exceeded" does not say what took too long.
func redisError(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.DeadlineExceeded) {
			return cause
		}
	}
	return err
}

// withApp opens the App of rf, runs fn with it under withTimeout and closes
// it. Errors come back prefixed with cmd, on one line.
func withApp(ctx context.Context, cmd string, rf *redisFlags, fn func(context.Context, *rediq.App) error) error {
	return openApp(ctx, cmd, rf, true, fn)
}

// withAppUntimed is withApp for a command that runs until its work is done
// or ctx ends (logs --follow, batch wait): fn bounds its own Redis calls.
func withAppUntimed(ctx context.Context, cmd string, rf *redisFlags, fn func(context.Context, *rediq.App) error) error {
	return openApp(ctx, cmd, rf, false, fn)
}

func openApp(ctx context.Context, cmd string, rf *redisFlags, timed bool, fn func(context.Context, *rediq.App) error) (err error) {
	app, _, err := rf.open()
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	defer func() {
		if cerr := app.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("%s: %w", cmd, cerr)
		}
	}()
	if timed {
		var cancel context.CancelFunc
		ctx, cancel = withTimeout(ctx)
		defer cancel()
	}
	if err := fn(ctx, app); err != nil {
		return fmt.Errorf("%s: %w", cmd, redisError(ctx, libError(err)))
	}
	return nil
}

// reworded is an error with a message of the CLI's in place of its own;
// errors.Is and As still see the original.
type reworded struct {
	msg string
	err error
}

func (e *reworded) Error() string { return e.msg }
func (e *reworded) Unwrap() error { return e.err }

// libError drops the "rediq: " the library starts its errors with, which
// would repeat the "rediq: " main prints before every error.
func libError(err error) error {
	if msg, ok := strings.CutPrefix(err.Error(), "rediq: "); ok {
		return &reworded{msg, err}
	}
	return err
}
