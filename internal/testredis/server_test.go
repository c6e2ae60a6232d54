package testredis_test

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq/internal/testredis"
)

func TestKillRestart(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts []testredis.ServerOption
		want string // the key's value after the restart; "" for gone
	}{
		{name: "AOF keeps an acknowledged write", opts: []testredis.ServerOption{testredis.WithAOF()}, want: "v"},
		{name: "without AOF the data is gone", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := testredis.StartServer(t, tt.opts...)
			c := client(t, srv.URL(), noRetries)
			ctx := t.Context()
			if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			addr := srv.Addr()

			srv.Kill()
			if err := c.Ping(ctx).Err(); err == nil {
				t.Fatal("PING answered after Kill")
			}
			srv.Restart(t)
			if srv.Addr() != addr {
				t.Fatalf("address moved from %s to %s", addr, srv.Addr())
			}
			got, err := c.Get(ctx, "k").Result()
			if errors.Is(err, redis.Nil) {
				err = nil
			}
			if err != nil || got != tt.want {
				t.Fatalf("GET k after restart = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestStopThenRestart(t *testing.T) {
	t.Parallel()
	srv := testredis.StartServer(t, testredis.WithAOF())
	c := client(t, srv.URL(), noRetries)
	ctx := t.Context()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	srv.Stop() // a second Stop does nothing
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered after Stop")
	}
	srv.Restart(t)
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET k after restart = %q, %v; want v", got, err)
	}
}

func TestRestartWaitsForItsPort(t *testing.T) {
	t.Parallel()
	srv := testredis.StartServer(t)
	srv.Kill()
	// Something else holds the port for a moment while the server is down.
	squatter, err := net.Listen("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	release := time.AfterFunc(300*time.Millisecond, func() { squatter.Close() })
	defer release.Stop()
	srv.Restart(t)
	if err := client(t, srv.URL(), nil).Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestPassword(t *testing.T) {
	t.Parallel()
	srv := testredis.StartServer(t, testredis.WithPassword("s3cret pass"))
	ctx := t.Context()
	if err := client(t, srv.URL(), nil).Ping(ctx).Err(); err != nil {
		t.Fatalf("with the password: %v", err)
	}
	tests := []struct {
		name     string
		password string
	}{
		{name: "no password"},
		{name: "wrong password", password: "guess"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := client(t, "redis://"+srv.Addr(), func(o *redis.Options) { o.Password = tt.password })
			err := c.Ping(ctx).Err()
			if err == nil || !strings.Contains(err.Error(), "NOAUTH") && !strings.Contains(err.Error(), "WRONGPASS") {
				t.Fatalf("PING = %v; want NOAUTH or WRONGPASS", err)
			}
		})
	}
}

func TestWithArgs(t *testing.T) {
	t.Parallel()
	srv := testredis.StartServer(t, testredis.WithArgs("--databases", "3"))
	got, err := client(t, srv.URL(), nil).ConfigGet(t.Context(), "databases").Result()
	if err != nil || got["databases"] != "3" {
		t.Fatalf("CONFIG GET databases = %v, %v; want 3", got, err)
	}
}

func TestPackageServer(t *testing.T) {
	t.Parallel()
	c := testredis.Client(t)
	key := testredis.Namespace(t) + ":k"
	if err := c.Set(t.Context(), key, "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	testredis.WaitFor(t, 5*time.Second, "the key to be readable", func() bool {
		return c.Get(t.Context(), key).Val() == "v"
	})
}
