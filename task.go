package rediq

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/rediq/rediq/internal/backoff"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
	"github.com/rediq/rediq/internal/core"
)

// Defaults of a registered task.
const (
	DefaultQueue   = "default"
	DefaultRetries = 3
	DefaultTimeout = 30 * time.Minute
)

// Priority bounds. Lower runs first; the default is 0.
const (
	MinPriority = -2048
	MaxPriority = 2047
)

// The broker's and the wire format's bounds are these: a difference does not
// compile (an array length below 0, or a [1] that is not a [0]).
var (
	_ [MinPriority - broker.MinPriority]struct{} = [0]struct{}{}
	_ [MaxPriority - broker.MaxPriority]struct{} = [0]struct{}{}
	_ [MinPriority - codec.MinPriority]struct{}  = [0]struct{}{}
	_ [MaxPriority - codec.MaxPriority]struct{}  = [0]struct{}{}
)

// TaskID identifies one enqueued task: 20 characters that sort by enqueue time.
type TaskID string

// TaskInfo describes the task a handler or hook is running for.
type TaskInfo struct {
	ID         TaskID
	Name       string
	Queue      string
	Priority   int
	Args       []byte // the arguments as msgpack
	EnqueuedAt time.Time
	Worker     string // the name of the worker running it
	MaxRetries int
	Timeout    time.Duration
	// Recovered counts the times a worker died (or froze past its lease)
	// while running this task before: > 0 means this run repeats work that
	// may have partly happened.
	Recovered int
	// LimitKey is the key the task's limits apply per (LimitKey); "" none.
	LimitKey string
}

// Task is a registered task function: the handle producers enqueue with.
type Task[A, R any] struct {
	app *App
	def *core.TaskDef
}

// Name returns the task's registered name.
func (t *Task[A, R]) Name() string { return t.def.Name }

// Register registers fn as the task called name and returns its handle. fn runs
// on a worker with the decoded arguments; its result is available to
// AfterTaskSuccess hooks. Arguments are encoded with msgpack (struct fields by
// name, or by `msgpack:"..."` tags).
//
// Defaults: queue DefaultQueue, priority 0, DefaultRetries retries, DefaultTimeout,
// exponential backoff with jitter (1s, 2s, 4s, … capped at 10 minutes).
//
// Register panics if name is empty or already registered on app, or if an option
// is invalid: these are programming errors, found at start-up like a duplicate
// http.Handle pattern.
func Register[A, R any](app *App, name string, fn func(context.Context, A) (R, error), opts ...TaskOption) *Task[A, R] {
	if name == "" {
		panic("rediq: Register: empty task name")
	}
	if fn == nil {
		panic(fmt.Sprintf("rediq: Register %q: nil function", name))
	}
	o := taskOptions{queue: DefaultQueue, retries: DefaultRetries, timeout: DefaultTimeout, backoff: backoff.Exponential}
	for _, opt := range opts {
		opt.applyTask(&o)
	}
	if o.err != nil {
		panic(fmt.Sprintf("rediq: Register %q: %v", name, o.err))
	}
	if !o.limit.IsZero() && codec.Flow(name, "") == "" {
		panic(fmt.Sprintf("rediq: Register %q: a task with '|' in its name cannot have limits", name))
	}
	// The arguments are decoded into a pooled A and copied out: an A of the
	// call's own, handed to msgpack as an interface, is an allocation per task.
	argsPool := sync.Pool{New: func() any { return new(A) }}
	def := &core.TaskDef{
		Name: name, Queue: o.queue, Priority: o.priority, Retries: o.retries, Timeout: o.timeout, Backoff: o.backoff,
		Retention: o.retention, Unique: o.unique, ExpireIn: o.expireIn, Memo: o.memo, ResultTable: o.resultTable,
		Window: o.window, Limit: o.limit,
		Run: func(ctx context.Context, raw []byte) (any, error) {
			p := argsPool.Get().(*A)
			err := decodeArgs(raw, p)
			args := *p
			*p = *new(A) // holds nothing of this task's while pooled
			argsPool.Put(p)
			if err != nil {
				return nil, SkipRetry(fmt.Errorf("decode arguments: %w", err))
			}
			return fn(ctx, args)
		},
	}
	if !app.core.AddTask(def) {
		panic(fmt.Sprintf("rediq: Register: task %q is already registered", name))
	}
	return &Task[A, R]{app: app, def: def}
}

