package rediq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/core"
	"github.com/vmihailenco/msgpack/v5"
)

// OutputLine is one line of a batch's output.
type OutputLine struct {
	Batch  int64
	Task   TaskID
	Name   string
	Worker string
	Text   string
	At     time.Time // when Redis received it
}

// String formats the line as Follow writes it: "[batch:task worker] text".
func (l OutputLine) String() string {
	return fmt.Sprintf("[%d:%s %s] %s", l.Batch, l.Task, l.Worker, l.Text)
}

// Lines yields the batch's output lines from the start (what is retained),
// as they arrive, until the batch completes or stops (then the sequence ends)
// or ctx ends (then it yields ctx's error). Reading is a blocking read of the
// batch's stream: no polling.
func (b *Batch) Lines(ctx context.Context) iter.Seq2[OutputLine, error] {
	return b.app.batchLines(ctx, b.keys)
}

func (a *App) batchLines(ctx context.Context, k *broker.BatchKeys) iter.Seq2[OutputLine, error] {
	return func(yield func(OutputLine, error) bool) {
		br := a.core.Broker()
		if ok, err := br.BatchExists(ctx, k); err != nil || !ok {
			if err == nil {
				err = fmt.Errorf("%w: %d", ErrBatchNotFound, k.ID)
			}
			yield(OutputLine{}, err)
			return
		}
		out := br.OutputReader(k)
		var stoppedAt time.Time // a stopped batch's handlers may still print as they stop
		for {
			if !stoppedAt.IsZero() {
				st, err := a.BatchStat(ctx, k.ID)
				if err != nil || st.Running == 0 || time.Since(stoppedAt) > 5*time.Second {
					// A last read for lines sent just before the handlers ended.
					ls, err := out.Read(ctx, 0)
					if err != nil {
						yield(OutputLine{}, fmt.Errorf("rediq: batch %d output: %w", k.ID, err))
						return
					}
					for _, l := range ls {
						if l.Kind != broker.OutEnd && !yield(outputLine(k.ID, l), nil) {
							return
						}
					}
					return
				}
			}
			if err := ctx.Err(); err != nil {
				yield(OutputLine{}, context.Cause(ctx))
				return
			}
			// Blocks at most a second at a time, so that ctx is honoured.
			block := time.Second
			if !stoppedAt.IsZero() {
				block = 100 * time.Millisecond
			}
			ls, err := out.Read(ctx, block)
			if err != nil {
				if ctx.Err() != nil {
					err = context.Cause(ctx)
				}
				yield(OutputLine{}, fmt.Errorf("rediq: batch %d output: %w", k.ID, err))
				return
			}
			for _, l := range ls {
				if l.Kind == broker.OutEnd {
					if !l.Stopped() {
						return
					}
					stoppedAt = time.Now()
					continue
				}
				if !yield(outputLine(k.ID, l), nil) {
					return
				}
			}
		}
	}
}

func outputLine(batch int64, l broker.OutLine) OutputLine {
	return OutputLine{Batch: batch, Task: TaskID(l.Task), Name: l.Name, Worker: l.Worker, Text: l.Line, At: l.At}
}

// Follow writes the batch's lines to w, each prefixed "[batch:task worker]",
// from the start, as they arrive, until the batch completes or stops (nil) or
// ctx ends (ctx's error).
func (b *Batch) Follow(ctx context.Context, w io.Writer) error {
	return FollowBatch(ctx, b.app, b.keys.ID, w)
}

