// Package broker is every line of rediq that speaks Redis: the key layout, the Lua
// scripts (scripts/*.lua, each headed with its KEYS, ARGV and reply) and the
// pipelines that carry them. docs/PROTOCOL.md describes the same layout for
// producers in other languages.
//
// Every key of a queue carries the queue's hash tag, "{name}", and every script
// touches only keys passed in KEYS, so the scripts run unchanged on Redis Cluster.
package broker

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Epoch is the origin of scheduled scores: 2025-01-01T00:00:00Z in Unix ms. With
// 41 bits of milliseconds after it, scores stay exact doubles until 2094.
const Epoch int64 = 1735689600000

// Priority bounds: a priority is stored as its slot, priority+2048, in 12 bits.
const (
	MinPriority = -2048
	MaxPriority = 2047
)

// Slot is the 12-bit form of a priority that scores carry.
func Slot(priority int) int { return priority - MinPriority }

//go:embed scripts/*.lua
var scriptFS embed.FS

func load(name string) *redis.Script {
	src, err := scriptFS.ReadFile("scripts/" + name + ".lua")
	if err != nil {
		panic(err)
	}
	return redis.NewScript(string(src))
}

var (
	enqueueScript   = load("enqueue")
	scheduleScript  = load("schedule")
	fetchScript     = load("fetch")
	heartbeatScript = load("heartbeat")
	reclaimScript   = load("reclaim")
	retryScript     = load("retry")
	killScript      = load("kill")
	requeueScript   = load("requeue")
	leaveScript     = load("leave")
)

// Broker is a namespace on one Redis (or Redis Cluster).
type Broker struct {
	rdb    redis.UniversalClient
	ns     string
	queues sync.Map // name -> *Queue
}

// New returns a broker for namespace ns.
func New(rdb redis.UniversalClient, ns string) *Broker {
	return &Broker{rdb: rdb, ns: ns}
}

// Client is the Redis client the broker uses.
func (b *Broker) Client() redis.UniversalClient { return b.rdb }

// Namespace is the key prefix.
func (b *Broker) Namespace() string { return b.ns }

// Queue holds one queue's key names.
type Queue struct {
	Name      string
	Pending   string // zset: message -> slot*2^41 + sequence
	Scheduled string // zset: message -> (due-Epoch)*4096 + slot
	Dead      string // zset: message (with its error) -> Unix ms of death
	Seq       string // counter giving FIFO order within a priority
	Workers   string // zset: session id -> lease deadline, Unix ms
	Recovered string // hash: message -> times reclaimed from a dead session
	Channel   string // pub/sub channel that wakes idle workers
	lease     string // prefix of the per-session lease hashes
	combiner  combiner
	indexed   atomic.Bool // this process has recorded the queue in the queue index
}

// Lease is the key of a session's lease hash on this queue.
func (q *Queue) Lease(session string) string { return q.lease + session }

// ValidateQueueName reports why name cannot be a queue name, if it cannot.
func ValidateQueueName(name string) error {
	switch {
	case name == "":
		return errors.New("queue name is empty")
	case len(name) > 200:
		return fmt.Errorf("queue name %.20q… is longer than 200 bytes", name)
	case strings.ContainsAny(name, "{}:\r\n "):
		return fmt.Errorf("queue name %q contains one of '{', '}', ':', a space or a line break", name)
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
		Name: name, Pending: p + "pending", Scheduled: p + "scheduled", Dead: p + "dead",
		Seq: p + "seq", Workers: p + "workers", Recovered: p + "recovered",
		Channel: p + "wake", lease: p + "lease:",
	}
	actual, _ := b.queues.LoadOrStore(name, q)
	return actual.(*Queue)
}

func (b *Broker) indexKey() string { return b.ns + ":queues" }

// remember records q in the namespace's queue index the first time this process
// uses it; the index lives outside every queue's slot, so it is its own command.
func (b *Broker) remember(ctx context.Context, p redis.Pipeliner, q *Queue) {
	if !q.indexed.Load() {
		p.SAdd(ctx, b.indexKey(), q.Name)
	}
}

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

// batch is a pipeline of plain commands and scripts. Scripts go as EVALSHA; any
// that Redis does not know yet (NOSCRIPT: a restart, a new cluster node, SCRIPT
// FLUSH) did not run, so they are simply run again with their source.
type batch struct {
	b     *Broker
	pipe  redis.Pipeliner
	calls []*call
}

func (b *Broker) newBatch() *batch { return &batch{b: b, pipe: b.rdb.Pipeline()} }

func (t *batch) script(ctx context.Context, s *redis.Script, keys []string, args ...any) *redis.Cmd {
	c := &call{script: s, keys: keys, args: args}
	c.cmd = s.EvalSha(ctx, t.pipe, keys, args...)
	t.calls = append(t.calls, c)
	return c.cmd
}

func (t *batch) exec(ctx context.Context) error {
	if t.pipe.Len() == 0 {
		return nil
	}
	cmds, err := t.pipe.Exec(ctx)
	if err == nil {
		return nil
	}
	for _, c := range t.calls {
		if redis.HasErrorPrefix(c.cmd.Err(), "NOSCRIPT") {
			v, rerr := c.script.Eval(ctx, t.b.rdb, c.keys, c.args...).Result()
			c.cmd.SetVal(v)
			c.cmd.SetErr(rerr)
		}
	}
	for _, c := range cmds {
		if e := c.Err(); e != nil && !errors.Is(e, redis.Nil) {
			return e
		}
	}
	return nil
}

// run executes one script outside a pipeline (EVALSHA, falling back to EVAL).
func (b *Broker) run(ctx context.Context, s *redis.Script, keys []string, args ...any) *redis.Cmd {
	return s.Run(ctx, b.rdb, keys, args...)
}

// Message is a message bound for a queue with its priority slot.
type Message struct {
	Slot  int
	Delay time.Duration // > 0: scheduled that long after the server's clock
	Body  []byte
}

// Enqueue adds messages to queue q in one round trip. Messages without a delay go
// to pending in order; the others to scheduled.
func (b *Broker) Enqueue(ctx context.Context, q *Queue, msgs []Message) error {
	// Large batches are split so that no single script blocks Redis for long.
	const chunk = 1000
	t := b.newBatch()
	b.remember(ctx, t.pipe, q)
	var now, later []any
	flush := func() {
		if len(now) > 0 {
			t.script(ctx, enqueueScript, []string{q.Pending, q.Seq}, append([]any{q.Channel}, now...)...)
			now = now[:0]
		}
		if len(later) > 0 {
			t.script(ctx, scheduleScript, []string{q.Scheduled}, append([]any{q.Channel, Epoch}, later...)...)
			later = later[:0]
		}
	}
	for i, m := range msgs {
		if m.Delay > 0 {
			later = append(later, m.Delay.Milliseconds(), m.Slot, m.Body)
		} else {
			now = append(now, m.Slot, m.Body)
		}
		if (i+1)%chunk == 0 {
			flush()
		}
	}
	flush()
	if err := t.exec(ctx); err != nil {
		return fmt.Errorf("enqueue to %q: %w", q.Name, err)
	}
	q.indexed.Store(true)
	return nil
}
