package rediq_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/worker"
)

type ResizeArgs struct {
	Image string
	Width int
}

func Example() {
	mr, _ := miniredis.Run() // any Redis; this one is embedded
	defer mr.Close()
	app, _ := rediq.New(rediq.Config{RedisURL: "redis://" + mr.Addr()})
	defer app.Close()

	resize := rediq.Register(app, "resize", func(ctx context.Context, a ResizeArgs) (string, error) {
		return fmt.Sprintf("%s@%dpx", a.Image, a.Width), nil
	}, rediq.Queue("images"), rediq.Priority(5), rediq.Retries(3))

	done := make(chan struct{})
	app.On(rediq.AfterTaskSuccess, func(ctx context.Context) error {
		info, _ := rediq.CurrentTask(ctx)
		result, _ := rediq.TaskResult(ctx)
		fmt.Printf("%s on %s: %v\n", info.Name, info.Queue, result)
		close(done)
		return nil
	})

	ctx := context.Background()
	if _, err := resize.Enqueue(ctx, ResizeArgs{Image: "cat.jpg", Width: 128}); err != nil {
		fmt.Println(err)
		return
	}
	w, _ := worker.New(app, worker.Config{Queues: []string{"images"}})
	runCtx, stop := context.WithCancel(ctx)
	go func() { <-done; stop() }()
	if err := w.Run(runCtx); err != nil {
		fmt.Println(err)
	}
	// Output:
	// resize on images: cat.jpg@128px
}
