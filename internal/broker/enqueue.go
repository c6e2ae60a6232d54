package broker

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rediq/rediq/internal/backoff"
	"github.com/redis/go-redis/v9"
)

// ErrOutcomeUnknown means an enqueue call may or may not have written its tasks:
// the request went out and no answer came back (a timeout, a reset, the caller's
// ctx ending while it was in flight). Enqueueing again with the same task id
// writes nothing if the first call did.
var ErrOutcomeUnknown = errors.New("outcome unknown")

// ErrUnreachable means a call never reached Redis: no connection could be made
// (refused, no route, a failed TLS or protocol handshake), so nothing was sent.
var ErrUnreachable = errors.New("redis unreachable")

// Message is a task bound for a queue.
type Message struct {
	ID   string
	Slot int // priority slot
	// Flow is the task's flow: its type, or "TYPE|KEY" with a limit key
	// (docs/PROTOCOL.md §2): it waits in the flow's lane, and the type's
	// limits apply per flow. "": none (the slot's own lane, no limits).
	Flow  string
	Delay time.Duration // > 0: scheduled that long after the server's clock
	Body  []byte
	// Options, when any is set, give the task its meta (docs/PROTOCOL.md §3).
	ExpireIn  time.Duration // > 0: not started by then (from the enqueue), it expires
	Retention time.Duration // its record is kept that long after it finishes
	Memo      time.Duration // Memoize: a success's result is cached that long
	Lock      string        // "", UniqueLock(digest) or MemoLock(digest)
	LockTTL   time.Duration
}

// lane is the lane argument of enqueue.lua: the slot, and |FLOW if any.
func (m *Message) lane() any {
	return Lane(m.Slot, m.Flow)
}

// Lane is the name of the lane of a priority slot and flow ("": none).
func Lane(slot int, flow string) any {
	if flow == "" {
		return slot
	}
	return strconv.Itoa(slot) + "|" + flow
}

func (m *Message) options() string {
	if m.ExpireIn <= 0 && m.Retention <= 0 && m.Memo <= 0 && m.Lock == "" {
		return ""
	}
	ms := func(d time.Duration) string { return strconv.FormatInt(max(d.Milliseconds(), 0), 10) }
	return ms(m.ExpireIn) + ":" + ms(m.Retention) + ":" + ms(m.Memo) + ":" + ms(m.LockTTL) + ":" + m.Lock
}

// UniqueLock is the Message.Lock of a Unique task whose arguments (or key)
// have the digest: enqueue.lua keeps one task per digest.
func UniqueLock(digest string) string { return "u:" + digest }

// MemoLock is the Message.Lock of a Memoize run whose arguments have the
// digest: one run at a time, and its result cached (Memoized).
func MemoLock(digest string) string { return "m:" + digest }

// IsUniqueLock reports whether lock was made by UniqueLock.
func IsUniqueLock(lock string) bool { return strings.HasPrefix(lock, "u:") }

// Status is what an enqueue did with one message.
type Status struct {
	Code   StatusCode
	Holder string // StatusLocked: the id of the task holding the lock
}

// Added reports whether the message was written.
func (s Status) Added() bool { return s.Code == StatusAdded }

// StatusCode is what enqueue.lua did with one message (one byte of its reply).
type StatusCode byte

const (
	StatusAdded    StatusCode = '1' // written
	StatusExists   StatusCode = '0' // its id exists: nothing written
	StatusLocked   StatusCode = 'u' // its Unique or Memoize lock is held (by Status.Holder)
	StatusMemoized StatusCode = 'm' // a memoized result exists: nothing written
)

