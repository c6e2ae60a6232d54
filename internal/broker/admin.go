package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ErrActive means a worker holds the task.
var ErrActive = errors.New("task is active")

// ErrFinished means the task has finished (dead, or a retained final record).
var ErrFinished = errors.New("task has finished")

func (q *Queue) adminKeys() []string {
	return []string{q.Records, q.Pending, q.Scheduled, q.Recovering, q.Dead, q.Seq}
}

// Cancel cancels the task id of q: at once if it waits (true), or by asking the
// worker that holds it (false: its handler is cancelled, and it ends cancelled).
func (b *Broker) Cancel(ctx context.Context, q *Queue, id string) (now bool, err error) {
	s, err := b.run(ctx, cancelScript, q.adminKeys(), q.Prefix, id, q.Channel).Text()
	if err != nil {
		return false, fmt.Errorf("cancel %q: %w", id, err)
	}
	switch s {
	case "c":
		return true, nil
	case "a":
		return false, nil
	case "f":
		return false, ErrFinished
	case "n":
		return false, ErrNotFound
	}
	return false, fmt.Errorf("cancel %q: unexpected reply %q", id, s)
}

// Delete removes the task id of q, unless a worker holds it (ErrActive).
func (b *Broker) Delete(ctx context.Context, q *Queue, id string) error {
	s, err := b.run(ctx, deleteScript, q.adminKeys(), q.Prefix, id).Text()
	if err != nil {
		return fmt.Errorf("delete %q: %w", id, err)
	}
	switch s {
	case "d":
		return nil
	case "a":
		return ErrActive
	case "n":
		return ErrNotFound
	}
	return fmt.Errorf("delete %q: unexpected reply %q", id, s)
}

// Requeued is a task to run again now, with its updated record.
type Requeued struct {
	ID   string
	Slot int
	Flow string // the task's flow (Message.Flow)
	Body []byte
}

// Requeue moves dead or scheduled tasks of q to the back of their priority in
// pending, with their new records, and reports which it moved (a task no
// longer dead or scheduled is left alone).
func (b *Broker) Requeue(ctx context.Context, q *Queue, ts []Requeued) ([]bool, error) {
	if len(ts) == 0 {
		return nil, nil
	}
	args := make([]any, 0, 1+3*len(ts))
	args = append(args, q.Channel)
	for _, t := range ts {
		args = append(args, t.ID, Lane(t.Slot, t.Flow), t.Body)
	}
	s, err := b.run(ctx, requeueScript,
		[]string{q.Records, q.Pending, q.Scheduled, q.Dead, q.Seq, q.Recovered, q.Orphaned, q.Prefix + "meta"}, args...).Text()
	if err != nil {
		return nil, fmt.Errorf("requeue on %q: %w", q.Name, err)
	}
	if len(s) != len(ts) {
		return nil, fmt.Errorf("requeue on %q: unexpected reply %q", q.Name, s)
	}
	ok := make([]bool, len(ts))
	for i := range ts {
		ok[i] = s[i] == '1'
	}
	return ok, nil
}

// Listed is one task of a List page: its id, record (nil if it vanished while
// the page was read) and index score.
type Listed struct {
	ID    string
	Body  []byte
	Score float64
	Done  *Done // finished states
	Meta  Meta
}

// DueAt is, for a task listed from the scheduled index, the Unix ms it is due.
func (l *Listed) DueAt() int64 { return int64(l.Score)/4096 + Epoch }

// DiedAt is, for a task listed from the dead set, the Unix ms it died.
func (l *Listed) DiedAt() int64 { return int64(l.Score) }

// ListIndex names the index a state's tasks are listed from.
type ListIndex int

const (
	ListPending   ListIndex = iota // recovering first, then pending: the order they will run
	ListScheduled                  // by due time
	ListActive                     // in no particular order
	ListDead                       // newest first
	ListSucceeded                  // finished and retained: newest retention end first
	ListCancelled
	ListExpired
)

