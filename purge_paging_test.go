package rediq_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
)

// Purging one of the states that share an index pages by score: entries that
// leave ahead of the cursor (scheduled tasks that fall due) or arrive (new
// ones) while it runs hide none of those it must delete, and a task that moved
// between the listing and the delete (ran, failed, and is back as a retry at
// another score) is not deleted as what it was.
func TestPurgePagesByScore(t *testing.T) {
	t.Parallel()
	app, rdb := newApp(t)
	ctx := context.Background()
	task := rediq.Register(app, "p", func(context.Context, int) (int, error) { return 0, nil }, rediq.Queue("pq"))
	const n = 3 * rediq.PurgePage
	ids := make([]rediq.TaskID, n)
	for i := range n {
		id, err := task.Enqueue(ctx, i, rediq.Delay(time.Hour+time.Duration(i)*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	b := app.Broker()
	q := b.Queue("pq")
	// Every odd task is a retry (a failed attempt retried).
	for i := 1; i < n; i += 2 {
		body, err := rdb.HGet(ctx, q.Records, string(ids[i])).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		env, err := codec.Decode(body)
		if err != nil {
			t.Fatal(err)
		}
		env.Retried = 1
		rdb.HSet(ctx, q.Records, string(ids[i]), codec.Encode(env))
	}
	// The first scheduled task moves (a worker ran it, it failed): listed as
	// scheduled, it is a retry, due later, when the purge comes.
	moved := string(ids[0])
	first := true
	isRetry := func(l broker.Listed) bool {
		var env codec.Envelope
		return codec.DecodeInto(l.Body, &env) == nil && env.Retried > 0
	}
	err := rediq.PurgeIndex(ctx, b, q, broker.ListScheduled, func(l broker.Listed) bool {
		if first {
			first = false
			env, _ := codec.Decode([]byte(rdb.HGet(ctx, q.Records, moved).Val()))
			env.Retried = 1
			rdb.HSet(ctx, q.Records, moved, codec.Encode(env))
			rdb.ZIncrBy(ctx, q.Scheduled, 4096*3600_000, moved)
		}
		return !isRetry(l)
	}, func(ps []broker.Purged) error {
		// Between pages: the earliest retries (kept) fall due and leave, and
		// new tasks arrive ahead of the cursor.
		zs := rdb.ZRangeWithScores(ctx, q.Scheduled, 0, 99).Val()
		for _, z := range zs {
			if m := z.Member.(string); m != moved && isRetryID(ctx, t, rdb, q, m) {
				rdb.ZRem(ctx, q.Scheduled, m)
			}
		}
		for i := range 50 {
			rdb.ZAdd(ctx, q.Scheduled, redis.Z{Score: 1, Member: fmt.Sprintf("new-%d-%d", len(ps), i)})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 2 {
		_, err := rdb.ZScore(ctx, q.Scheduled, string(ids[i])).Result()
		if string(ids[i]) == moved {
			if err != nil {
				t.Fatalf("the task that became a retry was deleted as scheduled: %v", err)
			}
			continue
		}
		if err != redis.Nil {
			t.Fatalf("scheduled task %d (%s) survived the purge: %v", i, ids[i], err)
		}
	}
}

func isRetryID(ctx context.Context, t *testing.T, rdb *redis.Client, q *broker.Queue, id string) bool {
	body, err := rdb.HGet(ctx, q.Records, id).Bytes()
	if err != nil {
		return false
	}
	env, err := codec.Decode(body)
	return err == nil && env.Retried > 0
}

// Purging dead tasks deletes every one that was dead when it began, however
// many die meanwhile.
func TestPurgeOfDeadKeepsUpWithNewDeaths(t *testing.T) {
	t.Parallel()
	app, rdb := newApp(t)
	ctx := context.Background()
	b := app.Broker()
	q := b.Queue("pd")
	const n = 3 * rediq.PurgePage
	for i := range n {
		rdb.ZAdd(ctx, q.Dead, redis.Z{Score: float64(1000 + i), Member: fmt.Sprint("old-", i)})
	}
	next := 1_000_000
	err := rediq.PurgeIndex(ctx, b, q, broker.ListDead, nil, func(ps []broker.Purged) error {
		for range rediq.PurgePage {
			next++
			rdb.ZAdd(ctx, q.Dead, redis.Z{Score: float64(next), Member: fmt.Sprint("new-", next)})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	left := rdb.ZRangeByScore(ctx, q.Dead, &redis.ZRangeBy{Min: "-inf", Max: "999999"}).Val()
	if len(left) != 0 {
		t.Fatalf("%d of the %d dead at the start survived: %v…", len(left), n, left[:min(3, len(left))])
	}
}
