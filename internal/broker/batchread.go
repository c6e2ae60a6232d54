package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// BatchState is a batch's info and counters as stored (PROTOCOL.md: the
// batch's info and stat hashes).
type BatchState struct {
	Detached   bool
	Created    time.Time
	Completed  time.Time // zero unless it completed
	StoppedAt  time.Time // zero unless it stopped
	StopReason string    // "" unless it stopped
	Enqueued   int64     // members
	Started    int64     // tasks that started at least once
	// Ends as batch_note.lua counted them; Dropped: ended before they started.
	Succeeded, Failed, Cancelled, Dropped int64
	Rows                                  int64 // table rows collected
	Workers                               map[string]*WorkerCounts
}

// WorkerCounts is one worker's share of a batch.
type WorkerCounts struct {
	Executed  int64 // attempts run (retries count again)
	Failed    int64 // attempts that failed
	Collected int64 // table rows added
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
	return parseBatch(info.Val(), stat.Val(), started.Val(), members.Val()), nil
}

func parseBatch(info, stat map[string]string, started, members int64) *BatchState {
	n := func(v string) int64 { c, _ := strconv.ParseInt(v, 10, 64); return c }
	ms := func(f string) time.Time {
		if v := n(info[f]); v != 0 {
			return time.UnixMilli(v)
		}
		return time.Time{}
	}
	s := &BatchState{Detached: info["detached"] == "1", Created: ms("created"), Completed: ms("completed"),
		StoppedAt: ms("stopped_at"), StopReason: info["stopped"], Enqueued: members, Started: started,
		Succeeded: n(stat["succeeded"]), Failed: n(stat["failed"]), Cancelled: n(stat["cancelled"]),
		Dropped: n(stat["dropped"]), Rows: n(stat["rows"]), Workers: map[string]*WorkerCounts{}}
	worker := func(w string) *WorkerCounts {
		if s.Workers[w] == nil {
			s.Workers[w] = &WorkerCounts{}
		}
		return s.Workers[w]
	}
	for f, v := range stat {
		kind, w, ok := strings.Cut(f, ":")
		if !ok {
			continue
		}
		switch kind {
		case "x": // executed: batch_note.lua's AttemptRan and AttemptFailed
			worker(w).Executed = n(v)
		case "f":
			worker(w).Failed = n(v)
		case "c":
			worker(w).Collected = n(v)
		}
	}
	return s
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
