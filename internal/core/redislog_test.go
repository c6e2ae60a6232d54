package core

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rediq/rediq/internal/testredis"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// Go-redis's lines go to the App's logger, at most one of a
// kind per interval, with a count of those held back.
func TestRedisLogIsRateLimited(t *testing.T) {
	t.Parallel()
	now := time.Unix(1000, 0)
	r := newRedisRouter(10*time.Second, func() time.Time { return now })
	const dial = "redis: connection pool: failed to dial after %d attempts: %v\n"
	r.Printf(context.Background(), dial, 1, "refused") // no route yet: dropped
	obs, logs := observer.New(zap.DebugLevel)
	defer r.route(zap.New(obs))()
	for range 5 {
		r.Printf(context.Background(), dial, 1, "refused")
		now = now.Add(500 * time.Millisecond) // two lines a second, as go-redis did
	}
	r.Printf(context.Background(), "redis: another kind %s", "x")
	now = now.Add(10 * time.Second)
	r.Printf(context.Background(), dial, 1, "refused")
	got := logs.AllUntimed()
	if len(got) != 3 {
		t.Fatalf("logged %d lines, want 3: %+v", len(got), got)
	}
	for _, e := range got {
		if e.Level != zap.WarnLevel || strings.HasPrefix(e.Message, "redis: ") {
			t.Errorf("logged %q at %v; want Warn, without go-redis's prefix", e.Message, e.Level)
		}
	}
	if got[0].Message != "connection pool: failed to dial after 1 attempts: refused" || len(got[0].Context) != 0 {
		t.Errorf("first line %q %v", got[0].Message, got[0].Context)
	}
	if got[1].Message != "another kind x" {
		t.Errorf("second line %q: another kind is not held back by the first", got[1].Message)
	}
	if n, ok := got[2].ContextMap()["suppressed"]; !ok || n != int64(4) {
		t.Errorf("third line %q %v: want suppressed=4", got[2].Message, got[2].ContextMap())
	}
}

// The newest open route takes the lines; closing it hands them back.
func TestRedisLogRoutes(t *testing.T) {
	t.Parallel()
	r := newRedisRouter(0, time.Now)
	obsA, a := observer.New(zap.DebugLevel)
	obsB, b := observer.New(zap.DebugLevel)
	unA := r.route(zap.New(obsA))
	unB := r.route(zap.New(obsB))
	r.Printf(context.Background(), "one")
	unB()
	unB() // twice is harmless
	r.Printf(context.Background(), "two")
	unA()
	r.Printf(context.Background(), "three")
	if a.Len() != 1 || a.All()[0].Message != "two" || b.Len() != 1 || b.All()[0].Message != "one" {
		t.Fatalf("A got %v, B got %v", a.All(), b.All())
	}
}

// An App with a logger receives go-redis's failed dials instead of stderr.
func TestAppReceivesRedisLog(t *testing.T) {
	t.Parallel()
	addr := testredis.ClosedPort(t)
	obs, _ := observer.New(zap.DebugLevel)
	app, err := NewApp(Setup{Endpoint: Endpoint{URL: "redis://" + addr + "?pool_size=100"}, Namespace: "ns"}, zap.New(obs))
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := app.Redis().Ping(ctx).Err(); err == nil {
		t.Fatal("ping succeeded on a closed port")
	}
	// The line went through the router (logged, or held back as a kind seen
	// in the last interval by another test of this process).
	redisLog.mu.Lock()
	defer redisLog.mu.Unlock()
	for f := range redisLog.kinds {
		if strings.Contains(f, "failed to dial") {
			return
		}
	}
	t.Fatalf("go-redis's failed dial did not reach rediq's router (kinds %v)", redisLog.kinds)
}