// Enqueue adds one task to its queue and returns its id. The arguments are
// encoded and checked before anything is written: an error there (an
// *EncodeError, a *TooLargeError, ErrInvalidOption), or a ctx already done,
// leaves Redis untouched.
//
// Enqueue returns when ctx ends, whatever Redis does. If its request was sent
// but no answer came back (a timeout, a reset, ctx ending meanwhile) the error
// matches ErrOutcomeUnknown and the id is returned with it: the task may or may
// not be enqueued. Enqueue again with WithID(id): while the first call's task
// is in Redis (not yet succeeded) that writes nothing and says so with an error
// matching ErrDuplicate; if it already ran and succeeded, it is enqueued again
// (at least once, as everywhere in rediq: handlers should be idempotent). An
// error that does not match ErrOutcomeUnknown means nothing was written.
//
// Enqueue blocks until ctx ends at most, and without a deadline about 10
// seconds (rediq's retries of an unanswered request end there; an attempt in
// flight may run out its go-redis read timeout). A Redis that refuses the
// connection, or that hangs up before answering (a redis:// URL to a TLS port),
// fails it within milliseconds with an error matching ErrUnreachable: nothing
// was sent. That is known for the client rediq dials from Config.RedisURL; a
// client passed in Config.Redis says ErrOutcomeUnknown instead.
func (t *Task[A, R]) Enqueue(ctx context.Context, args A, opts ...EnqueueOption) (TaskID, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	o, err := t.enqueueOptions(opts)
	if err != nil {
		return "", err
	}
	msg, err := t.encode(args, &o, time.Now())
	if err != nil {
		return "", err
	}
	id := TaskID(msg.ID)
	b := t.app.core.Broker()
	q := b.Queue(o.queue)
	if o.id != "" {
		if err := t.app.checkIDElsewhere(ctx, o.id, o.queue); err != nil {
			return "", err
		}
	}
	st, err := b.Enqueue1(ctx, q, msg)
	switch {
	case errors.Is(err, broker.ErrNotReplicated):
		if st.Added() {
			return id, errors.Join(replicationError(err, []TaskID{id}), o.countInBatch(ctx, []TaskID{id}))
		}
		err = nil // nothing was written: the status says why
	case errors.Is(err, ErrOutcomeUnknown):
		// Counted in its batch either way: if it was not written, the batch
		// finds it gone when it counts the ends it missed.
		return id, errors.Join(fmt.Errorf("rediq: %w (retry with rediq.WithID(%q))", err, id), o.countInBatch(ctx, []TaskID{id}))
	case err != nil:
		return "", fmt.Errorf("rediq: %w", err)
	}
	if err := notAdded(st, id, o.queue); err != nil {
		return "", err
	}
	return id, o.countInBatch(ctx, []TaskID{id})
}

// countInBatch records tasks just enqueued in the call's batch, if any (a
// set: recording one twice changes nothing). If that fails the tasks are
// enqueued but the batch does not know them (its Wait could end early): the
// error says so.
func (o *enqueueOptions) countInBatch(ctx context.Context, ids []TaskID) error {
	if o.batch == nil || len(ids) == 0 {
		return nil
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = string(id)
	}
	err := o.batch.app.core.Broker().AddMembers(context.WithoutCancel(ctx), o.batch.keys, s)
	// A detached Batch that is collected seals its batch: not before its
	// tasks are counted in it.
	runtime.KeepAlive(o.batch)
	if err != nil {
		return fmt.Errorf("rediq: enqueued, but not counted in batch %d: %w", o.batch.keys.ID, err)
	}
	return nil
}

