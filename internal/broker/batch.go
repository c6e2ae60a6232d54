package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNoBatch means no batch with the id exists (it never did, or its
// retention ran out).
var ErrNoBatch = errors.New("no such batch")

// BatchKeys names one batch's keys: NS:{b:N}:… (the tag cannot be a queue's:
// queue names have no ':').
type BatchKeys struct {
	ID                                                      int64
	Info, Stat, Started, Ended, Out, Alive, Tables, Members string
	prefix                                                  string
}

// Batch returns the keys of batch id.
func (b *Broker) Batch(id int64) *BatchKeys {
	p := b.ns + ":{b:" + strconv.FormatInt(id, 10) + "}:"
	return &BatchKeys{ID: id, Info: p + "info", Stat: p + "stat", Started: p + "started", Ended: p + "ended",
		Out: p + "out", Alive: p + "alive", Tables: p + "tables", Members: p + "members", prefix: p}
}

// Errors is the key of the batch's error counts (error text -> tasks that died with it).
func (k *BatchKeys) Errors() string { return k.prefix + "errors" }

// ErrorIDs is the key of the hash of error text → JSON array of the ids of
// the first tasks (up to ten) that died with it.
func (k *BatchKeys) ErrorIDs() string { return k.prefix + "errids" }

// Table is the key of one of the batch's tables.
func (k *BatchKeys) Table(name string) string { return k.prefix + "tbl:" + name }

func (k *BatchKeys) keys() []string {
	return []string{k.Info, k.Stat, k.Started, k.Ended, k.Out, k.Alive, k.Tables, k.Members}
}

func (b *Broker) batchIndex() string { return b.ns + ":batches" }

var (
	batchStartScript = load("batch_start", "batchlib")
	batchNoteScript  = load("batch_note", "batchlib")
	batchSealScript  = load("batch_seal", "batchlib")
	batchStopScript  = load("batch_stop", "batchlib")
	batchRowsScript  = load("batch_rows", "batchlib")
	batchCompScript  = load("batch_complete", "batchlib")
)

// BatchInfo is how a batch was opened.
type BatchInfo struct {
	Detached   bool
	KeepAlive  time.Duration
	Retention  time.Duration
	OnComplete []byte // an encoded call (root package's format), nil if none
}

// NewBatch numbers a new batch (INCR NS:batches:seq) and records it.
func (b *Broker) NewBatch(ctx context.Context, in BatchInfo) (*BatchKeys, error) {
	id, err := b.rdb.Incr(ctx, b.ns+":batches:seq").Result()
	if err != nil {
		return nil, fmt.Errorf("new batch: %w", err)
	}
	k := b.Batch(id)
	now := time.Now().UnixMilli()
	detached := "0"
	if in.Detached {
		detached = "1"
	}
	p := b.rdb.TxPipeline()
	p.HSet(ctx, k.Info, "created", now, "detached", detached, "keepalive", in.KeepAlive.Milliseconds(),
		"retention", in.Retention.Milliseconds(), "sealed", "0")
	if in.OnComplete != nil {
		p.HSet(ctx, k.Info, "oncomplete", in.OnComplete)
	}
	// The producer holds the batch: a keep-alive batch stops without it, a
	// detached one may complete without it.
	p.Set(ctx, k.Alive, now, in.KeepAlive)
	if _, err := p.Exec(ctx); err != nil {
		return nil, fmt.Errorf("new batch %d: %w", id, err)
	}
	// The index has no tag (it spans batches): its own command.
	if err := b.rdb.ZAdd(ctx, b.batchIndex(), redis.Z{Score: float64(id), Member: id}).Err(); err != nil {
		return nil, fmt.Errorf("new batch %d: %w", id, err)
	}
	return k, nil
}

// KeepAlive renews the batch's producer key (its producer holds the batch).
// held is false if the key had lapsed: the batch was stopped (keep-alive) or
// may have completed (detached) without its producer, which must add nothing
// more; the key is not made again.
func (b *Broker) KeepAlive(ctx context.Context, k *BatchKeys, ttl time.Duration) (held bool, err error) {
	return b.rdb.SetXX(ctx, k.Alive, time.Now().UnixMilli(), ttl).Result()
}

// AddMembers records tasks enqueued in the batch (a set: counting twice
// changes nothing).
func (b *Broker) AddMembers(ctx context.Context, k *BatchKeys, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	vals := make([]any, len(ids))
	for i, id := range ids {
		vals[i] = id
	}
	return b.rdb.SAdd(ctx, k.Members, vals...).Err()
}

// Unended returns the batch's members whose end is not counted.
func (b *Broker) Unended(ctx context.Context, k *BatchKeys) ([]string, error) {
	return b.rdb.SDiff(ctx, k.Members, k.Ended).Result()
}

// Running returns the ids of the batch's tasks that started and have not ended
// (running, or waiting for a retry).
func (b *Broker) Running(ctx context.Context, k *BatchKeys) ([]string, error) {
	return b.rdb.SDiff(ctx, k.Started, k.Ended).Result()
}

// OnCompleteDone clears the batch's pending-OnComplete flag.
func (b *Broker) OnCompleteDone(ctx context.Context, k *BatchKeys) error {
	return b.rdb.HDel(ctx, k.Info, "oncomplete_pending").Err()
}

// BatchStart asks whether a task of the batch may start; "" means yes, else
// the reason it may not (the batch was stopped).
func (b *Broker) BatchStart(ctx context.Context, k *BatchKeys, id string) (stopped string, err error) {
	s, err := b.run(ctx, batchStartScript, k.keys(), id).Text()
	if err != nil {
		return "", fmt.Errorf("batch %d: %w", k.ID, err)
	}
	if s == "1" {
		return "", nil
	}
	return strings.TrimPrefix(s, "0:"), nil
}

// BatchNote counts an attempt ("x" succeeded, "f" failed, "" none) and an end
// ("succeeded", "failed", "cancelled", or "" none); completed reports whether
// this call completed the batch.
func (b *Broker) BatchNote(ctx context.Context, k *BatchKeys, id, worker, attempt, end, lastErr string) (completed bool, err error) {
	n, err := b.run(ctx, batchNoteScript, k.keys(), id, worker, attempt, end, lastErr).Int()
	if err != nil {
		return false, fmt.Errorf("batch %d: %w", k.ID, err)
	}
	return n == 1, nil
}

// SealBatch says no task will be added; completed reports whether the batch
// completed with it.
func (b *Broker) SealBatch(ctx context.Context, k *BatchKeys) (completed bool, err error) {
	n, err := b.run(ctx, batchSealScript, k.keys()).Int()
	if err != nil {
		return false, fmt.Errorf("batch %d: %w", k.ID, err)
	}
	return n == 1, nil
}

// CompleteBatch completes the batch if no task will be added to it (sealed,
// or detached and its producer's keep-alive key gone) and every task of it
// has ended; completed reports whether this call did it.
func (b *Broker) CompleteBatch(ctx context.Context, k *BatchKeys) (completed bool, err error) {
	n, err := b.run(ctx, batchCompScript, k.keys()).Int()
	if err != nil {
		return false, fmt.Errorf("batch %d: %w", k.ID, err)
	}
	return n == 1, nil
}

// StopBatch stops a batch; stopped is false if it had stopped or completed.
func (b *Broker) StopBatch(ctx context.Context, k *BatchKeys, reason string) (stopped bool, err error) {
	n, err := b.run(ctx, batchStopScript, k.keys(), reason).Int()
	switch {
	case err != nil:
		return false, fmt.Errorf("batch %d: %w", k.ID, err)
	case n < 0:
		return false, ErrNoBatch
	}
	return n == 1, nil
}

// BatchState is a batch's info and counters as stored.
type BatchState struct {
	Info     map[string]string
	Stat     map[string]string
	Started  int64
	Enqueued int64
}

// ReadBatch reads a batch's info and counters in one round trip.
func (b *Broker) ReadBatch(ctx context.Context, k *BatchKeys) (*BatchState, error) {
	p := b.rdb.Pipeline()
	info, stat, started, members := p.HGetAll(ctx, k.Info), p.HGetAll(ctx, k.Stat), p.SCard(ctx, k.Started), p.SCard(ctx, k.Members)
	if _, err := p.Exec(ctx); err != nil {
		return nil, fmt.Errorf("batch %d: %w", k.ID, err)
	}
	if len(info.Val()) == 0 {
		return nil, ErrNoBatch
	}
	return &BatchState{Info: info.Val(), Stat: stat.Val(), Started: started.Val(), Enqueued: members.Val()}, nil
}

// LatestBatches returns the ids of the n newest batches that still exist.
func (b *Broker) LatestBatches(ctx context.Context, n int) ([]int64, error) {
	var out []int64
	for off := int64(0); len(out) < n; off += int64(n) {
		ids, err := b.rdb.ZRevRange(ctx, b.batchIndex(), off, off+int64(n)-1).Result()
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			break
		}
		p := b.rdb.Pipeline()
		exists := make([]*redis.IntCmd, len(ids))
		for i, s := range ids {
			id, _ := strconv.ParseInt(s, 10, 64)
			exists[i] = p.Exists(ctx, b.Batch(id).Info)
		}
		if _, err := p.Exec(ctx); err != nil {
			return nil, err
		}
		var gone []any
		for i, s := range ids {
			id, _ := strconv.ParseInt(s, 10, 64)
			if exists[i].Val() == 1 {
				if len(out) < n {
					out = append(out, id)
				}
			} else {
				gone = append(gone, s)
			}
		}
		if len(gone) > 0 { // retention over: drop them from the index
			if err := b.rdb.ZRem(ctx, b.batchIndex(), gone...).Err(); err != nil {
				return nil, err
			}
			off -= int64(len(gone))
		}
	}
	return out, nil
}

