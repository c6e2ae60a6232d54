package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/rediq/rediq"
)

// pollEvery is how often batch wait reads the batch's counts: often enough
// for a bar that moves smoothly, one small round trip each.
const pollEvery = 200 * time.Millisecond

func batchWaitCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlagSet("batch wait", "rediq batch wait N [flags]\n"+
		"  or: rediq batch wait --latest [flags]\n\n"+
		"Shows the batch's progress until it completes (exit 0) or stops (exit 1, with the\n"+
		"reason): on a terminal a bar with tasks done of enqueued, rate and ETA; otherwise\n"+
		"a line every --interval. A batch completes when every task has ended and no\n"+
		"more can be added: its producer called Wait or Close, or, for a detached batch,\n"+
		"its producer is gone (its keep-alives stopped for the keep-alive timeout).")
	var rf redisFlags
	rf.register(fs)
	latest := fs.Bool("latest", false, "the newest batch of the namespace, in place of N")
	every := fs.Duration("interval", 5*time.Second, "how often a progress line is printed when stdout is not a terminal")
	out := registerOutput(fs, `no progress; at the end, what "rediq batch stat --output json" prints`)
	arg, err := fs.parseOptionalArg(args, stdout)
	if err != nil {
		return err
	}
	id, err := batchArg("wait", arg, *latest)
	if err != nil {
		return err
	}
	if *every <= 0 {
		return usageErrorf("batch wait: --interval must be positive")
	}
	return withAppUntimed(ctx, "batch wait", &rf, func(ctx context.Context, app *rediq.App) error {
		// A batch that is not there is an error before any bar is drawn.
		sctx, cancel := withTimeout(ctx)
		var err error
		if *latest {
			var st rediq.BatchStat
			st, err = latestBatch(sctx, app)
			id = st.ID
		} else {
			_, err = app.BatchStat(sctx, id)
		}
		cancel()
		if err != nil {
			return batchNotFound(app, id, redisError(sctx, err))
		}
		var view progressView = &lineView{w: stdout, every: *every}
		switch {
		case *out == outputJSON:
			view = &jsonView{w: stdout}
		case isTerminal(stdout):
			view = newBarView(stdout, id)
		}
		return batchNotFound(app, id, waitBatch(ctx, app, id, view))
	})
}

// isTerminal reports whether w is a terminal, where a bar can redraw itself.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressView shows a batch's progress. update is called with each stat
// read; end once, with the last, when the batch has completed or stopped or
// err (ctx's end, a failed read) ended the wait.
type progressView interface {
	update(st rediq.BatchStat) error
	end(st rediq.BatchStat, err error) error
}