// maxInflight is how many enqueue round trips one queue has in flight at once
// from this process. Callers that find a call out wait and go in the next, so
// under concurrency single Enqueue calls cost a fraction of a round trip and of
// a script call each, while a lone caller still sends at once. Normally one
// call is out at a time (group commit: a call carries every caller that waited,
// up to maxCombined); another lane opens for the callers waiting behind a call
// that has gone unanswered for stallAfter (and again every stallAfter while it
// stays out), so that a reply held up by a slow network or a cut connection
// delays only the callers in that call. Measured with
// rediq bench at 16 and 64 producers against a fixed 2 and 4 in flight: the
// same or more tasks per second, and a quarter to a third less Redis CPU per
// task (the fixed cost of a round trip and a script call is shared by more
// tasks).
const maxInflight = 4

// stallAfter is how long a call may go unanswered before the callers waiting
// behind it open another lane.
const stallAfter = 20 * time.Millisecond

// maxCombined bounds one script call, so that no call blocks Redis for long.
const maxCombined = 1000

// sendTimeout bounds one enqueue call, retries included, when nothing else
// does: go-redis's own timeouts end each attempt, this ends the retrying.
const sendTimeout = 10 * time.Second

// laneIDs names the call guards of this process: a random prefix and a counter.
// A guard (NS:{Q}:call:LANE) holds the number and reply of the lane's last
// call for five minutes, so that a call re-sent after its reply was lost is
// answered from it instead of running again.
type laneIDs struct {
	once   sync.Once
	prefix string
	n      atomic.Uint64
}

func (l *laneIDs) next() string {
	l.once.Do(func() {
		var b [10]byte
		_, _ = rand.Read(b[:])
		l.prefix = strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
	})
	return l.prefix + "." + strconv.FormatUint(l.n.Add(1), 36)
}

// lane is one sequence of calls under one guard; one sender uses it at a time.
type lane struct {
	id   string
	call uint64
}

// Enqueue adds msgs to q and reports, per message, what it did (Added, or why
// nothing was written for it). Many messages go as several script calls in one
// round trip. It returns when ctx ends, with an error wrapping
// ErrOutcomeUnknown if the calls were already sent.
func (b *Broker) Enqueue(ctx context.Context, q *Queue, msgs []Message) ([]Status, error) {
	var calls []laneCall
	retire := false // after an error the lanes are not reused (nor while a send may go on)
	for i := 0; i < len(msgs); i += maxCombined {
		l := q.combiner.borrow(b)
		l.call++
		calls = append(calls, laneCall{*l, msgs[i:min(i+maxCombined, len(msgs))]})
		defer func() { q.combiner.giveBack(l, retire) }()
	}
	var added []Status
	gaveUp, err := b.await(ctx, func(sctx context.Context) error {
		return b.retrying(sctx, func(ctx context.Context) (err error) {
			added, err = b.send(ctx, q, calls)
			return err
		})
	})
	if errors.Is(err, ErrNotReplicated) {
		// Written on the master, not (yet) confirmed by its replicas.
		return added, fmt.Errorf("enqueue to %q: %w", q.Name, err)
	}
	if err != nil {
		if gaveUp || (len(calls) > 1 && !errors.Is(err, ErrOutcomeUnknown) && !errors.Is(err, ErrUnreachable)) {
			// Sent and not answered, or one chunk may have run before another failed.
			err = fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
		}
		retire = true // their guards may hold a call that failed, or one still going
		return nil, fmt.Errorf("enqueue to %q: %w", q.Name, err)
	}
	return added, nil
}

// laneCall is one enqueue script call: a lane's next call number and its messages.
type laneCall struct {
	lane lane
	msgs []Message
}

