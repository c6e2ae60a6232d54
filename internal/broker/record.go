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

// ErrNotFound means no queue of the namespace holds a task with the id.
var ErrNotFound = errors.New("task not found")

// State is where a task's id is indexed.
type State string

const (
	StatePending   State = "pending"   // in pending or recovering: a record in no other index, and not leased
	StateScheduled State = "scheduled" // in scheduled: delayed, or waiting to be retried (Retried > 0)
	StateActive    State = "active"    // leased to a worker session
	StateDead      State = "dead"
	StateFinished  State = "finished" // succeeded, cancelled or expired, and retained: see Done
)

// Record is a task's record and where it is.
type Record struct {
	Queue     string
	State     State
	Body      []byte // the message
	Session   string // StateActive: the worker session holding the lease
	Recovered int
	Due       int64 // StateScheduled: Unix ms it is due (server clock)
	Died      int64 // StateDead: Unix ms it died
	Meta      Meta
	Done      *Done // StateFinished
}

// Meta is a task's options kept beside its record (lib.lua).
type Meta struct {
	ExpireAt  int64 // Unix ms (server clock); 0: none
	Retention time.Duration
	Memo      time.Duration
	Lock      string
}

// ParseMeta reads "EXPIREAT:RETENTION:MEMO:LOCK".
func ParseMeta(v string) Meta {
	var m Meta
	f := strings.SplitN(v, ":", 4)
	if len(f) != 4 {
		return m
	}
	ms := func(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }
	m.ExpireAt, m.Retention, m.Memo, m.Lock = ms(f[0]), time.Duration(ms(f[1]))*time.Millisecond,
		time.Duration(ms(f[2]))*time.Millisecond, f[3]
	return m
}

// Done is what is kept of a finished task for its retention (NS:{Q}:done:ID).
type Done struct {
	State     DoneState
	Finished  int64
	Started   int64
	Worker    string
	Result    []byte
	Reason    string
	Retention time.Duration
}

// DoneState is how a finished task ended (the "s" field of its kept record).
type DoneState byte

const (
	DoneSucceeded DoneState = 's'
	DoneCancelled DoneState = 'c'
	DoneExpired   DoneState = 'x' // not started before its deadline
)

func parseDone(h map[string]string) *Done {
	if len(h) == 0 || h["s"] == "" {
		return nil
	}
	n := func(k string) int64 { v, _ := strconv.ParseInt(h[k], 10, 64); return v }
	d := &Done{State: DoneState(h["s"][0]), Finished: n("f"), Started: n("g"), Worker: h["w"], Reason: h["e"],
		Retention: time.Duration(n("d")) * time.Millisecond}
	if r := h["r"]; r != "" {
		d.Result = []byte(r)
	}
	return d
}

// DoneKey is the key of a finished task's kept record.
func (q *Queue) DoneKey(id string) string { return q.Prefix + "done:" + id }

// FinChannel is published when the task with the id finishes, if it has a retention.
func (q *Queue) FinChannel(id string) string { return q.Prefix + "fin:" + id }

// Find looks a task up by id in the given queues (all queues of the namespace
// when nil), in one round trip: one find.lua per queue, each O(log N), so that
// each queue's answer is one moment of the task (a settle never shows half done).
// A task in pending is found by elimination (its record, in no other index, and
// not leased): a pending list is not searched.
func (b *Broker) Find(ctx context.Context, id string, queues []string) (*Record, error) {
	if queues == nil {
		var err error
		if queues, err = b.Queues(ctx); err != nil {
			return nil, err
		}
	}
	t := b.newPipeline()
	cmds := make([]*redis.Cmd, len(queues))
	for i, n := range queues {
		q := b.Queue(n)
		cmds[i] = t.script(ctx, findScript, []string{q.Records, q.Workers, q.Recovered, q.Prefix + "meta",
			q.Pending, q.Recovering, q.Scheduled, q.Dead, q.DoneKey(id), q.legacyActive}, id, q.lease)
	}
	if err := t.exec(ctx); err != nil {
		return nil, fmt.Errorf("find task %q: %w", id, err)
	}
	for i, c := range cmds {
		r, err := parseFound(queues[i], c.Val())
		if err != nil {
			return nil, fmt.Errorf("find task %q: %w", id, err)
		}
		if r != nil {
			return r, nil
		}
	}
	return nil, ErrNotFound
}

// parseFound reads find.lua's reply: the task as queue holds it, or nil if
// queue holds nothing of it.
func parseFound(queue string, reply any) (*Record, error) {
	v, ok := reply.([]any)
	if !ok || len(v) != 9 {
		return nil, fmt.Errorf("find.lua replied %T of %d values, want 9", reply, len(v))
	}
	str := func(i int) (string, bool) { s, ok := v[i].(string); return s, ok }
	body, ok := str(0)
	if !ok {
		final, _ := v[8].([]any)
		h := make(map[string]string, len(final)/2)
		for j := 0; j+1 < len(final); j += 2 {
			k, _ := final[j].(string)
			h[k], _ = final[j+1].(string)
		}
		if d := parseDone(h); d != nil {
			return &Record{Queue: queue, Body: []byte(h["m"]), State: StateFinished, Done: d}, nil
		}
		return nil, nil
	}
	meta, _ := str(3)
	r := &Record{Queue: queue, Body: []byte(body), State: StatePending, Meta: ParseMeta(meta)}
	if n, ok := str(2); ok {
		r.Recovered, _ = strconv.Atoi(n)
	}
	score := func(i int) float64 { s, _ := str(i); f, _ := strconv.ParseFloat(s, 64); return f }
	switch {
	case v[1] != nil:
		r.State = StateActive
		r.Session, _ = str(1)
	case v[6] != nil:
		r.State = StateScheduled
		r.Due = int64(score(6))/4096 + Epoch
	case v[7] != nil:
		r.State = StateDead
		r.Died = int64(score(7))
	}
	return r, nil
}

// Exists reports which of the given queues hold a record with the id.
func (b *Broker) Exists(ctx context.Context, id string, queues []string) (string, error) {
	if len(queues) == 0 {
		return "", nil
	}
	p := b.rdb.Pipeline()
	cmds := make([]*redis.BoolCmd, len(queues))
	for i, n := range queues {
		cmds[i] = p.HExists(ctx, b.Queue(n).Records, id)
	}
	if _, err := p.Exec(ctx); err != nil {
		return "", err
	}
	for i, c := range cmds {
		if c.Val() {
			return queues[i], nil
		}
	}
	return "", nil
}

// Holder returns the queue, other than except, whose records hold id ("" if
// none), bounded by ctx like Enqueue.
func (b *Broker) Holder(ctx context.Context, id, except string) (string, error) {
	var in string
	_, err := b.await(ctx, func(sctx context.Context) error {
		sctx, p := watch(sctx)
		names, err := b.Queues(sctx)
		if err == nil {
			others := names[:0]
			for _, n := range names {
				if n != except {
					others = append(others, n)
				}
			}
			in, err = b.Exists(sctx, id, others)
		}
		if p.unsent(err) {
			return p.unreachable(err)
		}
		return err
	})
	return in, err
}
