// Package broker is every line of rediq that speaks Redis: the key layout, the Lua
// scripts (scripts/*.lua, each headed with its KEYS, ARGV and reply) and the
// pipelines that carry them. docs/PROTOCOL.md describes the same layout for
// producers in other languages.
//
// Every key of a queue carries the queue's hash tag, "{name}", and every script
// touches only keys passed in KEYS, so the scripts run unchanged on Redis Cluster.
// Every script is safe to run twice with the same arguments (go-redis re-sends a
// command whose reply was lost): the second run changes nothing.
package broker

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Epoch is the origin of scheduled scores: 2025-01-01T00:00:00Z in Unix ms. With
// 41 bits of milliseconds after it, scores stay exact doubles until 2094.
const Epoch int64 = 1735689600000

// MaxDue is the latest due time a scheduled score can hold (Unix ms, in 2094).
const MaxDue = Epoch + 1<<41 - 1

// Priority bounds: a priority is stored as its slot, priority+2048, in 12 bits.
const (
	MinPriority = -2048
	MaxPriority = 2047
)

// Slot is the 12-bit form of a priority that scores carry.
func Slot(priority int) int { return priority - MinPriority }

//go:embed scripts/*.lua
var scriptFS embed.FS

// load loads script name, with the files of libs (shared functions) before it.
func load(name string, libs ...string) *redis.Script {
	var src []byte
	for _, f := range append(libs, name) {
		b, err := scriptFS.ReadFile("scripts/" + f + ".lua")
		if err != nil {
			panic(err)
		}
		src = append(append(src, b...), '\n')
	}
	return redis.NewScript(string(src))
}

var (
	enqueueScript   = load("enqueue")
	fetchScript     = load("fetch", "lib")
	heartbeatScript = load("heartbeat", "lib")
	reclaimScript   = load("reclaim", "lib")
	settleScript    = load("settle", "lib")
	cancelScript    = load("cancel", "lib")
	deleteScript    = load("delete", "lib")
	requeueScript   = load("requeue", "lib")
	leaveScript     = load("leave", "lib")
	findScript      = load("find")
	activeScript    = load("active")
)

// Broker is a namespace on one Redis (or Redis Cluster).
type Broker struct {
	rdb    redis.UniversalClient
	ns     string
	queues sync.Map // name -> *Queue
	lanes  laneIDs
	repl   Replication // task writes wait for replicas
}

// New returns a broker for namespace ns.
func New(rdb redis.UniversalClient, ns string) *Broker {
	return &Broker{rdb: rdb, ns: ns}
}

// Namespace is the key prefix.
func (b *Broker) Namespace() string { return b.ns }

