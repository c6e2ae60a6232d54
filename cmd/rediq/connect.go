package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/broker"
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

// open returns an App for the flags, which rediq.New completes from the
// environment and its defaults; the caller closes it. A bad URL, TLS file or
// namespace is a usage error.
func (r *redisFlags) open() (*rediq.App, *broker.Broker, error) {
	app, err := rediq.New(rediq.Config{RedisURL: r.url, Namespace: r.namespace,
		TLSCAFile: r.tls.CA, TLSCertFile: r.tls.Cert, TLSKeyFile: r.tls.Key})
	if ue := (*core.URLError)(nil); errors.As(err, &ue) {
		from := "--redis-url"
		if r.url == "" {
			from = "$REDIQ_REDIS_URL"
		}
		// ue's message never holds the URL, which may hold a password.
		return nil, nil, usageErrorf("%s: %w", from, ue.Err)
	}
	if err != nil {
		return nil, nil, usageErrorf("%s", strings.TrimPrefix(err.Error(), "rediq: "))
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
func withApp(ctx context.Context, cmd string, rf *redisFlags, fn func(context.Context, *rediq.App) error) (err error) {
	app, _, err := rf.open()
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	defer func() {
		if cerr := app.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("%s: %w", cmd, cerr)
		}
	}()
	ctx, cancel := withTimeout(ctx)
	defer cancel()
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