// OutLine is one entry of a batch's output stream.
type OutLine struct {
	ID     string // stream entry id
	Kind   string // "l" a line, "e" the end of the batch (completed or stopped)
	Task   string
	Name   string
	Worker string
	Line   string
	At     time.Time
}

// AppendOutput adds lines to batches' output streams, in one round trip.
func (b *Broker) AppendOutput(ctx context.Context, lines map[*BatchKeys][]OutLine) error {
	p := b.rdb.Pipeline()
	for k, ls := range lines {
		for _, l := range ls {
			p.XAdd(ctx, &redis.XAddArgs{Stream: k.Out, MaxLen: 100000, Approx: true,
				Values: []any{"k", "l", "t", l.Task, "n", l.Name, "w", l.Worker, "l", l.Line}})
		}
	}
	_, err := p.Exec(ctx)
	return err
}

// ReadOutput reads output entries after from ("0": from the start), blocking
// up to block for new ones (0: no blocking).
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
			l := OutLine{ID: m.ID, Kind: str("k"), Task: str("t"), Name: str("n"), Worker: str("w"), Line: str("l")}
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

// ErrorCount is how many of a batch's tasks died with one error, and the ids
// of the first of them (up to ten).
type ErrorCount struct {
	Tasks int
	IDs   []string
}