// Queue holds one queue's key names.
type Queue struct {
	Name    string
	Records string // hash: task id -> message (the task's record, whatever its state)
	// Pending is NS:{Q}:pending: the name the pending lists are built from
	// (PendingList), and the zset (id -> slot*2^41 + sequence) where producers
	// of protocol version 2 still put tasks; fetch takes from it first.
	Pending string
	// PendingLanes is the zset NS:{Q}:pending:lanes: the fetchable lanes whose
	// list holds tasks (member: the lane, SLOT or SLOT|FLOW; score SLOT*2^40 + ms).
	PendingLanes string
	// PendingSlots is the zset NS:{Q}:pending:slots where producers of
	// protocol version 3 list the slots whose list holds tasks (member and
	// score: the slot); fetch merges them with the lanes by slot.
	PendingSlots string
	// PendingBlocked is the zset NS:{Q}:pending:blocked: lanes over their
	// flow's limit (member: the lane; score: ms since Epoch when fetch looks
	// again, or 2^41: until a running task of the flow ends).
	PendingBlocked string
	Scheduled      string // zset: id -> (due-Epoch)*4096 + slot
	Recovering     string // zset: id of a started task taken back from a dead worker -> slot*2^41 + ms
	Recovered      string // hash: id -> times a worker died running it
	Orphaned       string // hash: id -> times it came back unmarked from a dead worker (reclaim.lua)
	Dead           string // zset: id -> Unix ms of death
	Seq            string // the sequence of version 2's producers (their zset's order)
	Workers        string // zset NS:{Q}:sessions: session id -> lease deadline, Unix ms
	Paused         string // string NS:{Q}:paused: the standing pause's id (pause.lua)
	Window         string // string NS:{Q}:window: the queue's run window (SetQueueWindow)
	pauseAcks      string // hash NS:{Q}:pause:acks: session -> the pause id it applied
	pauseVer       string // counter NS:{Q}:pause:ver: the ids of pauses and resumes
	// Workers of the previous lease format (token -> FLAG:SLOT:ID, with the
	// NS:{Q}:active hash) registered in NS:{Q}:workers: new workers never meet
	// them there, and reclaim what such a session left when it expires.
	legacyWorkers string
	legacyActive  string
	Channel       string // pub/sub channel that wakes idle workers
	Prefix        string // NS:{Q}: — the keys the scripts build (lib.lua) start with it
	lease         string // prefix of the per-session lease hashes
	call          string // prefix of the producers' call guards
	combiner      combiner
	indexed       atomic.Bool // this process has recorded the queue in the queue index
	// heads is the start of the session's last fetch.lua and settle.lua
	// calls: a worker has one session, so its calls on the queue start alike.
	heads atomic.Pointer[callHeads]
}

// callHeads is the start of a session's fetch.lua and settle.lua calls on a
// queue, made once instead of for every call: their keys, and settle's
// whole command up to its settlements, boxed.
type callHeads struct {
	session    string
	fetchKeys  []string
	settleKeys []string
	keep       DeadRetention
	settle     []any // "evalsha", the hash, the keys, session, Epoch, channel, keep, prefix
}

// fetchKeys answers the keys of session's fetch.lua calls on q.
func (q *Queue) fetchKeys(session string) []string {
	if h := q.heads.Load(); h != nil && h.session == session {
		return h.fetchKeys
	}
	return q.headsFor(session, DeadRetention{}).fetchKeys
}

// headsFor answers q's call heads for session (and keep, settle's
// retention), made anew only when either differs from the last call's. They
// are read-only.
func (q *Queue) headsFor(session string, keep DeadRetention) *callHeads {
	if h := q.heads.Load(); h != nil && h.session == session && h.keep == keep {
		return h
	}
	lease := q.Lease(session)
	h := &callHeads{session: session, keep: keep,
		fetchKeys:  []string{q.Records, q.Pending, q.Scheduled, q.Recovering, q.Recovered, q.Workers, lease, q.Seq},
		settleKeys: []string{lease, q.Records, q.Pending, q.Scheduled, q.Dead, q.Recovered, q.Recovering, q.Orphaned},
	}
	h.settle = append(make([]any, 0, 3+len(h.settleKeys)+6), "evalsha", settleScript.Hash(), len(h.settleKeys))
	for _, k := range h.settleKeys {
		h.settle = append(h.settle, k)
	}
	h.settle = append(h.settle, session, Epoch, q.Channel, keep.MaxAge.Milliseconds(), keep.MaxLen, q.Prefix)
	q.heads.Store(h)
	return h
}

// Lease is the key of a session's lease hash on this queue: task id ->
// FLAG:TOKEN:SCORE, and "" -> the token base of the session's last fetch. A
// task is active exactly when a lease hash maps its id.
func (q *Queue) Lease(session string) string { return q.lease + session }

// PendingList is the key of the list of the tasks pending in a lane (a
// priority slot in decimal, and |FLOW for a flow's: as in PendingLanes), oldest first.
func (q *Queue) PendingList(lane string) string { return q.Pending + ":" + lane }

