package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

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
	namespace string
}

func (r *redisFlags) register(fs *flagSet) {
	fs.StringVar(&r.url, "redis-url", "", "Redis URL: redis:// or rediss://, with user:password@ and /db [$REDIQ_REDIS_URL] (default "+rediq.DefaultRedisURL+")")
	fs.StringVar(&r.namespace, "namespace", "", "key namespace of the app [$REDIQ_NAMESPACE] (default "+rediq.DefaultNamespace+")")
}

// open returns an App for the flags, falling back to the environment and then to
// the defaults; the caller closes it. A bad URL or namespace is a usage error.
func (r *redisFlags) open() (*rediq.App, *broker.Broker, error) {
	u := firstOf(r.url, os.Getenv("REDIQ_REDIS_URL"), rediq.DefaultRedisURL)
	ns := firstOf(r.namespace, os.Getenv("REDIQ_NAMESPACE"), rediq.DefaultNamespace)
	// Checked here, not left to rediq.New, so that a malformed URL is never
	// echoed: it may hold a password.
	if _, err := redis.ParseURL(u); err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, nil, usageErrorf("--redis-url: %w", err)
	}
	app, err := rediq.New(rediq.Config{RedisURL: u, Namespace: ns})
	if err != nil {
		return nil, nil, usageErrorf("%s", strings.TrimPrefix(err.Error(), "rediq: "))
	}
	return app, core.Unwrap(app).Broker(), nil
}

func firstOf(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
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