// BatchErrors returns the errors the batch's dead tasks died with, how many
// of each and some of their ids, in one round trip.
func (b *Broker) BatchErrors(ctx context.Context, k *BatchKeys) (map[string]ErrorCount, error) {
	p := b.rdb.Pipeline()
	counts, ids := p.HGetAll(ctx, k.Errors()), p.HGetAll(ctx, k.ErrorIDs())
	if _, err := p.Exec(ctx); err != nil {
		return nil, err
	}
	out := make(map[string]ErrorCount, len(counts.Val()))
	for e, v := range counts.Val() {
		c := ErrorCount{}
		c.Tasks, _ = strconv.Atoi(v)
		// A batch counted before ids were kept has none: an empty list.
		_ = json.Unmarshal([]byte(ids.Val()[e]), &c.IDs)
		out[e] = c
	}
	return out, nil
}

// Swept is what SweepBatches did.
type Swept struct {
	Stopped int // keep-alive batches stopped: their producer went away
	// Batches that completed in the sweep (detached ones whose producer went
	// away after their last task ended), and completed ones whose OnComplete
	// is still pending: the caller enqueues their OnComplete.
	OnComplete []*BatchKeys
}

// SweepBatches looks at the newest n batches for ends nobody else would
// notice. A keep-alive batch whose producer's keep-alive has lapsed and that
// has not ended is stopped (every task had ended, or none was fetched, so no
// worker would). A detached batch whose producer's keep-alive has lapsed is
// completed if every task of it has ended (its last end was counted while
// the producer still held it). Completed batches whose OnComplete is pending
// are returned for it to be enqueued.
func (b *Broker) SweepBatches(ctx context.Context, n int) (Swept, error) {
	var sw Swept
	ids, err := b.rdb.ZRevRange(ctx, b.batchIndex(), 0, int64(n)-1).Result()
	if err != nil || len(ids) == 0 {
		return sw, err
	}
	p := b.rdb.Pipeline()
	type probe struct {
		k              *BatchKeys
		info           *redis.SliceCmd
		alive          *redis.IntCmd
		ended, members *redis.IntCmd
	}
	ps := make([]probe, len(ids))
	for i, s := range ids {
		id, _ := strconv.ParseInt(s, 10, 64)
		k := b.Batch(id)
		// ended and members: a detached batch is worth a script call only
		// when all its tasks have ended.
		ps[i] = probe{k, p.HMGet(ctx, k.Info, "detached", "completed", "stopped", "oncomplete_pending"), p.Exists(ctx, k.Alive),
			p.SCard(ctx, k.Ended), p.SCard(ctx, k.Members)}
	}
	if _, err := p.Exec(ctx); err != nil {
		return sw, err
	}
	var errs []error
	for _, pr := range ps {
		v := pr.info.Val()
		if len(v) != 4 || v[0] == nil {
			continue // gone
		}
		switch {
		case v[1] != nil && v[3] != nil: // completed, OnComplete pending
			sw.OnComplete = append(sw.OnComplete, pr.k)
		case v[1] != nil || v[2] != nil || pr.alive.Val() == 1: // ended, or held by its producer
		case v[0] == "1":
			if pr.ended.Val() < pr.members.Val() {
				continue // tasks still to end: the last one's note completes it
			}
			done, err := b.CompleteBatch(ctx, pr.k)
			if err != nil {
				errs = append(errs, err) // the other batches are swept still
				continue
			}
			if done {
				sw.OnComplete = append(sw.OnComplete, pr.k)
			}
		default:
			ok, err := b.StopBatch(ctx, pr.k, "its producer stopped sending keep-alives")
			if err != nil && !errors.Is(err, ErrNoBatch) {
				errs = append(errs, err)
				continue
			}
			if ok {
				sw.Stopped++
			}
		}
	}
	return sw, errors.Join(errs...)
}

// RowsHeld counts the rows the batch's tables hold now: those collected less
// those a pop removed.
func (b *Broker) RowsHeld(ctx context.Context, k *BatchKeys) (int, error) {
	names, err := b.rdb.SMembers(ctx, k.Tables).Result()
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
