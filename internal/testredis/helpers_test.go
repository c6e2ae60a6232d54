package testredis_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// client returns a go-redis client of url, closed when t ends; tune adjusts
// its options.
func client(t *testing.T, url string, tune func(*redis.Options)) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	if tune != nil {
		tune(opt)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// impatient makes a client that gives up on a reply after 200ms and never
// retries, so each fault shows as exactly one failed command.
func impatient(o *redis.Options) {
	noRetries(o)
	o.ReadTimeout = 200 * time.Millisecond
}

// noRetries makes a client that fails a command on its first error, dial
// errors included (go-redis otherwise dials 5 times, 100ms apart), so each
// fault shows once and quickly.
func noRetries(o *redis.Options) {
	o.MaxRetries = -1
	o.DialerRetries = 1
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