// waitBatch polls batch id's stat until it completes (nil) or stops and its
// running handlers have ended (ErrBatchStopped with the reason), showing each
// in view.
func waitBatch(ctx context.Context, app *rediq.App, id int64, view progressView) error {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	var st rediq.BatchStat
	for {
		sctx, cancel := withTimeout(ctx)
		next, err := app.BatchStat(sctx, id)
		err = redisError(sctx, err)
		cancel()
		switch {
		case ctx.Err() != nil:
			return errors.Join(fmt.Errorf("interrupted: batch %d has not completed", id), view.end(st, ctx.Err()))
		case err != nil:
			return errors.Join(err, view.end(st, err))
		}
		st = next
		switch {
		case st.Stopped:
			// The end shows what BatchStat says from now on: WaitBatch ends
			// the started tasks that waited for a retry and waits for the
			// running handlers, cancelled at the stop, to end.
			final, err := app.WaitBatch(ctx, id)
			if ctx.Err() != nil {
				return errors.Join(fmt.Errorf("interrupted: batch %d has not completed", id), view.end(st, ctx.Err()))
			}
			if final.ID == 0 {
				final = st
			}
			if err == nil {
				err = &rediq.BatchStoppedError{Batch: id, Reason: st.StopReason}
			}
			return errors.Join(libError(err), view.end(final, err))
		case !st.Finished.IsZero() && !st.Stopped:
			return view.end(st, nil)
		}
		if err := view.update(st); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// progressLine is the plain line of a batch's progress.
func progressLine(st rediq.BatchStat) string {
	return fmt.Sprintf("batch %d: %d/%d done (%d succeeded, %d failed, %s), %d running, %s, ETA %s",
		st.ID, ended(st), st.Enqueued, st.Succeeded, st.Failed, cancelled(st), st.Running, rate(st), eta(st))
}

// endLine sums up a batch that completed or stopped.
func endLine(st rediq.BatchStat) string {
	took := "-"
	if !st.Finished.IsZero() && !st.Created.IsZero() {
		took = age(st.Finished.Sub(st.Created))
	}
	return fmt.Sprintf("batch %d %s: %d/%d done (%d succeeded, %d failed, %s) in %s, %s",
		st.ID, batchState(st), ended(st), st.Enqueued, st.Succeeded, st.Failed, cancelled(st), took, rate(st))
}

// lineView prints a line when it starts, every interval after, and at the
// end: for a log file or a pipe, where a bar's redrawing would be noise.
type lineView struct {
	w       io.Writer
	every   time.Duration
	printed time.Time
}

func (v *lineView) update(st rediq.BatchStat) error {
	if now := time.Now(); now.Sub(v.printed) >= v.every {
		v.printed = now
		_, err := fmt.Fprintln(v.w, progressLine(st))
		return err
	}
	return nil
}

func (v *lineView) end(st rediq.BatchStat, err error) error {
	line := endLine(st)
	switch {
	case st.ID == 0:
		return nil // never read
	case err != nil && !st.Stopped:
		line = progressLine(st) // interrupted: where it was
	}
	_, werr := fmt.Fprintln(v.w, line)
	return werr
}

// jsonView shows nothing until the end, then the stat as JSON.
type jsonView struct{ w io.Writer }

func (jsonView) update(rediq.BatchStat) error { return nil }

func (v *jsonView) end(st rediq.BatchStat, err error) error {
	if st.ID == 0 || (err != nil && !st.Stopped) {
		return nil
	}
	return printJSON(v.w, newBatchJSON(st))
}

// barView draws a bar on a terminal: "batch 3  40 / 100 [=====>----]  40 %
// 12.5 tasks/s ETA 5s". mpb redraws it in a goroutine of its own, which end
// stops. The bar's total follows the batch's enqueued count, which grows
// while the producer enqueues; it is full only when the batch completes.
type barView struct {
	w    io.Writer
	p    *mpb.Progress
	bar  *mpb.Bar
	last atomic.Pointer[rediq.BatchStat] // what the rate and ETA show
}

func newBarView(w io.Writer, id int64) *barView {
	v := &barView{w: w}
	v.last.Store(&rediq.BatchStat{ID: id})
	v.p = mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(100*time.Millisecond))
	// A total of 0 makes a bar that never completes by itself: end completes it.
	v.bar = v.p.AddBar(0,
		mpb.PrependDecorators(decor.Name(fmt.Sprintf("batch %d", id), decor.WC{C: decor.DindentRight | decor.DextraSpace}),
			decor.CountersNoUnit("%d / %d")),
		mpb.AppendDecorators(decor.Percentage(decor.WC{W: 6}), decor.Any(func(decor.Statistics) string {
			st := v.last.Load()
			return "  " + rate(*st) + ", ETA " + eta(*st)
		})))
	return v
}

func (v *barView) update(st rediq.BatchStat) error {
	v.last.Store(&st)
	v.bar.SetTotal(int64(st.Enqueued), false)
	v.bar.SetCurrent(int64(ended(st)))
	return nil
}

func (v *barView) end(st rediq.BatchStat, err error) error {
	if st.ID != 0 {
		v.update(st)
	}
	if err == nil {
		v.bar.SetTotal(int64(st.Enqueued), true)
	} else {
		v.bar.Abort(false) // stays drawn as it was
	}
	v.p.Wait()
	if err != nil && !st.Stopped {
		return nil
	}
	_, werr := fmt.Fprintln(v.w, endLine(st))
	return werr
}