// notAdded is the error for a message the enqueue did not write, nil if it did.
func notAdded(st broker.Status, id TaskID, queue string) error {
	switch st.Code {
	case broker.StatusAdded:
		return nil
	case broker.StatusLocked:
		return &DuplicateError{ExistingID: TaskID(st.Holder), Queue: queue, Unique: true}
	case broker.StatusMemoized:
		return errMemoized
	}
	return &DuplicateError{ExistingID: id, Queue: queue}
}

// EnqueueMany adds one task per element of args with the same options, in one
// round trip, and returns their ids in order. Either every argument encodes and
// they are all sent, or nothing is written. Its errors mean what
// Enqueue's do; with ErrOutcomeUnknown the ids are returned.
func (t *Task[A, R]) EnqueueMany(ctx context.Context, args []A, opts ...EnqueueOption) ([]TaskID, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(args) == 0 {
		return nil, nil
	}
	o, err := t.enqueueOptions(opts)
	if err != nil {
		return nil, err
	}
	if o.id != "" && len(args) > 1 {
		return nil, fmt.Errorf("%w: WithID names one task, and EnqueueMany got %d", ErrInvalidOption, len(args))
	}
	ids := make([]TaskID, len(args))
	msgs := make([]broker.Message, len(args))
	now := time.Now()
	for i := range args {
		msg, err := t.encode(args[i], &o, now)
		if err != nil {
			return nil, err
		}
		ids[i] = TaskID(msg.ID)
		msgs[i] = msg
	}
	if o.id != "" {
		if err := t.app.checkIDElsewhere(ctx, o.id, o.queue); err != nil {
			return nil, err
		}
	}
	b := t.app.core.Broker()
	added, err := b.Enqueue(ctx, b.Queue(o.queue), msgs)
	var replErr error
	switch {
	case errors.Is(err, broker.ErrNotReplicated):
		replErr = err
	case errors.Is(err, ErrOutcomeUnknown):
		return ids, errors.Join(fmt.Errorf("rediq: %w", err), o.countInBatch(ctx, ids))
	case err != nil:
		return nil, fmt.Errorf("rediq: %w", err)
	}
	var written []TaskID
	var first error
	for i, st := range added {
		// Only with WithID or Unique, or a generated id met twice (about 2^-48).
		if err := notAdded(st, ids[i], o.queue); err != nil {
			first = cmp.Or(first, err)
		} else {
			written = append(written, ids[i])
		}
	}
	if replErr != nil && len(written) > 0 {
		// Not replicated comes first: it concerns tasks that were written.
		first = replicationError(replErr, written)
	}
	if err := o.countInBatch(ctx, written); err != nil {
		if replErr != nil && len(written) > 0 {
			return ids, errors.Join(first, err)
		}
		return ids, err
	}
	return ids, first
}

func (t *Task[A, R]) enqueueOptions(opts []EnqueueOption) (enqueueOptions, error) {
	d := t.def
	o := enqueueOptions{taskOptions: taskOptions{queue: d.Queue, priority: d.Priority, retries: -1,
		retention: d.Retention, unique: d.Unique, expireIn: d.ExpireIn, memo: d.Memo}}
	for _, opt := range opts {
		opt.applyEnqueue(&o)
	}
	if o.err != nil {
		return o, fmt.Errorf("%w: %v", ErrInvalidOption, o.err)
	}
	if !o.at.IsZero() {
		o.delay = time.Until(o.at)
	}
	if !o.expireAt.IsZero() {
		o.expireIn = max(time.Until(o.expireAt), time.Millisecond)
	}
	if due := time.Now().Add(o.delay); o.delay > 0 && due.UnixMilli() > broker.MaxDue-24*3600*1000 {
		return o, fmt.Errorf("%w: due time %s is past what rediq can schedule (%s)", ErrInvalidOption,
			due.UTC().Format(time.RFC3339), time.UnixMilli(broker.MaxDue).UTC().Format("2006-01-02"))
	}
	return o, nil
}

