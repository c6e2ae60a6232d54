// Command batch is a vredis-style script: it opens a batch, enqueues 100 tasks
// that each print a few lines and return rows, prints their output live as
// the workers run them, waits for the batch with a progress line, and dumps
// the table the rows went to. A worker runs in this process, so it runs on
// its own; with other workers on the same Redis and namespace they share the
// tasks, and the lines still come back here only.
//
// It needs no Redis: without REDIQ_REDIS_URL it starts an embedded miniredis,
// which ends with it.
//
//	go run ./examples/batch
//	REDIQ_REDIS_URL=redis://127.0.0.1:6379/0 go run ./examples/batch
//
// It works in the namespace $REDIQ_NAMESPACE, else a fresh one, and prints it
// with the commands that show the batch. On a Redis of REDIQ_REDIS_URL the
// batch stays after the program ends, for an hour (its Retention), so those
// commands work from another terminal while it runs and after: rediq batch
// stat N, rediq batch logs N --follow, rediq batch dump N --table pages, each
// with the --redis-url and --namespace printed. Its keys are left in that
// namespace: the batch's expire after the hour, a few counters stay.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	neturl "net/url"
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
	embedded := url == ""
	if embedded {
		mr, err := miniredis.Run()
		if err != nil {
			return err
		}
		defer mr.Close()
		url = "redis://" + mr.Addr()
		fmt.Fprintln(out, "no REDIQ_REDIS_URL: using an embedded miniredis at", mr.Addr(), "(it ends with this program)")
	}
	// A namespace of its own unless one is given, so that the batch numbers
	// start at 1 and nothing else in a shared Redis is touched.
	ns := os.Getenv("REDIQ_NAMESPACE")
	if ns == "" {
		ns = fmt.Sprintf("batchexample%d", time.Now().UnixNano())
	}
	app, err := rediq.New(rediq.Config{RedisURL: url, Namespace: ns})
	if err != nil {
		return err
	}
	defer app.Close()
	ctx := context.Background()

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
	// Its output, table and counts stay an hour after it completes.
	b, err := app.NewBatch(ctx, rediq.BatchOptions{Retention: time.Hour})
	if err != nil {
		return err
	}
	defer b.Close()
	fmt.Fprintf(out, "batch %d in namespace %s\n", b.ID(), ns)
	if !embedded {
		// The URL without its password: the command takes it from
		// $REDIQ_REDIS_URL or --redis-url.
		fmt.Fprintf(out, "to look at it from another terminal, now or within the hour after:\n"+
			"  rediq batch stat %d --redis-url %s --namespace %s\n", b.ID(), redacted(url), ns)
	}

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
	st, err := waitWithProgress(ctx, app, b, out)
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
	if !embedded {
		fmt.Fprintf(out, "the batch stays for an hour: rediq batch stat %d --redis-url %s --namespace %s\n", b.ID(), redacted(url), ns)
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

// redacted is a Redis URL fit to print: its password as xxxxx.
func redacted(raw string) string {
	u, err := neturl.Parse(raw)
	if err != nil {
		return "$REDIQ_REDIS_URL"
	}
	return u.Redacted()
}

// waitWithProgress waits (a minute at most) for batch b, printing a progress
// line every 200ms.
func waitWithProgress(ctx context.Context, app *rediq.App, b *rediq.Batch, out io.Writer) (rediq.BatchStat, error) {
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
	return st, err
}
