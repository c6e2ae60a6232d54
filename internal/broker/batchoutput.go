package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// OutLine is one entry of a batch's output stream.
type OutLine struct {
	ID     string // stream entry id
	Kind   OutKind
	Task   string
	Name   string
	Worker string
	Line   string // OutEnd: "completed" or "stopped: REASON"
	At     time.Time
}

// OutKind is what an output entry is (its "k" field).
type OutKind string

const (
	OutText OutKind = "l" // a line a task printed
	OutEnd  OutKind = "e" // the end of the batch: it completed or stopped
)

// Stopped reports whether the entry is the end of a stopped batch (whose
// handlers may still print as they stop), not of a completed one.
func (l *OutLine) Stopped() bool { return l.Kind == OutEnd && strings.HasPrefix(l.Line, "stopped") }

// AppendOutput adds lines to batches' output streams, in one round trip.
func (b *Broker) AppendOutput(ctx context.Context, lines map[*BatchKeys][]OutLine) error {
	p := b.rdb.Pipeline()
	for k, ls := range lines {
		for _, l := range ls {
			p.XAdd(ctx, &redis.XAddArgs{Stream: k.Out, MaxLen: 100000, Approx: true,
				Values: []any{"k", string(OutText), "t", l.Task, "n", l.Name, "w", l.Worker, "l", l.Line}})
		}
	}
	_, err := p.Exec(ctx)
	return err
}

// outputBatch is how many entries a read of the output stream returns at most.
const outputBatch = 1000

// OutputReader reads one batch's output stream in order, from its first
// retained entry or from the newest one at some moment (SkipToEnd). It is the
// one reader of the stream: Follow, Lines, Wait and the CLI go through it.
type OutputReader struct {
	b    *Broker
	k    *BatchKeys
	last string // the id of the last entry read; "0": none yet
}

// OutputReader returns a reader of the batch's output from its first
// retained entry.
func (b *Broker) OutputReader(k *BatchKeys) *OutputReader {
	return &OutputReader{b: b, k: k, last: "0"}
}

// Newest returns the id of the stream's newest entry now ("" if none).
func (r *OutputReader) Newest(ctx context.Context) (string, error) {
	xs, err := r.b.rdb.XRevRangeN(ctx, r.k.Out, "+", "-", 1).Result()
	if err != nil || len(xs) == 0 {
		return "", err
	}
	return xs[0].ID, nil
}

// SkipToEnd moves the reader past the entries there are now: it reads only
// what comes after.
func (r *OutputReader) SkipToEnd(ctx context.Context) error {
	id, err := r.Newest(ctx)
	if err == nil && id != "" {
		r.last = id
	}
	return err
}

// Read returns the next entries (up to a thousand), waiting up to block for
// one to come if there is none (block 0: not waiting); none is no error.
func (r *OutputReader) Read(ctx context.Context, block time.Duration) ([]OutLine, error) {
	ls, err := r.b.ReadOutput(ctx, r.k, r.last, outputBatch, block)
	if len(ls) > 0 {
		r.last = ls[len(ls)-1].ID
	}
	return ls, err
}

// ReadOutput reads output entries after from ("0": from the start), blocking
// up to block for new ones (0: no blocking). Prefer an OutputReader; this is
// its one read, exported while cmd/rediq (being moved onto an App method)
// still calls it.
func (b *Broker) ReadOutput(ctx context.Context, k *BatchKeys, from string, count int64, block time.Duration) ([]OutLine, error) {
	args := &redis.XReadArgs{Streams: []string{k.Out, from}, Count: count, Block: block}
	if block <= 0 {
		args.Block = -1
	}
	res, err := b.rdb.XRead(ctx, args).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []OutLine
	for _, s := range res {
		for _, m := range s.Messages {
			str := func(f string) string { v, _ := m.Values[f].(string); return v }
			l := OutLine{ID: m.ID, Kind: OutKind(str("k")), Task: str("t"), Name: str("n"), Worker: str("w"), Line: str("l")}
			if ms, _, ok := strings.Cut(m.ID, "-"); ok {
				n, _ := strconv.ParseInt(ms, 10, 64)
				l.At = time.UnixMilli(n)
			}
			out = append(out, l)
		}
	}
	return out, nil
}

// AddRows appends rows to a batch table and counts them (per worker too);
// ErrNoBatch if the batch is gone.
func (b *Broker) AddRows(ctx context.Context, k *BatchKeys, table, worker string, rows [][]byte) error {
	if len(rows) == 0 {
		return nil
	}
	args := make([]any, 0, 2+len(rows))
	args = append(args, table, worker)
	for _, r := range rows {
		args = append(args, r)
	}
	n, err := b.run(ctx, batchRowsScript, k.keys(), args...).Int()
	switch {
	case err != nil:
		return fmt.Errorf("batch %d: %w", k.ID, err)
	case n < 0:
		return ErrNoBatch
	}
	return nil
}

// ReadRows reads up to limit rows of a table, newest first; pop removes them.
func (b *Broker) ReadRows(ctx context.Context, k *BatchKeys, table string, limit int, pop bool) ([][]byte, error) {
	var vals []string
	var err error
	if pop {
		vals, err = b.rdb.RPopCount(ctx, k.Table(table), limit).Result()
	} else {
		vals, err = b.rdb.LRange(ctx, k.Table(table), int64(-limit), -1).Result()
		for i, j := 0, len(vals)-1; i < j; i, j = i+1, j-1 {
			vals[i], vals[j] = vals[j], vals[i]
		}
	}
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(vals))
	for i, v := range vals {
		out[i] = []byte(v)
	}
	return out, nil
}

// BatchTables lists the names of the batch's tables, in no order.
func (b *Broker) BatchTables(ctx context.Context, k *BatchKeys) ([]string, error) {
	return b.rdb.SMembers(ctx, k.Tables).Result()
}

// RowsHeld counts the rows the batch's tables hold now: those collected less
// those a pop removed.
func (b *Broker) RowsHeld(ctx context.Context, k *BatchKeys) (int, error) {
	names, err := b.BatchTables(ctx, k)
	if err != nil || len(names) == 0 {
		return 0, err
	}
	p := b.rdb.Pipeline()
	lens := make([]*redis.IntCmd, len(names))
	for i, name := range names {
		lens[i] = p.LLen(ctx, k.Table(name))
	}
	if _, err := p.Exec(ctx); err != nil {
		return 0, err
	}
	n := 0
	for _, l := range lens {
		n += int(l.Val())
	}
	return n, nil
}
