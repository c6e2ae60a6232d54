package broker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
)

// ErrLeaseLost means the session's leases were reclaimed by another worker: the
// tasks it held are (or will be) run elsewhere and it must not settle them.
var ErrLeaseLost = errors.New("lease lost")

// FetchRequest asks one queue for up to N tasks for a session. Sent again with
// the same TokenBase (after an error), it answers what the first one leased.
type FetchRequest struct {
	Queue      *Queue
	N          int
	TokenBase  uint64 // the request takes tokens TokenBase+1 … TokenBase+N; its leases name TokenBase+1
	Recovering bool   // the session may take one task from recovering
	StartNow   int    // how many of them are marked started at once
}

// Leased is one leased task.
type Leased struct {
	// Token is what its lease names, for its settlement: its fetch's
	// TokenBase+1, shared by every task of that fetch (a lease is the pair
	// of id and token).
	Token     uint64
	ID        string
	Body      []byte // read-only: it shares memory with the reply's strings; nil if the record is gone
	Recovered int    // times a worker died running it
	Started   bool   // marked started by the fetch
	// ExpiresIn is how long the task had left before its ExpireIn/ExpireAt
	// deadline when the fetch ran (by Redis's clock); < 0: no deadline. The
	// worker measures it from when it sent the fetch, which is never later
	// than when Redis ran it, so its view of the deadline is never behind.
	ExpiresIn time.Duration
}

// Fetched is one queue's answer. Err is ErrLeaseLost if the session was reclaimed.
type Fetched struct {
	Tasks   []Leased
	NextDue time.Duration // until the earliest scheduled task is due; < 0 if none
	// Recovering: recovered tasks (taken back from dead workers) still wait in
	// the queue after this fetch.
	Recovering bool
	// WaitRunner: tasks of limited flows were passed over because the request
	// had none left to start at once (StartNow): a fetch with an idle runner
	// may take them.
	WaitRunner bool
	// More: the fetch stopped looking before it had N tasks (one call is kept
	// short): more may be fetchable now.
	More   bool
	Repeat bool // the request had already run: this repeats its answer
	// Paused: the queue is paused (by PauseID; 0 if its pause was not set by
	// PauseQueue): nothing was fetched.
	Paused  bool
	PauseID int64
	Err     error
}

// fetchHeader is how many values fetch.lua answers before its tasks: status,
// next due, flags, tasks, started.
const fetchHeader = 5

// Fetch leases tasks from several queues in one round trip. With
// SetReplication, an error matching ErrNotReplicated comes with the answer:
// the leases were taken on the master, and a failover may undo them.
func (b *Broker) Fetch(ctx context.Context, session string, ttl time.Duration, reqs []FetchRequest) ([]Fetched, error) {
	out, _, err := b.SettleAndFetch(ctx, DeadRetention{}, nil, session, ttl, reqs)
	return out, err
}

// SettleAndFetch is Settle and Fetch: settlements, then fetches, in one
// round trip (either part may be empty), with one way of reading its errors.
// An error other than ErrNotReplicated means nothing is known of either part:
// both may be sent again (a settlement applied twice changes nothing the
// second time; a fetch sent again answers what it leased).
func (b *Broker) SettleAndFetch(ctx context.Context, keep DeadRetention, ss []Settlement,
	session string, ttl time.Duration, reqs []FetchRequest) (fetched []Fetched, held []bool, err error) {
	what := "settle and fetch"
	switch {
	case len(reqs) == 0:
		what = "settle"
	case len(ss) == 0:
		what = "fetch"
	}
	t := b.newTaskPipeline()
	settled := b.addSettle(ctx, t, keep, ss)
	cmds := b.addFetch(ctx, t, session, ttl, reqs)
	xerr := t.exec(ctx)
	if xerr != nil && !errors.Is(xerr, ErrNotReplicated) {
		return nil, nil, fmt.Errorf("%s: %w", what, xerr)
	}
	if held, err = settled(); err != nil {
		return nil, nil, err
	}
	if fetched, err = fetchAnswers(reqs, cmds); err != nil {
		return nil, nil, err
	}
	if xerr != nil {
		// Applied on the master: the leases and settlements hold there.
		return fetched, held, fmt.Errorf("%s: %w", what, xerr)
	}
	return fetched, held, nil
}

// addFetch adds reqs' fetch.lua calls to t.
func (b *Broker) addFetch(ctx context.Context, t *pipeline, session string, ttl time.Duration, reqs []FetchRequest) []*redis.Cmd {
	cmds := make([]*redis.Cmd, len(reqs))
	for i, r := range reqs {
		q := r.Queue
		rec := "0"
		if r.Recovering {
			rec = "1"
		}
		cmds[i] = t.script(ctx, fetchScript, q.fetchKeys(session),
			r.N, r.TokenBase, session, ttl.Milliseconds(), q.Channel, Epoch, rec, r.StartNow, q.Prefix)
	}
	return cmds
}