// send runs the calls in one round trip and reports per message whether it was
// added: one command when the queue is known to the index, else a pipeline that
// also records the queue there (its own slot on a cluster, so not in a script).
func (b *Broker) send(ctx context.Context, q *Queue, calls []laneCall) ([]Status, error) {
	if len(calls) == 1 && q.indexed.Load() && b.repl.Replicas <= 0 {
		c := calls[0]
		return appendStatus(nil, enqueueScript.Run(ctx, b.rdb, q.enqueueKeys(c.lane), enqueueArgs(q, c)...), len(c.msgs))
	}
	t := b.newTaskPipeline()
	if !q.indexed.Load() {
		t.pipe.SAdd(ctx, b.indexKey(), q.Name)
	}
	cmds := make([]*redis.Cmd, len(calls))
	for i, c := range calls {
		cmds[i] = t.script(ctx, enqueueScript, q.enqueueKeys(c.lane), enqueueArgs(q, c)...)
	}
	xerr := t.exec(ctx)
	if xerr != nil && !errors.Is(xerr, ErrNotReplicated) {
		return nil, xerr
	}
	var added []Status
	for i, c := range cmds {
		var err error
		if added, err = appendStatus(added, c, len(calls[i].msgs)); err != nil {
			return nil, err
		}
	}
	q.indexed.Store(true)
	return added, xerr // nil, or the writes were made but not replicated
}

func (q *Queue) enqueueKeys(l lane) []string {
	return []string{q.Records, q.Pending, q.Scheduled, q.Seq, q.call + l.id}
}

func enqueueArgs(q *Queue, c laneCall) []any {
	if runsOnly(c.msgs) {
		return runArgs(q, c)
	}
	args := make([]any, 0, 4+5*len(c.msgs))
	args = append(args, q.Channel, c.lane.call, Epoch, q.Prefix)
	for i := range c.msgs {
		m := &c.msgs[i]
		args = append(args, m.ID, m.lane(), max(m.Delay.Milliseconds(), 0), m.Body, m.options())
	}
	return args
}

// runsOnly reports whether msgs can go in enqueue.lua's runs form: every one
// pending now and without options.
func runsOnly(msgs []Message) bool {
	for i := range msgs {
		m := &msgs[i]
		if m.Delay > 0 || m.options() != "" {
			return false
		}
	}
	return true
}

// runArgs is enqueue.lua's ARGV in the runs form: after the four fixed ones
// "" and "runs", then for each run of messages of one lane LANE, COUNT, then
// ID, BODY each.
func runArgs(q *Queue, c laneCall) []any {
	args := make([]any, 0, 8+2*len(c.msgs))
	args = append(args, q.Channel, c.lane.call, Epoch, q.Prefix, "", "runs")
	for i := 0; i < len(c.msgs); {
		m := &c.msgs[i]
		j := i + 1
		for j < len(c.msgs) && c.msgs[j].Slot == m.Slot && c.msgs[j].Flow == m.Flow {
			j++
		}
		args = append(args, m.lane(), j-i)
		for k := i; k < j; k++ {
			args = append(args, c.msgs[k].ID, c.msgs[k].Body)
		}
		i = j
	}
	return args
}

// appendStatus parses enqueue.lua's reply for n messages: a status character
// each, then LENGTH:ID per "u".
func appendStatus(dst []Status, c *redis.Cmd, n int) ([]Status, error) {
	s, err := c.Text()
	if err != nil {
		return dst, err
	}
	if len(s) < n {
		return dst, fmt.Errorf("enqueue: reply %q is shorter than its %d tasks", s, n)
	}
	rest := s[n:]
	for i := range n {
		st := Status{Code: StatusCode(s[i])}
		if st.Code == StatusLocked {
			colon := strings.IndexByte(rest, ':')
			l, err := strconv.Atoi(rest[:max(colon, 0)])
			if colon < 0 || err != nil || len(rest) < colon+1+l {
				return dst, fmt.Errorf("enqueue: malformed reply %q", s)
			}
			st.Holder, rest = rest[colon+1:colon+1+l], rest[colon+1+l:]
		}
		dst = append(dst, st)
	}
	return dst, nil
}

