package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/settings"
)

// ioTimeout bounds the Redis I/O of one command, so that an unreachable or stuck
// server ends in an error rather than a hang.
const ioTimeout = 10 * time.Second

// redisFlags are the flags of every command that touches Redis.
type redisFlags struct {
	url       string
	tls       struct{ CA, Cert, Key string }
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

// resolve decides each connection setting from the flags, getenv and the
// settings file ("rediq config set"), as worker.Main does: flag >
// environment > file > default (rediq.New's, for what all three leave
// empty). An empty flag counts as not given.
func (r *redisFlags) resolve(getenv func(string) (string, bool)) (settings.Conn, error) {
	src, err := settings.Open(getenv)
	if err != nil {
		return settings.Conn{Path: src.Path}, err
	}
	return src.Conn(settings.NonEmpty(map[string]string{
		settings.RedisURL.Key: r.url, settings.Namespace.Key: r.namespace,
		settings.TLSCAFile.Key: r.tls.CA, settings.TLSCertFile.Key: r.tls.Cert, settings.TLSKeyFile.Key: r.tls.Key,
	})), nil
}

// open returns an App for the flags, the environment and the config file,
// which rediq.New completes with its defaults; the caller closes it. A bad
// URL, TLS file or namespace is a usage error.
func (r *redisFlags) open() (*rediq.App, error) {
	s, err := r.resolve(os.LookupEnv)
	if err != nil {
		return nil, usageErrorf("%w", err)
	}
	app, err := rediq.New(rediq.Config{RedisURL: s.RedisURL.Value, Namespace: s.Namespace.Value,
		TLSCAFile: s.TLSCAFile.Value, TLSCertFile: s.TLSCertFile.Value, TLSKeyFile: s.TLSKeyFile.Value})
	if ue := (*rediq.RedisURLError)(nil); errors.As(err, &ue) {
		// ue's message never holds the URL, which may hold a password.
		return nil, usageErrorf("%s: %w", cmp.Or(s.RedisURL.From, "--redis-url"), ue.Err)
	}
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "rediq: ")
		if s.Namespace.From != "" && strings.HasPrefix(msg, "namespace ") {
			msg = s.Namespace.From + ": " + msg // --namespace: namespace "a b" contains…
		}
		return nil, usageErrorf("%s", msg)
	}
	servers.Store(app, serverName(cmp.Or(s.RedisURL.Value, rediq.DefaultRedisURL)))
	return app, nil
}

// servers holds the server of each App open returned (*rediq.App → string),
// for the messages that name it: an empty answer from the wrong Redis (the
// machine's default one, say) must not pass for an empty namespace.
var servers sync.Map

// closeApp closes an App open returned.
func closeApp(app *rediq.App) error {
	servers.Delete(app)
	return app.Close()
}

// where names app's namespace and server for a message:
// `namespace "rediq" on 127.0.0.1:6379`.
func where(app *rediq.App) string {
	server, _ := servers.Load(app)
	if server == nil {
		server = "(unknown server)"
	}
	return fmt.Sprintf("namespace %q on %s", app.Namespace(), server)
}

// serverName names the server(s) of a Redis URL without what else the URL
// holds (user, password, options): host:port, a socket's path, "cluster
// h1:p1,h2:p2", or "master NAME via sentinels h1:p1,h2:p2".
func serverName(raw string) string {
	scheme, _, _ := strings.Cut(raw, "://")
	_, kind, _ := strings.Cut(strings.ToLower(scheme), "+")
	u, err := url.Parse(raw)
	if err != nil {
		return "(a Redis URL that cannot be parsed)"
	}
	if strings.EqualFold(u.Scheme, "unix") {
		return u.Path
	}
	hosts := append([]string{u.Host}, u.Query()["addr"]...)
	switch kind {
	case "cluster":
		return "cluster " + strings.Join(hosts, ",")
	case "sentinel":
		return fmt.Sprintf("master %s via sentinels %s", u.Query().Get("master_name"), strings.Join(hosts, ","))
	}
	return u.Host
}

// errNoAnswer is the cause of a command's context ending at ioTimeout.
var errNoAnswer = fmt.Errorf("no answer from Redis within %s", ioTimeout)

// withTimeout bounds ctx by ioTimeout.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, ioTimeout, errNoAnswer)
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
	app, err := rf.open()
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	defer func() {
		if cerr := closeApp(app); cerr != nil && err == nil {
			err = fmt.Errorf("%s: %w", cmd, cerr)
		}
	}()
	if timed {
		var cancel context.CancelFunc
		ctx, cancel = withTimeout(ctx)
		defer cancel()
	}
	if err := fn(ctx, app); err != nil {
		return fmt.Errorf("%s: %w", cmd, located(app, redisError(ctx, libError(err))))
	}
	return nil
}

// located adds where(app) to an error of talking to Redis (unreachable,
// refused, no answer, an error reply), so that it says which Redis and
// namespace it came from. Other errors are about a task or batch, and those
// that could mean the wrong Redis (not found) name it themselves.
func located(app *rediq.App, err error) error {
	var (
		ne net.Error
		re redis.Error
	)
	if errors.As(err, &ne) || errors.As(err, &re) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, redis.ErrClosed) || errors.Is(err, errNoAnswer) {
		return &reworded{err.Error() + " (" + where(app) + ")", err}
	}
	return err
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