// List reads tasks of q from one index: offset and limit over the index, and
// the index's size. For the finished indexes, entries whose retention has run
// out are dropped first.
func (b *Broker) List(ctx context.Context, q *Queue, idx ListIndex, offset, limit int) ([]Listed, int, error) {
	var ids []string
	var scores []float64
	var total int
	add := func(zs []redisZ) {
		for _, z := range zs {
			ids = append(ids, z.member)
			scores = append(scores, z.score)
		}
	}
	switch idx {
	case ListPending:
		nRec, err := b.rdb.ZCard(ctx, q.Recovering).Result()
		if err != nil {
			return nil, 0, err
		}
		parts, err := b.pendingOf(ctx, []*Queue{q})
		if err != nil {
			return nil, 0, err
		}
		total = int(nRec + parts[0].total())
		if offset < int(nRec) {
			zs, err := b.zrange(ctx, q.Recovering, offset, min(offset+limit, int(nRec))-1, false)
			if err != nil {
				return nil, 0, err
			}
			add(zs)
		}
		if rest := limit - len(ids); rest > 0 {
			from := max(offset-int(nRec), 0)
			zs, err := b.listPending(ctx, q, parts[0], from, rest)
			if err != nil {
				return nil, 0, err
			}
			add(zs)
		}
	case ListActive:
		all, err := b.Active(ctx, []*Queue{q})
		if err != nil {
			return nil, 0, err
		}
		total = len(all[0])
		for _, l := range all[0][min(offset, total):min(offset+limit, total)] {
			ids = append(ids, l.ID)
			scores = append(scores, 0)
		}
	default:
		key, rev := q.Scheduled, false
		switch idx {
		case ListDead:
			key, rev = q.Dead, true
		case ListSucceeded:
			key, rev = q.Prefix+"succeeded", true
		case ListCancelled:
			key, rev = q.Prefix+"cancelled", true
		case ListExpired:
			key, rev = q.Prefix+"expired", true
		}
		if idx >= ListSucceeded {
			if err := b.pruneFinished(ctx, key); err != nil {
				return nil, 0, err
			}
		}
		n, err := b.rdb.ZCard(ctx, key).Result()
		if err != nil {
			return nil, 0, err
		}
		total = int(n)
		zs, err := b.zrange(ctx, key, offset, offset+limit-1, rev)
		if err != nil {
			return nil, 0, err
		}
		add(zs)
	}
	out, err := b.withRecords(ctx, q, idx, ids, scores)
	return out, total, err
}

// indexKey is the zset of a scheduled, dead or finished index.
func (q *Queue) indexKey(idx ListIndex) (string, bool) {
	switch idx {
	case ListScheduled:
		return q.Scheduled, true
	case ListDead:
		return q.Dead, true
	case ListSucceeded:
		return q.Prefix + "succeeded", true
	case ListCancelled:
		return q.Prefix + "cancelled", true
	case ListExpired:
		return q.Prefix + "expired", true
	}
	return "", false
}

// ListByScore lists the entries of a zset index (scheduled, dead or finished)
// with min <= score <= max in ascending order of score, up to limit of them
// (0: all), with their records. min and max are Redis score bounds: "-inf",
// "(123" for an exclusive one. Paging by score, not by offset, neither skips
// nor repeats an entry when others come and go ahead of it.
func (b *Broker) ListByScore(ctx context.Context, q *Queue, idx ListIndex, min, max string, limit int) ([]Listed, error) {
	key, ok := q.indexKey(idx)
	if !ok {
		return nil, fmt.Errorf("list %q: index %d is not ordered by score", q.Name, idx)
	}
	zs, err := b.rdb.ZRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{Min: min, Max: max, Count: int64(limit)}).Result()
	if err != nil {
		return nil, fmt.Errorf("list %q: %w", q.Name, err)
	}
	ids, scores := make([]string, len(zs)), make([]float64, len(zs))
	for i, z := range zs {
		ids[i], _ = z.Member.(string)
		scores[i] = z.Score
	}
	return b.withRecords(ctx, q, idx, ids, scores)
}

// LastScore answers the highest score in a zset index, and false if it is empty.
func (b *Broker) LastScore(ctx context.Context, q *Queue, idx ListIndex) (float64, bool, error) {
	key, ok := q.indexKey(idx)
	if !ok {
		return 0, false, fmt.Errorf("list %q: index %d is not ordered by score", q.Name, idx)
	}
	zs, err := b.rdb.ZRangeWithScores(ctx, key, -1, -1).Result()
	if err != nil || len(zs) == 0 {
		return 0, false, err
	}
	return zs[0].Score, true, nil
}