var encoders = sync.Pool{New: func() any {
	e := &argsEncoder{}
	e.enc = msgpack.NewEncoder(&e.buf)
	e.enc.UseCompactInts(true)
	e.enc.UseCompactFloats(true)
	return e
}}

// decoders pairs a msgpack decoder with the reader it reads, so that decoding a
// task's arguments allocates nothing but the values themselves.
var decoders = sync.Pool{New: func() any { return &argsDecoder{dec: msgpack.NewDecoder(nil)} }}

type argsDecoder struct {
	r   bytes.Reader
	dec *msgpack.Decoder
}

func decodeArgs(raw []byte, v any) error {
	d := decoders.Get().(*argsDecoder)
	defer decoders.Put(d)
	if len(raw) == 0 { // a message without "a": the zero value
		raw = []byte{0xc0}
	}
	d.r.Reset(raw)
	d.dec.Reset(&d.r)
	return d.dec.Decode(v)
}

type argsEncoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

func (t *Task[A, R]) encode(args A, o *enqueueOptions, now time.Time) (broker.Message, error) {
	e := encoders.Get().(*argsEncoder)
	defer encoders.Put(e)
	e.buf.Reset()
	if err := e.enc.Encode(args); err != nil {
		return broker.Message{}, &EncodeError{Task: t.def.Name, Err: err}
	}
	// The record is stored under its id, so the message leaves "i" out, and
	// "t" too when the id is a generated one (its first 48 bits are the time):
	// 33 bytes less per task in Redis.
	id, enqueuedAt := o.id, now.UnixMilli()
	if id == "" {
		id, enqueuedAt = codec.NewID(now), 0
	}
	env := codec.Envelope{
		Name: t.def.Name, Args: e.buf.Bytes(), EnqueuedAt: enqueuedAt,
		Priority: o.priority, MaxRetries: o.retries, TimeoutMs: o.timeout.Milliseconds(),
	}
	env.RetentionMs = o.retention.Milliseconds()
	env.LimitKey = o.limitKey
	if o.batch != nil {
		env.Batch = o.batch.keys.ID
	}
	msg := broker.Message{ID: id, Slot: broker.Slot(o.priority), Flow: env.Flow(), Delay: o.delay,
		ExpireIn: o.expireIn, Retention: o.retention}
	if o.limitKey != "" && msg.Flow == "" {
		return broker.Message{}, fmt.Errorf("%w: LimitKey: task %q has '|' in its name, so it has no limits", ErrInvalidOption, t.def.Name)
	}
	switch {
	case o.memoRun:
		env.MemoMs = o.memo.Milliseconds()
		msg.Memo = o.memo
		msg.Lock, msg.LockTTL = broker.MemoLock(lockDigest(t.def.Name, "a", e.buf.Bytes())), memoLockTTL
	case o.unique > 0:
		key, kind := e.buf.Bytes(), "a"
		if o.uniqueKey != "" {
			key, kind = []byte(o.uniqueKey), "k"
		}
		msg.Lock, msg.LockTTL = broker.UniqueLock(lockDigest(t.def.Name, kind, key)), o.unique
	}
	msg.Body = codec.Encode(&env)
	if limit := t.app.maxMessageBytes; len(msg.Body) > limit {
		return broker.Message{}, &TooLargeError{Task: t.def.Name, Size: len(msg.Body), Limit: limit}
	}
	return msg, nil
}

// memoLockTTL bounds a Memoize lock whose holder never finished; the lock
// counts only while its holder's record exists (enqueue.lua), so this only
// bounds a stale key's life.
const memoLockTTL = 24 * time.Hour

// lockDigest names a Unique or Memoize lock: the task's name and its
// arguments (kind "a") or UniqueKey (kind "k"), hashed.
func lockDigest(name, kind string, key []byte) string {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write(key)
	return hex.EncodeToString(h.Sum(nil)[:16])
}