// fetchAnswers reads what the fetch.lua calls of reqs answered.
func fetchAnswers(reqs []FetchRequest, cmds []*redis.Cmd) ([]Fetched, error) {
	out := make([]Fetched, len(reqs))
	for i, c := range cmds {
		vals, err := c.Slice()
		if err != nil || len(vals) < 3 {
			return nil, fmt.Errorf("fetch from %q: unexpected reply %v (%v)", reqs[i].Queue.Name, vals, err)
		}
		f := &out[i]
		status, _ := vals[0].(int64)
		if status < 0 {
			f.Err = ErrLeaseLost
			continue
		}
		f.Repeat = status == 1
		if status == 2 {
			f.Paused = true
			f.PauseID, _ = vals[1].(int64)
			continue
		}
		if f.Tasks, err = leasedTasks(vals, reqs[i].TokenBase); err != nil {
			return nil, fmt.Errorf("fetch from %q: %w", reqs[i].Queue.Name, err)
		}
		f.NextDue = relative(vals[1])
		waiting, _ := vals[2].(int64)
		f.Recovering = waiting&1 != 0
		f.WaitRunner = waiting&2 != 0
		f.More = waiting&4 != 0
	}
	return out, nil
}

// leasedTasks reads the tasks of a fetch.lua answer (status 0 or 1): the
// header, two values per task, then three per task that is not plain (its
// place, recovered count, ms until its expiry); a plain task was never
// recovered and has no expiry. Or, when every task is plain, the header and
// two arrays: the ids and the messages. Every lease of a fetch names token
// base+1.
func leasedTasks(vals []any, base uint64) ([]Leased, error) {
	if len(vals) < fetchHeader {
		return nil, fmt.Errorf("unexpected reply %v", vals)
	}
	n, _ := vals[3].(int64)
	started, _ := vals[4].(int64)
	tasks := make([]Leased, max(n, 0))
	task := func(j int, id, body any) {
		tasks[j] = Leased{Token: base + 1, Started: int64(j) < started, ExpiresIn: -1}
		tasks[j].ID, _ = id.(string)
		if b, _ := body.(string); b != "" {
			tasks[j].Body = readOnlyBytes(b)
		}
	}
	if len(vals) == fetchHeader+2 {
		if ids, ok := vals[fetchHeader].([]any); ok { // two arrays: every task plain
			bodies, _ := vals[fetchHeader+1].([]any)
			if int64(len(ids)) != n || len(bodies) != len(ids) {
				return nil, fmt.Errorf("unexpected reply of %d ids and %d messages for %d tasks", len(ids), len(bodies), n)
			}
			for j := range tasks {
				task(j, ids[j], bodies[j])
			}
			return tasks, nil
		}
	}
	rest := len(vals) - fetchHeader - 2*int(n)
	if n < 0 || rest < 0 || rest%3 != 0 {
		return nil, fmt.Errorf("unexpected reply of %d values for %d tasks", len(vals), n)
	}
	for j := range tasks {
		v := vals[fetchHeader+2*j:]
		task(j, v[0], v[1])
	}
	for x := vals[fetchHeader+2*int(n):]; len(x) >= 3; x = x[3:] {
		k, _ := x[0].(int64)
		if k < 1 || k > n {
			return nil, fmt.Errorf("unexpected reply: task %d of %d", k, n)
		}
		t := &tasks[k-1]
		rec, _ := x[1].(int64)
		t.Recovered, t.ExpiresIn = int(rec), relative(x[2])
	}
	return tasks, nil
}

