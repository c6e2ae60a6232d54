// Command batch is a vredis-style script: it opens a batch, enqueues 100 tasks
// that each print a few lines and return rows, prints their output live as
// the workers run them, waits for the batch with a progress line, and dumps
// the table the rows went to. A worker runs in this process, so it runs on
// its own; with other workers on the same Redis and namespace they share the
// tasks, and the lines still come back here only.
//
// It needs no Redis: without REDIQ_REDIS_URL it starts an embedded miniredis.
//
//	go run ./examples/batch
//	REDIQ_REDIS_URL=redis://127.0.0.1:6379/0 go run ./examples/batch
//
// While it runs, or after (for the batch's retention), the rediq command
// shows the same batch from another terminal: rediq batch stat N, rediq
// batch logs N --follow, rediq batch dump N --table pages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/worker"
)

// Page is a row of table "pages": what a task found.
type Page struct {
	URL   string `msgpack:"url"`
	Words int    `msgpack:"words"`
}

func main() {
	if err := run(os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "batch:", err)
		os.Exit(1)
	}
}

func run(w io.Writer) (err error) {
	// The output lines and the progress lines come from two goroutines.
	out := &lockedWriter{w: w}
	url := os.Getenv("REDIQ_REDIS_URL")
	if url == "" {
		mr, err := miniredis.Run()
		if err != nil {
			return err
		}
		defer mr.Close()
		url = "redis://" + mr.Addr()
		fmt.Fprintln(out, "no REDIQ_REDIS_URL: using an embedded miniredis at", mr.Addr())
	}
	// A namespace of its own, deleted at the end, so a shared Redis is left as
	// it was found.
	ns := fmt.Sprintf("batchexample%d", time.Now().UnixNano())
	app, err := rediq.New(rediq.Config{RedisURL: url, Namespace: ns})
	if err != nil {
		return err
	}
	defer app.Close()
	ctx := context.Background()
	defer func() {
		if cerr := deleteNamespace(ctx, app); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()

	// The task: what vredis's @pipe.table('pages') decorates. It prints (the
	// lines come back to this producer, prefixed [batch:task worker]) and
	// returns a slice: a row per element in table "pages".
	crawl := rediq.Register(app, "crawl", func(ctx context.Context, n int) ([]Page, error) {
		rediq.Printf(ctx, "fetching page %d", n)
		select { // the fetch
		case <-time.After(30 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		words := 100 + n*7%50
		rediq.Printf(ctx, "page %d: %d words", n, words)
		return []Page{{URL: fmt.Sprintf("https://example.com/%d", n), Words: words}}, nil
	}, rediq.ResultTable("pages"))

	wk, err := worker.New(app, worker.Config{Concurrency: 8})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	werr := make(chan error, 1)
	go func() { werr <- wk.Run(runCtx) }()
	defer func() {
		stop()
		err = errors.Join(err, <-werr)
	}()

	// A keep-alive batch (vredis's default): if this script dies, the workers
	// stop its tasks within the keep-alive timeout.
	b, err := app.NewBatch(ctx, rediq.BatchOptions{})
	if err != nil {
		return err
	}
	defer b.Close()
	fmt.Fprintf(out, "batch %d\n", b.ID())

	// Follow the output live while the tasks run; Follow returns when the
	// batch completes.
	followed := make(chan error, 1)
	go func() { followed <- b.Follow(ctx, out) }()

	pages := make([]int, 100)
	for i := range pages {
		pages[i] = i
	}
	if _, err := crawl.EnqueueMany(ctx, pages, rediq.InBatch(b)); err != nil {
		return err
	}

	// Wait, with a progress line every 200ms.
	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	progressDone := make(chan struct{})
	progressStopped := make(chan struct{})
	go func() {
		defer close(progressStopped)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-progressDone:
				return
			case <-t.C:
			}
			if st, err := app.BatchStat(waitCtx, b.ID()); err == nil {
				fmt.Fprintf(out, "progress: %d/%d done, %.0f tasks/s\n", st.Succeeded+st.Failed+st.Cancelled, st.Enqueued, st.Rate)
			}
		}
	}()
	st, err := b.Wait(waitCtx)
	close(progressDone)
	<-progressStopped
	if err != nil {
		return err
	}
	if err := <-followed; err != nil {
		return err
	}
	fmt.Fprintf(out, "batch %d completed: %d succeeded, %d failed, %d rows, %.0f tasks/s\n",
		st.ID, st.Succeeded, st.Failed, st.Rows, st.Rate)

	// Dump the table, newest first, as "rediq batch dump N --table pages" does.
	rows, err := rediq.ReadTable[Page](ctx, app, b.ID(), "pages", rediq.TableOptions{Limit: 5})
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "the 5 newest rows of table pages:")
	for _, r := range rows {
		fmt.Fprintf(out, "  %s  %d words\n", r.URL, r.Words)
	}
	if st.Succeeded != 100 || st.Rows != 100 {
		return fmt.Errorf("batch %d: %d succeeded and %d rows, want 100 of each", st.ID, st.Succeeded, st.Rows)
	}
	return nil
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// deleteNamespace deletes every key of app's namespace.
func deleteNamespace(ctx context.Context, app *rediq.App) error {
	rdb := app.Redis()
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, app.Namespace()+":*", 1000).Result()
		if err != nil {
			return fmt.Errorf("clean up: scan: %w", err)
		}
		if len(keys) > 0 {
			if err := rdb.Del(ctx, keys...).Err(); err != nil {
				return fmt.Errorf("clean up: del: %w", err)
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}
