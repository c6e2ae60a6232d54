package worker_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/worker"
)

// A Wait that leaves (its ctx ends) while another Wait on the same task starts,
// in the same App: the leaving one's UNSUBSCRIBE must not land after the new
// one's SUBSCRIBE, or the new Wait hears nothing and hangs until its ctx ends.
func TestWaitHandsOverItsChannel(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	gates := sync.Map{} // task id -> chan struct{}
	gated := rediq.Register(e.app, "gated", func(ctx context.Context, n int) (int, error) {
		info, _ := rediq.CurrentTask(ctx)
		g, _ := gates.LoadOrStore(info.ID, make(chan struct{}))
		select {
		case <-g.(chan struct{}):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		return n, nil
	}, rediq.Retention(time.Minute))
	e.start(e.app, worker.Config{Concurrency: 8})
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < 150 && time.Now().Before(deadline); i++ {
		id, err := gated.Enqueue(ctx, i)
		if err != nil {
			t.Fatal(err)
		}
		actx, cancelA := context.WithCancel(ctx)
		adone := make(chan struct{})
		go func() {
			defer close(adone)
			_, _ = gated.Wait(actx, id)
		}()
		// Let A subscribe (most rounds), then leave as B arrives.
		time.Sleep(time.Duration(i%4) * 200 * time.Microsecond)
		bres := make(chan error, 1)
		bctx, cancelB := context.WithTimeout(ctx, 10*time.Second)
		go func() {
			n, err := gated.Wait(bctx, id)
			if err == nil && n != i {
				t.Errorf("Wait = %d, want %d", n, i)
			}
			bres <- err
		}()
		cancelA()
		<-adone
		g, _ := gates.LoadOrStore(id, make(chan struct{}))
		close(g.(chan struct{}))
		if err := <-bres; err != nil {
			cancelB()
			t.Fatalf("round %d: the second Wait on %s: %v", i, id, err)
		}
		cancelB()
	}
}