// await runs send under a context of its own, bounded by sendTimeout, and waits
// for it or for ctx. go-redis does not end a command when its ctx ends (unless
// the client sets ContextTimeoutEnabled), so waiting on ctx here is what honours
// the caller's deadline; the send goes on to its end in the background, bounded
// by go-redis's timeouts and sendTimeout. gaveUp says ctx ended first: err is
// then ctx's cause, and what send did is unknown.
func (b *Broker) await(ctx context.Context, send func(context.Context) error) (gaveUp bool, err error) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sendTimeout)
	done := make(chan error, 1)
	go func() {
		defer cancel()
		done <- send(sctx)
	}()
	select {
	case err := <-done:
		return false, err
	case <-ctx.Done():
		return true, context.Cause(ctx)
	}
}

// resendPause paces retrying's re-sends: 50–100ms, then doubling, jittered
// (at least the 50, 100, 200ms they waited before).
var resendPause = backoff.Policy{First: 100 * time.Millisecond, Max: 400 * time.Millisecond}

// retrying runs an idempotent call, again after an error that leaves its outcome
// unknown (a timeout, a reset) or that says the server was briefly unable to run
// it (LOADING, READONLY after a failover, ...), with a short backoff while ctx
// lasts. An error reply from Redis otherwise means the call did not run (the
// scripts check their arguments before writing), and is returned as is; so is
// a call that never reached Redis (a refused dial, a server that hung up before
// answering: see Watch), at once and wrapping ErrUnreachable — go-redis has
// retried it already. An unknown outcome that persists is returned wrapping
// ErrOutcomeUnknown.
func (b *Broker) retrying(ctx context.Context, call func(context.Context) error) error {
	var err error
	reached := false // an attempt may have run in Redis
	pace := backoff.Retrier{Policy: resendPause}
	for attempt := 0; attempt < 4; attempt++ {
		if attempt > 0 && !pace.Pause(ctx, nil, nil) {
			return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
		}
		pctx, p := watch(ctx)
		err = call(pctx)
		if err == nil || errors.Is(err, ErrNotReplicated) {
			return err // a call that ran; sent again it would not replicate better
		}
		if p.unsent(err) {
			if reached {
				break
			}
			return p.unreachable(err)
		}
		if !Refused(err) {
			reached = true
		}
		if !Retryable(err) {
			break
		}
	}
	if Refused(err) && !reached {
		return err
	}
	return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
}

type enqueueReq struct {
	m     Message
	state atomic.Int32 // reqWaiting, reqTaken or reqAbandoned
	done  chan enqueueResult
}

const (
	reqWaiting int32 = iota
	reqTaken
	reqAbandoned
)

type enqueueResult struct {
	status Status
	err    error
}

// combiner gathers the single enqueues of one queue into shared calls.
type combiner struct {
	mu      sync.Mutex
	waiting []*enqueueReq
	free    []*lane // lanes not sending now; more are made on demand
	busy    int
}

// borrow takes a lane for an EnqueueMany chunk (not counted in busy: those
// calls are the caller's own round trip).
func (c *combiner) borrow(b *Broker) *lane {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.take(b)
}

// take pops a free lane or makes one; c.mu is held.
func (c *combiner) take(b *Broker) *lane {
	if n := len(c.free); n > 0 {
		l := c.free[n-1]
		c.free = c.free[:n-1]
		return l
	}
	return &lane{id: b.lanes.next()}
}

// giveBack returns a borrowed lane. After a failed call it is retired: its
// guard may hold a call whose copy is still in flight, and a later call on the
// lane could then be answered as that one.
func (c *combiner) giveBack(l *lane, retire bool) {
	if retire {
		return
	}
	c.mu.Lock()
	c.free = append(c.free, l)
	c.mu.Unlock()
}