func relative(v any) time.Duration {
	ms, _ := v.(int64)
	if ms < 0 {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}

// Beat is one queue's heartbeat answer.
type Beat struct {
	Lost         bool          // this session was reclaimed on this queue
	Expired      []string      // sessions whose leases have expired
	NextDeadline time.Duration // until another live session's lease runs out; < 0 if none
	Held         int           // leases the session holds on the queue
	Pause        PauseState    // the queue's pause or resume
	Window       string        // the queue's run window ("" none: SetQueueWindow)
}

// Heartbeat extends the session's leases on every queue and reports expired
// sessions, in one round trip. register creates the session.
func (b *Broker) Heartbeat(ctx context.Context, session string, ttl time.Duration, register bool, queues []*Queue) ([]Beat, error) {
	reg := "0"
	if register {
		reg = "1"
	}
	t := b.newPipeline()
	cmds := make([]*redis.Cmd, len(queues))
	for i, q := range queues {
		cmds[i] = t.script(ctx, heartbeatScript, []string{q.Workers, q.Lease(session), q.legacyWorkers, q.Paused, q.pauseVer, q.Window}, session, ttl.Milliseconds(), reg)
	}
	if err := t.exec(ctx); err != nil {
		return nil, fmt.Errorf("heartbeat: %w", err)
	}
	out := make([]Beat, len(queues))
	for i, c := range cmds {
		vals, err := c.Slice()
		if err != nil || len(vals) < 5 {
			return nil, fmt.Errorf("heartbeat on %q: unexpected reply %v (%v)", queues[i].Name, vals, err)
		}
		status, _ := vals[0].(int64)
		held, _ := vals[2].(int64)
		out[i] = Beat{Lost: status < 0, NextDeadline: relative(vals[1]), Held: int(held)}
		state, _ := vals[3].(string)
		out[i].Pause = parsePauseState(state)
		out[i].Window, _ = vals[4].(string)
		for _, v := range vals[5:] {
			s, _ := v.(string)
			out[i].Expired = append(out[i].Expired, s)
		}
	}
	return out, nil
}

// Reclaim takes back everything leased to an expired session: what it had not
// marked started goes back to pending, what it had started to recovering (see
// reclaim.lua for tasks that come back unmarked twice). ok is
// false if the session was not expired (another worker got there first, or it
// came back).
func (b *Broker) Reclaim(ctx context.Context, q *Queue, session string) (prefetched, started int, ok bool, err error) {
	vals, err := b.run(ctx, reclaimScript,
		[]string{q.Workers, q.Lease(session), q.Pending, q.Recovering, q.Recovered, q.Orphaned, q.legacyWorkers, q.legacyActive},
		session, q.Channel, Epoch).Int64Slice()
	if err != nil || len(vals) != 2 {
		return 0, 0, false, fmt.Errorf("reclaim %s on %q: %v %w", session, q.Name, vals, err)
	}
	if vals[0] < 0 {
		return 0, 0, false, nil
	}
	return int(vals[0]), int(vals[1]), true, nil
}

// Leave ends the session on q, giving back any unstarted task it holds but does
// not know of. It returns how many started tasks the session still holds; if
// any, the session stays so that its leases expire and are reclaimed.
func (b *Broker) Leave(ctx context.Context, q *Queue, session string) (stranded int, err error) {
	n, err := b.run(ctx, leaveScript,
		[]string{q.Workers, q.Lease(session), q.Pending, q.Recovering, q.Recovered},
		session, q.Channel, Epoch).Int()
	if err != nil {
		return 0, fmt.Errorf("leave %q: %w", q.Name, err)
	}
	return n, nil
}

// Leases lists the leases the session holds on q, task id -> token (for
// reconciliation).
func (b *Broker) Leases(ctx context.Context, q *Queue, session string) (map[string]uint64, error) {
	m, err := b.rdb.HGetAll(ctx, q.Lease(session)).Result()
	if err != nil {
		return nil, fmt.Errorf("leases on %q: %w", q.Name, err)
	}
	out := make(map[string]uint64, len(m))
	for id, v := range m {
		if tok, _, ok := parseLease(v); ok && id != "" {
			out[id] = tok
		}
	}
	return out, nil
}

// Outcome says how a leased task is settled.
type Outcome uint8

const (
	Ack     Outcome = iota // succeeded: the record is deleted
	Retry                  // failed, to run again after Delay, with record Body
	Kill                   // failed for good: to the dead set, with record Body
	Requeue                // back to pending unrun (a stop, an unknown lease)
	Start                  // mark started (reclaim counts only started tasks)
	Cancel                 // cancelled while it ran: finished as cancelled, not retried
	Expire                 // found past its expiry when it was to start: finished as expired, unrun
)

var outcomeKind = [...]string{Ack: "a", Retry: "r", Kill: "k", Requeue: "q", Start: "s", Cancel: "c", Expire: "x"}

// Settlement settles one leased task.
type Settlement struct {
	Queue   *Queue
	Session string
	Token   uint64
	ID      string
	Outcome Outcome
	Body    []byte // Retry, Kill: the updated record
	Delay   time.Duration
	// Attempt is sent for tasks whose record is kept when they finish (a
	// retention or Memoize): when the attempt started, on which worker, and for
	// Ack its result (msgpack).
	Attempt *Attempt
}

// Attempt describes the last attempt of a finishing task.
type Attempt struct {
	Started time.Time
	Worker  string
	Result  []byte
}

// attempt encodes s.Attempt as settle.lua reads it: "" or STARTED\0WORKER\0RESULT.
func (s *Settlement) attempt() string {
	a := s.Attempt
	if a == nil {
		return ""
	}
	return strconv.FormatInt(a.Started.UnixMilli(), 10) + "\x00" + a.Worker + "\x00" + string(a.Result)
}

// plainAck reports whether s is an ack without an attempt: settle.lua's "a",
// which runs of them share as "m".
func (s *Settlement) plainAck() bool { return s.Outcome == Ack && s.Attempt == nil }

// appendArgs adds the settlement as settle.lua reads it: kind, token (tok:
// s.Token, boxed by the caller, who shares one box among the settlements of
// one fetch), id, then what the kind needs (the attempt, the delay, the
// record) and no more.
func (s *Settlement) appendArgs(args []any, tok any) []any {
	kind := outcomeKind[s.Outcome]
	switch s.Outcome {
	case Retry:
		return append(args, kind, tok, s.ID, max(s.Delay.Milliseconds(), 0), s.Body)
	case Kill:
		return append(args, kind, tok, s.ID, s.Body)
	case Ack, Cancel, Expire:
		if s.Attempt != nil {
			return append(args, strings.ToUpper(kind), tok, s.ID, s.attempt())
		}
	}
	return append(args, kind, tok, s.ID)
}

// DeadRetention bounds the dead set of every queue.
type DeadRetention struct {
	MaxAge time.Duration
	MaxLen int
}

// Settle applies settlements in one round trip: one script call per queue and
// session. held[i] reports whether settlement i applied; false means the session
// no longer held that lease (reclaimed, or already settled by an earlier run of
// the same call), and nothing changed. With SetReplication, an error matching
// ErrNotReplicated comes with held: the settlements were applied on the
// master, and a failover may undo them.
func (b *Broker) Settle(ctx context.Context, keep DeadRetention, ss []Settlement) (held []bool, err error) {
	_, held, err = b.SettleAndFetch(ctx, keep, ss, "", 0, nil)
	return held, err
}

// addSettle adds ss's settle.lua calls to t, one per queue and session; the
// function it returns reads, once t ran, which of them applied.
func (b *Broker) addSettle(ctx context.Context, t *pipeline, keep DeadRetention, ss []Settlement) func() ([]bool, error) {
	type group struct {
		q       *Queue
		session string
		keys    []string
		args    []any
		idx     []int
		cmd     *redis.Cmd
	}
	var groups []*group
	find := func(q *Queue, session string) *group {
		for _, g := range groups {
			if g.q == q && g.session == session {
				return g
			}
		}
		g := &group{q: q, session: session}
		groups = append(groups, g)
		return g
	}
	// The whole EVALSHA command of each group (scriptFull), with room for
	// three arguments per settlement of the group.
	for i := range ss {
		g := find(ss[i].Queue, ss[i].Session)
		g.idx = append(g.idx, i) // counted here, filled in order below
	}
	for _, g := range groups {
		h := g.q.headsFor(g.session, keep)
		g.keys = h.settleKeys
		g.args = append(make([]any, 0, len(h.settle)+3*len(g.idx)), h.settle...)
		g.idx = g.idx[:0]
	}
	var tok any // the last token, boxed once for the settlements that share it
	for i := 0; i < len(ss); {
		s := &ss[i]
		g := find(s.Queue, s.Session)
		if tok == nil || tok.(uint64) != s.Token {
			tok = s.Token
		}
		// Plain acks of one group and token in a row go as one "m" (settle.lua):
		// the acks of one fetch's tasks, the usual flush.
		k := i + 1
		for s.plainAck() && k < len(ss) && ss[k].plainAck() && ss[k].Token == s.Token &&
			ss[k].Queue == s.Queue && ss[k].Session == s.Session {
			k++
		}
		if k-i > 1 {
			g.args = append(g.args, "m", tok, k-i)
			for j := i; j < k; j++ {
				g.args = append(g.args, ss[j].ID)
				g.idx = append(g.idx, j)
			}
			i = k
			continue
		}
		g.args = s.appendArgs(g.args, tok)
		g.idx = append(g.idx, i)
		i++
	}
	for _, g := range groups {
		g.cmd = t.scriptFull(ctx, settleScript, g.keys, g.args)
	}
	return func() ([]bool, error) {
		if len(ss) == 0 {
			return nil, nil
		}
		held := make([]bool, len(ss))
		for _, g := range groups {
			s, err := g.cmd.Text()
			if err != nil || len(s) != len(g.idx) {
				return nil, fmt.Errorf("settle on %q: unexpected reply %q (%v)", g.q.Name, s, err)
			}
			for k, j := range g.idx {
				held[j] = s[k] == '1'
			}
		}
		return held, nil
	}
}

// readOnlyBytes returns s's bytes without copying; they must not be modified.
func readOnlyBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
