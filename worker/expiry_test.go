package worker_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/testredis"
	"github.com/rediq/rediq/worker"
)

// A task whose ExpireIn deadline passes while it waits in
// the prefetch buffer behind a busy runner never starts: it ends expired as
// one found expired at fetch does (Wait says ErrExpired, counted per queue,
// no attempt), alone or in a batch.
func TestExpiredInPrefetchBufferNeverStarts(t *testing.T) {
	t.Parallel()
	for _, batched := range []bool{false, true} {
		name := "plain"
		if batched {
			name = "batch"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ctx := context.Background()
			release := make(chan struct{})
			ran := newRecorder[int]()
			task := rediq.Register(e.app, "t", func(ctx context.Context, n int) (int, error) {
				ran.add(n)
				if n == 1 {
					select {
					case <-release:
					case <-ctx.Done():
						return 0, ctx.Err()
					}
				}
				return n, nil
			}, rediq.Retention(time.Minute))
			e.start(e.app, worker.Config{Concurrency: 1, Prefetch: 2})
			if _, err := task.Enqueue(ctx, 1); err != nil {
				t.Fatal(err)
			}
			ran.wait(t, 1, 10*time.Second) // the runner is busy
			var opts []rediq.EnqueueOption
			var b *rediq.Batch
			if batched {
				var err error
				if b, err = e.app.NewBatch(ctx, rediq.BatchOptions{Detached: true}); err != nil {
					t.Fatal(err)
				}
				opts = append(opts, rediq.InBatch(b))
			}
			const expireIn = 300 * time.Millisecond
			id, err := task.Enqueue(ctx, 2, append(opts, rediq.ExpireIn(expireIn))...)
			if err != nil {
				t.Fatal(err)
			}
			enqueued := time.Now()
			testredis.WaitFor(t, 5*time.Second, "the expiring task to be prefetched", func() bool {
				return e.active("default") == 2
			})
			if time.Since(enqueued) >= expireIn {
				t.Skip("the machine is too slow: the task was not prefetched before its deadline")
			}
			time.Sleep(time.Until(enqueued.Add(expireIn + 50*time.Millisecond))) // its deadline passes in the buffer
			close(release)
			if _, err := task.Wait(ctx, id); !errors.Is(err, rediq.ErrExpired) {
				t.Fatalf("Wait on the task expired in the buffer: %v", err)
			}
			if got := ran.get(); slices.Contains(got, 2) {
				t.Fatalf("the expired task ran: %v", got)
			}
			r, err := e.app.GetTask(ctx, id)
			if err != nil || r.State != rediq.StateExpired || r.Retried != 0 || !r.StartedAt.IsZero() {
				t.Fatalf("record %+v, %v; want expired, never started, no attempt", r, err)
			}
			if st, err := broker.New(e.rdb, e.ns).Stats(ctx, []string{"default"}); err != nil || st[0].Expired != 1 || st[0].Active != 0 {
				t.Fatalf("counts %+v, %v; want 1 expired, none active", st, err)
			}
			if batched {
				// Ended, unstarted: the batch completes with nothing started,
				// running or waiting.
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				st, err := b.Wait(wctx)
				if err != nil || st.Enqueued != 1 || st.Started != 0 || st.Succeeded != 0 || st.Running != 0 ||
					st.Unstarted != 0 || st.Finished.IsZero() {
					t.Fatalf("batch %+v, %v; want it complete with its one task ended unstarted", st, err)
				}
			}
		})
	}
}
