package rediq_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/worker"
)

type thumbArgs struct {
	Image string
	Width int
}

type thumbResult struct {
	URL   string
	Bytes int
}

// A record from GetTask reads back typed through its task: Args and Result
// decode, a record of another task is refused, and a record without a result
// gives Wait's errors.
func TestTaskReadsItsRecords(t *testing.T) {
	t.Parallel()
	app, _ := newApp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	thumb := rediq.Register(app, "thumb", func(_ context.Context, a thumbArgs) (thumbResult, error) {
		if a.Width < 0 {
			return thumbResult{}, rediq.SkipRetry(errors.New("negative width"))
		}
		return thumbResult{URL: "https://img/" + a.Image, Bytes: 100 * a.Width}, nil
	}, rediq.Queue("thumbs"), rediq.Retention(time.Minute))
	other := rediq.Register(app, "other", func(context.Context, thumbArgs) (thumbResult, error) {
		return thumbResult{}, nil
	}, rediq.Queue("thumbs"))

	w, err := worker.New(app, worker.Config{Queues: []string{"thumbs"}})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}()

	ok, err := thumb.Enqueue(ctx, thumbArgs{Image: "cat.jpg", Width: 128})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := thumb.Wait(ctx, ok); err != nil {
		t.Fatal(err)
	}
	rec, err := app.GetTask(ctx, ok)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := thumb.Args(rec); err != nil || a != (thumbArgs{Image: "cat.jpg", Width: 128}) {
		t.Fatalf("Args = %+v, %v", a, err)
	}
	if r, err := thumb.Result(rec); err != nil || r != (thumbResult{URL: "https://img/cat.jpg", Bytes: 12800}) {
		t.Fatalf("Result = %+v, %v", r, err)
	}
	if a, err := other.Args(rec); !errors.Is(err, rediq.ErrWrongTask) || a != (thumbArgs{}) {
		t.Fatalf("another task's Args = %+v, %v; want ErrWrongTask", a, err)
	}
	if r, err := other.Result(rec); !errors.Is(err, rediq.ErrWrongTask) || r != (thumbResult{}) {
		t.Fatalf("another task's Result = %+v, %v; want ErrWrongTask", r, err)
	}

	// Dead: the handler's error, as Wait gives it.
	bad, err := thumb.Enqueue(ctx, thumbArgs{Image: "dog.jpg", Width: -1})
	if err != nil {
		t.Fatal(err)
	}
	var failed *rediq.TaskFailedError
	if _, err := thumb.Wait(ctx, bad); !errors.As(err, &failed) {
		t.Fatalf("Wait = %v, want a *TaskFailedError", err)
	}
	if rec, err = app.GetTask(ctx, bad); err != nil {
		t.Fatal(err)
	}
	if _, err := thumb.Result(rec); !errors.As(err, &failed) || failed.ID != bad || failed.Err != "negative width" {
		t.Fatalf("Result of a dead task = %v, want a *TaskFailedError with its id and error", err)
	}
	if a, err := thumb.Args(rec); err != nil || a.Image != "dog.jpg" {
		t.Fatalf("Args of a dead task = %+v, %v", a, err)
	}

	// Waiting, then cancelled: no result yet, then none ever.
	later, err := thumb.Enqueue(ctx, thumbArgs{Image: "owl.jpg"}, rediq.Delay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if rec, err = app.GetTask(ctx, later); err != nil {
		t.Fatal(err)
	}
	if _, err := thumb.Result(rec); !errors.Is(err, rediq.ErrNotFinished) {
		t.Fatalf("Result of a scheduled task = %v, want ErrNotFinished", err)
	}
	if err := app.CancelTask(ctx, later); err != nil {
		t.Fatal(err)
	}
	if rec, err = app.GetTask(ctx, later); err != nil {
		t.Fatal(err)
	}
	if _, err := thumb.Result(rec); !errors.Is(err, rediq.ErrCancelled) {
		t.Fatalf("Result of a cancelled task = %v, want ErrCancelled", err)
	}
}
