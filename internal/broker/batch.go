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

// BatchExists reports whether the batch exists (its retention has not run out).
func (b *Broker) BatchExists(ctx context.Context, k *BatchKeys) (bool, error) {
	n, err := b.rdb.Exists(ctx, k.Info).Result()
	return n == 1, err
}

// BatchStarted reports whether the batch's task id ever started.
func (b *Broker) BatchStarted(ctx context.Context, k *BatchKeys, id string) (bool, error) {
	return b.rdb.SIsMember(ctx, k.Started, id).Result()
}

// OnComplete is the call a batch enqueues when it completes, as NewBatch
// stored it (BatchInfo.OnComplete), with the batch's retention.
type OnComplete struct {
	Call      []byte
	Retention time.Duration // 0 if not recorded
}

// OnCompleteCall returns the batch's stored OnComplete call; ok is false if it
// has none (or the batch is gone).
func (b *Broker) OnCompleteCall(ctx context.Context, k *BatchKeys) (c OnComplete, ok bool, err error) {
	vals, err := b.rdb.HMGet(ctx, k.Info, "oncomplete", "retention").Result()
	if err != nil {
		return c, false, err
	}
	raw, ok := vals[0].(string)
	if !ok {
		return c, false, nil
	}
	ret, _ := strconv.ParseInt(fmt.Sprint(vals[1]), 10, 64)
	return OnComplete{Call: []byte(raw), Retention: time.Duration(ret) * time.Millisecond}, true, nil
}

// OnCompletePending reports whether the batch completed and its OnComplete
// is still to be enqueued (until OnCompleteDone).
func (b *Broker) OnCompletePending(ctx context.Context, k *BatchKeys) (bool, error) {
	return b.rdb.HExists(ctx, k.Info, "oncomplete_pending").Result()
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

// BatchAttempt is an attempt as a batch counts it per worker.
type BatchAttempt string

const (
	AttemptNone BatchAttempt = ""
	// AttemptRan: the handler ran and succeeded; counted executed ("x:WORKER").
	AttemptRan BatchAttempt = "x"
	// AttemptFailed: the handler ran and failed; counted executed and failed.
	AttemptFailed BatchAttempt = "f"
)

// BatchEnd is how a task of a batch ended, as the batch counts it.
type BatchEnd string

const (
	EndNone      BatchEnd = "" // not ended: a retry follows
	EndSucceeded BatchEnd = "succeeded"
	EndFailed    BatchEnd = "failed" // dead
	// EndCancelled and EndDropped: cancelled; batch_note.lua counts either as
	// "cancelled" if the task ever started, else "dropped".
	EndCancelled BatchEnd = "cancelled"
	EndDropped   BatchEnd = "dropped"
	// EndUnstarted: dropped after BatchStart noted it, on its first attempt,
	// before its handler ran: it is taken out of the started set.
	EndUnstarted BatchEnd = "unstarted"
)

// BatchNoteParams is what BatchNote counts for one task.
type BatchNoteParams struct {
	Task    string
	Worker  string // "" outside a worker (an admin call)
	Attempt BatchAttempt
	End     BatchEnd
	// LastError is, for EndFailed, the error the task died with: counted
	// per error text (BatchErrors).
	LastError string
}

// BatchNote counts an attempt and an end of a task of the batch (once per
// task: the end of a task counted before is not counted again); completed
// reports whether this call completed the batch.
func (b *Broker) BatchNote(ctx context.Context, k *BatchKeys, p BatchNoteParams) (completed bool, err error) {
	n, err := b.run(ctx, batchNoteScript, k.keys(), p.Task, p.Worker, string(p.Attempt), string(p.End), p.LastError).Int()
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