// Enqueue1 adds one message. Concurrent calls for the same queue are combined
// into one script call (group commit) sent by a short-lived goroutine, so that
// every caller is free to leave when its ctx ends: one that leaves before its
// message was taken into a call writes nothing and gets ctx's error; one that
// leaves later gets an error wrapping ErrOutcomeUnknown.
func (b *Broker) Enqueue1(ctx context.Context, q *Queue, m Message) (Status, error) {
	r := &enqueueReq{m: m, done: make(chan enqueueResult, 1)}
	c := &q.combiner
	c.mu.Lock()
	c.waiting = append(c.waiting, r)
	var l *lane
	if c.busy == 0 {
		c.busy++
		l = c.take(b)
	}
	c.mu.Unlock()
	if l != nil {
		go b.drive(q, l)
	}
	select {
	case res := <-r.done:
		if errors.Is(res.err, ErrNotReplicated) {
			return res.status, fmt.Errorf("enqueue to %q: %w", q.Name, res.err)
		}
		if res.err != nil {
			return Status{}, fmt.Errorf("enqueue to %q: %w", q.Name, res.err)
		}
		return res.status, nil
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqWaiting, reqAbandoned) {
			return Status{}, context.Cause(ctx)
		}
		return Status{}, fmt.Errorf("enqueue to %q: %w: %w", q.Name, ErrOutcomeUnknown, context.Cause(ctx))
	}
}

// unstall opens another lane for the callers waiting on q, if any wait and
// fewer than maxInflight calls are out: called when a call has gone unanswered
// for stallAfter.
func (b *Broker) unstall(q *Queue) {
	c := &q.combiner
	c.mu.Lock()
	var l *lane
	if len(c.waiting) > 0 && c.busy < maxInflight {
		c.busy++
		l = c.take(b)
	}
	c.mu.Unlock()
	if l != nil {
		go b.drive(q, l)
	}
}

// stallWatch calls unstall every stallAfter while a call is out.
type stallWatch struct {
	mu  sync.Mutex
	t   *time.Timer
	out bool
}

func (b *Broker) watchStall(q *Queue) *stallWatch {
	w := &stallWatch{out: true}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t = time.AfterFunc(stallAfter, func() {
		b.unstall(q)
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.out {
			w.t.Reset(stallAfter)
		}
	})
	return w
}

// stop ends the watch: the call was answered.
func (w *stallWatch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.out = false
	w.t.Stop()
}

// drive sends what is waiting on q, one call at a time on lane l, until nothing
// waits; then it frees the lane.
func (b *Broker) drive(q *Queue, l *lane) {
	c := &q.combiner
	var taken []*enqueueReq
	msgs := make([]Message, 0, 16)
	for {
		// Let the callers just answered (runnable, not yet running) come back
		// with their next message before the call is cut: on a busy process this
		// multiplies the messages per call; on an idle one it costs nothing.
		runtime.Gosched()
		c.mu.Lock()
		taken, msgs = taken[:0], msgs[:0]
		i := 0
		for ; i < len(c.waiting) && len(taken) < maxCombined; i++ {
			r := c.waiting[i]
			if r.state.CompareAndSwap(reqWaiting, reqTaken) {
				taken = append(taken, r)
				msgs = append(msgs, r.m)
			}
		}
		c.waiting = c.waiting[i:]
		if len(taken) == 0 {
			c.busy--
			c.free = append(c.free, l)
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()

		l.call++
		// If this call goes unanswered for stallAfter, the callers waiting
		// behind it go in a call of their own, on another lane.
		// (Again every stallAfter while it stays out: callers keep arriving.)
		stall := b.watchStall(q)
		ctx, cancel := context.WithTimeout(context.Background(), sendTimeout)
		var added []Status
		err := b.retrying(ctx, func(ctx context.Context) (err error) {
			added, err = b.send(ctx, q, []laneCall{{*l, msgs}})
			return err
		})
		cancel()
		stall.stop()
		if err != nil && !errors.Is(err, ErrNotReplicated) {
			// Retire the lane's guard: the failed call may still run.
			l.id, l.call = b.lanes.next(), 0
		}
		for k, r := range taken {
			res := enqueueResult{err: err}
			if k < len(added) {
				res.status = added[k]
			}
			r.done <- res
		}
	}
}