// FollowBatch is Follow for a batch by id (another terminal, after a reconnect).
func FollowBatch(ctx context.Context, app *App, id int64, w io.Writer) error {
	for l, err := range app.batchLines(ctx, app.core.Broker().Batch(id)) {
		if err != nil {
			return err
		}
		if _, err := io.WriteString(w, l.String()+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// Print writes a line to the current task's batch output (fmt.Sprint of a);
// outside a batch it goes to the worker's log, outside a task nowhere. Lines
// are sent coalesced, a few ms later, so printing costs the handler little.
func Print(ctx context.Context, a ...any) { printLine(ctx, fmt.Sprint(a...)) }

// Printf is Print with a format.
func Printf(ctx context.Context, format string, a ...any) { printLine(ctx, fmt.Sprintf(format, a...)) }

func printLine(ctx context.Context, text string) {
	s := core.StateFrom(ctx)
	if s == nil || s.ID == "" {
		return
	}
	for line := range strings.SplitSeq(strings.TrimSuffix(text, "\n"), "\n") {
		if s.Print != nil {
			s.Print(line)
		} else {
			s.Logger().Info(line) // a task outside a batch
		}
	}
}

// Output returns a writer whose lines go where Print's do.
func Output(ctx context.Context) io.Writer { return &outputWriter{ctx: ctx} }

type outputWriter struct {
	ctx     context.Context
	mu      sync.Mutex
	partial []byte
}

func (w *outputWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := strings.IndexByte(string(w.partial), '\n')
		if i < 0 {
			break
		}
		printLine(w.ctx, string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

// Collect adds row to the current task's batch table name. Outside a batch it
// returns an error. A lost connection is retried for up to 10 s before its
// error is returned; a row whose reply was lost may be added twice.
func Collect(ctx context.Context, name string, row any) error {
	s := core.StateFrom(ctx)
	if s == nil || s.Collect == nil {
		return errors.New("rediq: Collect outside a batch task")
	}
	b, err := msgpack.Marshal(row)
	if err != nil {
		return fmt.Errorf("rediq: Collect: encode row: %w", err)
	}
	return s.Collect(name, [][]byte{b})
}

// ResultTable makes a batch task's result go to table name of its batch (a
// slice result adds a row per element). Without it, results of batch tasks go
// to table "default".
func ResultTable(name string) TaskOption {
	return taskOnly(func(o *taskOptions) {
		if name == "" {
			o.fail("empty result table name")
		}
		o.resultTable = name
	})
}

// TableOptions says how ReadTable reads: Limit rows (0: 100), newest first;
// Pop removes what it returns.
type TableOptions struct {
	Pop   bool
	Limit int
}

// ReadTable reads rows of a batch's table, newest first, decoded as T.
func ReadTable[T any](ctx context.Context, app *App, batchID int64, name string, opts TableOptions) ([]T, error) {
	if opts.Limit <= 0 {
		opts.Limit = 100
	}
	br := app.core.Broker()
	raws, err := br.ReadRows(ctx, br.Batch(batchID), name, opts.Limit, opts.Pop)
	if err != nil {
		return nil, fmt.Errorf("rediq: read table %q of batch %d: %w", name, batchID, err)
	}
	out := make([]T, 0, len(raws))
	for _, r := range raws {
		var v T
		if err := msgpack.Unmarshal(r, &v); err != nil {
			return out, fmt.Errorf("rediq: read table %q of batch %d: decode a row: %w", name, batchID, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// BatchLines is Lines for a batch by id: from another process or terminal,
// or after a reconnect (it replays what is retained).
func (a *App) BatchLines(ctx context.Context, id int64) iter.Seq2[OutputLine, error] {
	return a.batchLines(ctx, a.core.Broker().Batch(id))
}

// BatchRowsHeld counts the rows batch id's tables hold now: the rows
// collected (BatchStat.Rows) less those a Pop read removed.
func (a *App) BatchRowsHeld(ctx context.Context, id int64) (int, error) {
	n, err := a.core.Broker().RowsHeld(ctx, a.core.Broker().Batch(id))
	if err != nil {
		return 0, fmt.Errorf("rediq: batch %d: %w", id, err)
	}
	return n, nil
}

// BatchTables lists the names of batch id's tables, sorted.
func (a *App) BatchTables(ctx context.Context, id int64) ([]string, error) {
	br := a.core.Broker()
	names, err := br.BatchTables(ctx, br.Batch(id))
	if err != nil {
		return nil, fmt.Errorf("rediq: batch %d tables: %w", id, err)
	}
	slices.Sort(names)
	return names, nil
}
