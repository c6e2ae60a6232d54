package broker

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

var cronFireScript = load("enqueue", "cron_claim")

// CronState is a schedule's state key: NS:{Q}:cron:ID, beside its queue's keys.
func (q *Queue) CronState(id string) string { return q.Prefix + "cron:" + id }

// CronResult is what a fire did.
type CronResult byte

const (
	CronFired   CronResult = '1' // the tick's task was enqueued
	CronExists  CronResult = '0' // its task id exists: nothing enqueued (the tick is claimed)
	CronClaimed CronResult = 'c' // the tick, or a later one, was claimed already
	CronPaused  CronResult = 'p' // the schedule is paused: the tick is claimed, nothing enqueued
	CronSkipped CronResult = 's' // overlap skip: the last task still waits or runs
)

// FireCron claims tick (Unix ms; 0 for a trigger, which claims nothing) of
// schedule id and enqueues m on q, in one script call (cron_fire: cron_claim.lua
// and enqueue.lua): a tick fires at most once however many processes fire it,
// and is never claimed without its task.
func (b *Broker) FireCron(ctx context.Context, q *Queue, id string, tick int64, skip bool, m Message) (CronResult, error) {
	t := ""
	if tick > 0 {
		t = strconv.FormatInt(tick, 10)
	}
	flags := ""
	if skip {
		flags = "s"
	}
	keys := []string{q.Records, q.Pending, q.Scheduled, q.Seq, q.Dead, q.CronState(id)}
	args := []any{q.Channel, "", Epoch, q.Prefix, m.ID, m.lane(), max(m.Delay.Milliseconds(), 0), m.Body, m.options(), t, flags}
	if !q.indexed.Load() {
		if err := b.rdb.SAdd(ctx, b.indexKey(), q.Name).Err(); err != nil {
			return 0, fmt.Errorf("fire schedule %q: %w", id, err)
		}
		q.indexed.Store(true)
	}
	s, err := b.run(ctx, cronFireScript, keys, args...).Text()
	if err != nil {
		return 0, fmt.Errorf("fire schedule %q: %w", id, err)
	}
	if s == "" {
		return 0, fmt.Errorf("fire schedule %q: empty reply", id)
	}
	return CronResult(s[0]), nil
}

// CronStatus is a schedule's state in Redis.
type CronStatus struct {
	Last     int64  // the last tick claimed (Unix ms), 0 if none
	Task     string // the last task fired
	FiredAt  int64  // when it was fired (Unix ms)
	Paused   bool
	Declared string // the declaration workers wrote (JSON), "" if none
}

// schedulesKey is the namespace's hash of schedule declarations: id -> JSON.
func (b *Broker) schedulesKey() string { return b.ns + ":schedules" }

// DeclareCron writes schedule declarations (id -> JSON) for tools that have
// no code of their own (rediq cron list).
func (b *Broker) DeclareCron(ctx context.Context, decl map[string]string) error {
	if len(decl) == 0 {
		return nil
	}
	if err := b.rdb.HSet(ctx, b.schedulesKey(), decl).Err(); err != nil {
		return fmt.Errorf("declare schedules: %w", err)
	}
	return nil
}

// DeclaredCron answers the schedule declarations workers wrote.
func (b *Broker) DeclaredCron(ctx context.Context) (map[string]string, error) {
	m, err := b.rdb.HGetAll(ctx, b.schedulesKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("read schedules: %w", err)
	}
	return m, nil
}

// CronStatuses reads the state of schedules, each on its queue.
func (b *Broker) CronStatuses(ctx context.Context, qs []*Queue, ids []string) ([]CronStatus, error) {
	p := b.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = p.HMGet(ctx, qs[i].CronState(id), "last", "task", "at", "paused")
	}
	if _, err := p.Exec(ctx); err != nil {
		return nil, fmt.Errorf("read schedules: %w", err)
	}
	out := make([]CronStatus, len(ids))
	for i, c := range cmds {
		v := c.Val()
		str := func(k int) string { s, _ := v[k].(string); return s }
		out[i].Last, _ = strconv.ParseInt(str(0), 10, 64)
		out[i].Task = str(1)
		out[i].FiredAt, _ = strconv.ParseInt(str(2), 10, 64)
		out[i].Paused = str(3) == "1"
	}
	return out, nil
}

// PauseCron pauses (or resumes) schedule id on q: its ticks are claimed and
// fire nothing while it is paused.
func (b *Broker) PauseCron(ctx context.Context, q *Queue, id string, paused bool) error {
	var err error
	if paused {
		err = b.rdb.HSet(ctx, q.CronState(id), "paused", "1").Err()
	} else {
		err = b.rdb.HDel(ctx, q.CronState(id), "paused").Err()
	}
	if err != nil {
		return fmt.Errorf("pause schedule %q: %w", id, err)
	}
	return nil
}

// ServerTime is Redis's clock.
func (b *Broker) ServerTime(ctx context.Context) (time.Time, error) {
	return b.rdb.Time(ctx).Result()
}
