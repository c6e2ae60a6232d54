package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
)

// ErrLeaseLost means the session's leases were reclaimed by another worker: the
// messages it held are (or will be) run elsewhere and it must not settle them.
var ErrLeaseLost = errors.New("lease lost")

// FetchRequest asks one queue for up to N messages for a session.
type FetchRequest struct {
	Queue     *Queue
	N         int
	TokenBase uint64 // the messages get tokens TokenBase+1, TokenBase+2, …
}

// Fetched is one queue's answer. Err is ErrLeaseLost if the session was reclaimed.
type Fetched struct {
	Msgs      [][]byte // read-only: they share memory with the reply's strings
	Recovered []int    // per message, times it was reclaimed from a dead session
	NextDue   int64    // Unix ms of the earliest scheduled message, 0 if none
	Err       error
}

// Fetch leases messages from several queues in one round trip.
func (b *Broker) Fetch(ctx context.Context, session string, ttl time.Duration, reqs []FetchRequest) ([]Fetched, error) {
	t := b.newBatch()
	cmds := make([]*redis.Cmd, len(reqs))
	for i, r := range reqs {
		q := r.Queue
		cmds[i] = t.script(ctx, fetchScript,
			[]string{q.Pending, q.Scheduled, q.Workers, q.Lease(session), q.Recovered, q.Seq},
			r.N, r.TokenBase, session, ttl.Milliseconds(), q.Channel, Epoch)
	}
	if err := t.exec(ctx); err != nil {
		return nil, fmt.Errorf("fetch: %w", err)
	}
	out := make([]Fetched, len(reqs))
	for i, c := range cmds {
		vals, err := c.Slice()
		if err != nil || len(vals) < 2 {
			return nil, fmt.Errorf("fetch from %q: unexpected reply %v (%v)", reqs[i].Queue.Name, vals, err)
		}
		f := &out[i]
		if vals[0].(int64) < 0 {
			f.Err = ErrLeaseLost
			continue
		}
		if due := vals[1].(int64); due > 0 {
			f.NextDue = due
		}
		n := (len(vals) - 2) / 2
		f.Msgs = make([][]byte, n)
		f.Recovered = make([]int, n)
		for j := range n {
			f.Msgs[j] = readOnlyBytes(vals[2+2*j].(string))
			f.Recovered[j] = int(vals[3+2*j].(int64))
		}
	}
	return out, nil
}

// Beat is one queue's heartbeat answer.
type Beat struct {
	Lost         bool     // this session was reclaimed on this queue
	Expired      []string // sessions whose leases have expired
	NextDeadline int64    // Unix ms when another live session's lease runs out, 0 if none
}

// Heartbeat extends the session's leases on every queue and reports expired
// sessions, in one round trip. register creates the session.
func (b *Broker) Heartbeat(ctx context.Context, session string, ttl time.Duration, register bool, queues []*Queue) ([]Beat, error) {
	reg := "0"
	if register {
		reg = "1"
	}
	t := b.newBatch()
	cmds := make([]*redis.Cmd, len(queues))
	for i, q := range queues {
		cmds[i] = t.script(ctx, heartbeatScript, []string{q.Workers}, session, ttl.Milliseconds(), reg)
	}
	if err := t.exec(ctx); err != nil {
		return nil, fmt.Errorf("heartbeat: %w", err)
	}
	out := make([]Beat, len(queues))
	for i, c := range cmds {
		vals, err := c.Slice()
		if err != nil || len(vals) < 2 {
			return nil, fmt.Errorf("heartbeat on %q: unexpected reply %v (%v)", queues[i].Name, vals, err)
		}
		out[i].Lost = vals[0].(int64) < 0
		if d := vals[1].(int64); d > 0 {
			out[i].NextDeadline = d
		}
		for _, v := range vals[2:] {
			out[i].Expired = append(out[i].Expired, v.(string))
		}
	}
	return out, nil
}

// Reclaim puts everything leased to an expired session back in pending. It
// returns how many messages went back, or -1 if the session was not expired
// (another worker got there first, or it came back).
func (b *Broker) Reclaim(ctx context.Context, q *Queue, expired string) (int, error) {
	n, err := b.run(ctx, reclaimScript, []string{q.Workers, q.Lease(expired), q.Pending, q.Recovered},
		expired, q.Channel).Int()
	if err != nil {
		return 0, fmt.Errorf("reclaim %s on %q: %w", expired, q.Name, err)
	}
	return n, nil
}

// Leave ends the session on q unless it still holds leases there; it reports
// whether the session ended.
func (b *Broker) Leave(ctx context.Context, q *Queue, session string) (bool, error) {
	n, err := b.run(ctx, leaveScript, []string{q.Workers, q.Lease(session)}, session).Int()
	if err != nil {
		return false, fmt.Errorf("leave %q: %w", q.Name, err)
	}
	return n == 1, nil
}

// Outcome says how a leased message is settled.
type Outcome uint8

const (
	Ack     Outcome = iota // done: the message is deleted
	Retry                  // scheduled again after Delay, as Body
	Kill                   // moved to the dead set, as Body
	Requeue                // back to pending as leased, never started
)

// Settlement settles one leased message.
type Settlement struct {
	Queue     *Queue
	Lease     string // the session's lease hash on Queue: Queue.Lease(session)
	Token     uint64
	Outcome   Outcome
	Leased    []byte // the message as leased; needed only if Recovered
	Recovered bool   // clear the message's recovery count
	Body      []byte // Retry, Kill: the updated message
	Slot      int    // Retry: priority slot
	Delay     time.Duration
}

// DeadRetention bounds the dead set of every queue.
type DeadRetention struct {
	MaxAge time.Duration
	MaxLen int
}

// Settle applies settlements in one round trip. The plain acks of each lease hash
// become a single HDEL. A settlement whose lease was lost changes nothing.
func (b *Broker) Settle(ctx context.Context, keep DeadRetention, ss []Settlement) error {
	t := b.newBatch()
	acks := map[string][]string{}
	var clear map[string][]string
	for i := range ss {
		s := &ss[i]
		q, lease := s.Queue, s.Lease
		tok := strconv.FormatUint(s.Token, 10)
		leased := ""
		if s.Recovered {
			leased = string(s.Leased)
		}
		switch s.Outcome {
		case Ack:
			acks[lease] = append(acks[lease], tok)
			if s.Recovered {
				if clear == nil {
					clear = map[string][]string{}
				}
				clear[q.Recovered] = append(clear[q.Recovered], leased)
			}
		case Retry:
			t.script(ctx, retryScript, []string{lease, q.Scheduled, q.Recovered},
				tok, s.Body, s.Delay.Milliseconds(), s.Slot, Epoch, q.Channel, leased)
		case Kill:
			t.script(ctx, killScript, []string{lease, q.Dead, q.Recovered},
				tok, s.Body, keep.MaxAge.Milliseconds(), keep.MaxLen, leased)
		case Requeue:
			t.script(ctx, requeueScript, []string{lease, q.Pending}, q.Channel, tok)
		}
	}
	for key, toks := range acks {
		t.pipe.HDel(ctx, key, toks...)
	}
	for key, ms := range clear {
		t.pipe.HDel(ctx, key, ms...)
	}
	if err := t.exec(ctx); err != nil {
		return fmt.Errorf("settle: %w", err)
	}
	return nil
}

// readOnlyBytes returns s's bytes without copying; they must not be modified.
func readOnlyBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
