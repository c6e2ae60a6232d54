package broker_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/testredis"
)

// Single enqueues of a queue share one call in flight; but a call whose reply
// is held up does not hold up the callers who come after it: once the call
// has gone unanswered for a while, they go in a call of their own.
func TestAHeldEnqueueReplyDelaysOnlyItsCallers(t *testing.T) {
	t.Parallel()
	testredis.RequireReal(t) // the proxy sits in front of a real server
	proxy := testredis.NewProxy(t, strings.TrimPrefix(testredis.URL(), "redis://"))
	rdb := redis.NewClient(&redis.Options{Addr: proxy.Addr(), ReadTimeout: 10 * time.Second})
	t.Cleanup(func() { rdb.Close() })
	b := broker.New(rdb, testredis.Namespace(t))
	q := b.Queue("q")
	ctx := context.Background()
	enqueue(t, b, q, msg("warm", 2048)) // loads the script, dials

	released := make(chan struct{})
	proxy.HoldRepliesTo(func(req []byte) bool {
		return bytes.Contains(req, []byte("evalsha")) && bytes.Contains(req, []byte("held"))
	}, 1, 3*time.Second)
	held := make(chan error, 1)
	go func() {
		_, err := b.Enqueue1(ctx, q, msg("held", 2048))
		close(released)
		held <- err
	}()
	// Wait until the held call is out (its id is in Redis, read past the
	// proxy), then enqueue more.
	direct := testredis.Client(t)
	deadline := time.Now().Add(5 * time.Second)
	for !direct.HExists(ctx, q.Records, "held").Val() {
		if time.Now().After(deadline) {
			t.Fatal("the held call never reached Redis")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := b.Enqueue1(ctx, q, msg("after", 2048)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-released:
		t.Fatal("the later enqueue waited for the held reply")
	default:
	}
	if err := <-held; err != nil {
		t.Fatalf("the held enqueue: %v", err)
	}
}