// withRecords answers ids with their scores and what idx keeps of them:
// final records for the finished indexes, records and meta for the others.
func (b *Broker) withRecords(ctx context.Context, q *Queue, idx ListIndex, ids []string, scores []float64) ([]Listed, error) {
	out := make([]Listed, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	p := b.rdb.Pipeline()
	var bodies, metas *redis.SliceCmd
	var dones []*redis.MapStringStringCmd
	if idx >= ListSucceeded {
		for _, id := range ids {
			dones = append(dones, p.HGetAll(ctx, q.DoneKey(id)))
		}
	} else {
		bodies = p.HMGet(ctx, q.Records, ids...)
		metas = p.HMGet(ctx, q.Prefix+"meta", ids...)
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, fmt.Errorf("list %q: %w", q.Name, err)
	}
	for i, id := range ids {
		l := Listed{ID: id, Score: scores[i]}
		if dones != nil {
			l.Done = parseDone(dones[i].Val())
			if l.Done != nil {
				l.Body = []byte(dones[i].Val()["m"])
			}
		} else {
			if s, ok := bodies.Val()[i].(string); ok {
				l.Body = []byte(s)
			}
			if s, ok := metas.Val()[i].(string); ok {
				l.Meta = ParseMeta(s)
			}
		}
		out[i] = l
	}
	return out, nil
}

// pruneFinished drops the entries of a finished index whose retention has
// ended (their records expired by themselves), by the server's clock.
func (b *Broker) pruneFinished(ctx context.Context, key string) error {
	t, err := b.rdb.Time(ctx).Result()
	if err != nil {
		return err
	}
	return b.rdb.ZRemRangeByScore(ctx, key, "-inf", fmt.Sprint(t.UnixMilli())).Err()
}

// Scan calls f with the records of every task in q's scheduled set, a thousand
// at a time (for the states that share it: scheduled and retry).
func (b *Broker) Scan(ctx context.Context, q *Queue, f func([]Listed) error) error {
	for off := 0; ; off += 1000 {
		page, _, err := b.List(ctx, q, ListScheduled, off, 1000)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		if err := f(page); err != nil {
			return err
		}
		if len(page) < 1000 {
			return nil
		}
	}
}

// DeadIDs returns up to n of q's dead task ids from offset, oldest first, with records.
func (b *Broker) DeadIDs(ctx context.Context, q *Queue, offset, n int) ([]Listed, error) {
	zs, err := b.zrange(ctx, q.Dead, offset, offset+n-1, false)
	if err != nil || len(zs) == 0 {
		return nil, err
	}
	ids := make([]string, len(zs))
	for i, z := range zs {
		ids[i] = z.member
	}
	vals, err := b.rdb.HMGet(ctx, q.Records, ids...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]Listed, 0, len(ids))
	for i, id := range ids {
		s, _ := vals[i].(string)
		out = append(out, Listed{ID: id, Body: []byte(s), Score: zs[i].score})
	}
	return out, nil
}

type redisZ struct {
	member string
	score  float64
}

func (b *Broker) zrange(ctx context.Context, key string, start, stop int, rev bool) ([]redisZ, error) {
	if stop < start {
		return nil, nil
	}
	var zs []redis.Z
	var err error
	if rev {
		zs, err = b.rdb.ZRevRangeWithScores(ctx, key, int64(start), int64(stop)).Result()
	} else {
		zs, err = b.rdb.ZRangeWithScores(ctx, key, int64(start), int64(stop)).Result()
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", strings.TrimPrefix(key, b.ns+":"), err)
	}
	out := make([]redisZ, len(zs))
	for i, z := range zs {
		m, _ := z.Member.(string)
		out[i] = redisZ{m, z.Score}
	}
	return out, nil
}

// DeadCount is how many tasks the queue's dead set holds.
func (b *Broker) DeadCount(ctx context.Context, q *Queue) (int64, error) {
	return b.rdb.ZCard(ctx, q.Dead).Result()
}

// Memoized returns the result a Memoize task cached for the arguments whose
// digest is given (the digest of its lock); ok is false if none is cached.
func (b *Broker) Memoized(ctx context.Context, q *Queue, digest string) (result []byte, ok bool, err error) {
	raw, err := b.rdb.Get(ctx, q.Prefix+"memo:"+digest).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return raw, true, nil
}

// Holders returns the worker session holding each of the ids of q that is active.
func (b *Broker) Holders(ctx context.Context, q *Queue, ids []string) (map[string]string, error) {
	out := map[string]string{}
	if len(ids) == 0 {
		return out, nil
	}
	all, err := b.Active(ctx, []*Queue{q})
	if err != nil {
		return nil, err
	}
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	for _, l := range all[0] {
		if want[l.ID] {
			out[l.ID] = l.Session
		}
	}
	return out, nil
}

// CancelRequested reports, for each of the ids of q, whether its cancellation
// was requested (NS:{Q}:cancels).
func (b *Broker) CancelRequested(ctx context.Context, q *Queue, ids []string) ([]bool, error) {
	vals, err := b.rdb.HMGet(ctx, q.Prefix+"cancels", ids...).Result()
	if err != nil {
		return nil, err
	}
	out := make([]bool, len(ids))
	for i, v := range vals {
		out[i] = v != nil
	}
	return out, nil
}

// RequestCancel records a cancel request with its reason for a task the caller's
// session holds (a stopped batch's), so that its settle "c" applies.
func (b *Broker) RequestCancel(ctx context.Context, q *Queue, id, reason string) error {
	return b.rdb.HSet(ctx, q.Prefix+"cancels", id, reason).Err()
}

// AttemptStarted reads the lease of active task id of q: started is true once
// its handler has started, false while it waits in its worker's prefetch
// buffer; held is false if no lease holds it (not active, or ended meanwhile).
func (b *Broker) AttemptStarted(ctx context.Context, q *Queue, id string) (started, held bool, err error) {
	all, err := b.Active(ctx, []*Queue{q})
	if err != nil {
		return false, false, err
	}
	for _, l := range all[0] {
		if l.ID == id {
			return l.Started, true, nil
		}
	}
	return false, false, nil
}