// ValidateQueueName reports why name cannot be a queue name, if it cannot.
func ValidateQueueName(name string) error { return validateName("queue name", name) }

// ValidateNamespace reports why ns cannot be a key namespace, if it cannot.
// The rule is a queue name's: both are parts of every key.
func ValidateNamespace(ns string) error { return validateName("namespace", ns) }

func validateName(kind, name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%s is empty", kind)
	case len(name) > 200:
		return fmt.Errorf("%s %.20q… is longer than 200 bytes", kind, name)
	case strings.ContainsAny(name, "{}:\r\n "):
		return fmt.Errorf("%s %q contains one of '{', '}', ':', a space or a line break", kind, name)
	}
	return nil
}

// Queue returns the keys of the named queue, which must be valid.
func (b *Broker) Queue(name string) *Queue {
	if q, ok := b.queues.Load(name); ok {
		return q.(*Queue)
	}
	p := b.ns + ":{" + name + "}:"
	q := &Queue{
		Name: name, Records: p + "t", Pending: p + "pending", PendingLanes: p + "pending:lanes", PendingSlots: p + "pending:slots", PendingBlocked: p + "pending:blocked", Scheduled: p + "scheduled",
		Recovering: p + "recovering", Recovered: p + "recovered", Orphaned: p + "orphaned", Dead: p + "dead",
		Seq: p + "seq", Workers: p + "sessions", Paused: p + "paused", Window: p + "window", pauseAcks: p + "pause:acks", pauseVer: p + "pause:ver", legacyWorkers: p + "workers", legacyActive: p + "active", Channel: p + "wake", lease: p + "lease:", call: p + "call:", Prefix: p,
	}
	actual, _ := b.queues.LoadOrStore(name, q)
	return actual.(*Queue)
}

func (b *Broker) indexKey() string { return b.ns + ":queues" }

// RegisterQueues records queue names in the index (workers call it at start).
func (b *Broker) RegisterQueues(ctx context.Context, names []string) error {
	args := make([]any, len(names))
	for i, n := range names {
		args[i] = n
	}
	if err := b.rdb.SAdd(ctx, b.indexKey(), args...).Err(); err != nil {
		return fmt.Errorf("register queues: %w", err)
	}
	for _, n := range names {
		b.Queue(n).indexed.Store(true)
	}
	return nil
}

// Queues lists the queue names recorded in the index, in no order.
func (b *Broker) Queues(ctx context.Context) ([]string, error) {
	names, err := b.rdb.SMembers(ctx, b.indexKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	return names, nil
}

// call is one script invocation inside a pipeline.
type call struct {
	script *redis.Script
	keys   []string
	args   []any
	cmd    *redis.Cmd
}

// pipeline is a pipeline of plain commands and scripts. Scripts go as EVALSHA; any
// that Redis does not know yet (NOSCRIPT: a restart, a new cluster node, SCRIPT
// FLUSH) did not run, so they are simply run again with their source. When the
// broker's writes wait for replicas (SetReplication), the scripts go in the
// pipelines of their nodes, each ended by WAIT (replication.go).
type pipeline struct {
	b     *Broker
	pipe  redis.Pipeliner
	calls []*call
	wait  bool    // the scripts' writes wait for replicas
	nodes []*node // with wait: the masters the scripts go to
	err   error   // a script could not be routed
}

func (b *Broker) newPipeline() *pipeline { return &pipeline{b: b, pipe: b.rdb.Pipeline()} }

// newTaskPipeline is a pipeline of task writes (enqueue, fetch, settle): with
// SetReplication, they wait for replicas. Heartbeats and the rest do not: a
// heartbeat that waited would let slow replicas expire the worker's leases.
func (b *Broker) newTaskPipeline() *pipeline {
	t := b.newPipeline()
	t.wait = b.repl.Replicas > 0
	return t
}

func (t *pipeline) script(ctx context.Context, s *redis.Script, keys []string, args ...any) *redis.Cmd {
	c := &call{script: s, keys: keys, args: args}
	t.calls = append(t.calls, c)
	if !t.wait {
		c.cmd = s.EvalSha(ctx, t.pipe, keys, args...)
		return c.cmd
	}
	n, err := t.nodeFor(ctx, keys[0])
	if err != nil {
		c.cmd = redis.NewCmd(ctx)
		c.cmd.SetErr(err)
		t.err = cmp.Or(t.err, err)
		return c.cmd
	}
	c.cmd = s.EvalSha(ctx, n.pipe, keys, args...)
	n.calls = append(n.calls, c)
	return c.cmd
}

// scriptFull is script for a call whose whole EVALSHA command the caller
// built: full is "evalsha", s's hash, len(keys), the keys, then the
// arguments. A call with many arguments (settle's, a few per task) is then
// not copied into a second slice.
func (t *pipeline) scriptFull(ctx context.Context, s *redis.Script, keys []string, full []any) *redis.Cmd {
	c := &call{script: s, keys: keys, args: full[3+len(keys):]}
	t.calls = append(t.calls, c)
	c.cmd = redis.NewCmd(ctx, full...)
	c.cmd.SetFirstKeyPos(3)
	pipe := t.pipe
	if t.wait {
		n, err := t.nodeFor(ctx, keys[0])
		if err != nil {
			c.cmd.SetErr(err)
			t.err = cmp.Or(t.err, err)
			return c.cmd
		}
		pipe = n.pipe
		n.calls = append(n.calls, c)
	}
	_ = pipe.Process(ctx, c.cmd)
	return c.cmd
}

// exec runs the pipeline and returns its first error. An error of the pipeline as a
// whole (a failed dial, a wrong password: no command carries it) is returned
// too: a pipeline never reports success for commands that did not run. With
// replication, a *ReplicationError says that every command ran but fewer
// replicas than asked confirmed the scripts' writes.
func (t *pipeline) exec(ctx context.Context) error {
	if len(t.nodes) > 0 || t.err != nil {
		return t.execReplicated(ctx)
	}
	if t.pipe.Len() == 0 {
		return nil
	}
	return t.execPipe(ctx, t.pipe, t.calls, t.b.rdb)
}

// execPipe runs pipe, whose scripts are calls, running those Redis did not
// know again with their source through client.
func (t *pipeline) execPipe(ctx context.Context, pipe redis.Pipeliner, calls []*call, client redis.Scripter) error {
	cmds, err := pipe.Exec(ctx)
	if err == nil {
		return nil
	}
	for _, c := range calls {
		if redis.HasErrorPrefix(c.cmd.Err(), "NOSCRIPT") {
			v, rerr := c.script.Eval(ctx, client, c.keys, c.args...).Result()
			c.cmd.SetVal(v)
			c.cmd.SetErr(rerr)
		}
	}
	return firstError(err, cmds)
}

// firstError is the first error of pipe's commands after Exec returned err,
// the scripts that hit NOSCRIPT having run again: NOSCRIPT itself and
// redis.Nil are no errors, and err is returned when no command carries it.
func firstError(err error, cmds []redis.Cmder) error {
	if err == nil {
		return nil
	}
	carried := false
	for _, c := range cmds {
		e := c.Err()
		if e == nil || errors.Is(e, redis.Nil) {
			continue
		}
		if e == err {
			carried = true
		}
		if !redis.HasErrorPrefix(e, "NOSCRIPT") {
			return e
		}
	}
	if !carried && !redis.HasErrorPrefix(err, "NOSCRIPT") && !errors.Is(err, redis.Nil) {
		return err
	}
	return nil
}

// run executes one script outside a pipeline (EVALSHA, falling back to EVAL).
func (b *Broker) run(ctx context.Context, s *redis.Script, keys []string, args ...any) *redis.Cmd {
	return s.Run(ctx, b.rdb, keys, args...)
}
