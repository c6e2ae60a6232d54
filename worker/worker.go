// Package worker runs the tasks of a rediq.App: it fetches from the App's queues
// without polling, runs handlers with bounded concurrency, settles their outcomes
// in coalesced round trips and keeps leases alive so that a worker that dies loses
// nothing. Main gives an application binary the worker's command line;
// MainArgs gives it to one command of a binary that has several.
package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/codec"
	"github.com/rediq/rediq/internal/core"
	"github.com/rediq/rediq/internal/executor"
	"github.com/rediq/rediq/internal/window"
)

// Config configures a Worker. Zero fields take the defaults in their comments.
type Config struct {
	// Queues to serve, in order; "default" is served after them unless it is
	// listed or SkipDefaultQueue is set.
	Queues []string
	// SkipDefaultQueue leaves the "default" queue out.
	SkipDefaultQueue bool
	// Weights gives queues a share of the fetched tasks relative to the others'
	// (default 1 each: fair sharing). Ignored with StrictPriority.
	Weights map[string]int
	// StrictPriority serves the queues in order: a later queue only gets tasks
	// while every earlier one is empty.
	StrictPriority bool
	// Name identifies the worker in logs and in TaskInfo.Worker. Default host:pid.
	Name string
	// Concurrency is how many handlers run at once. Default 10.
	Concurrency int
	// Prefetch is how many fetched tasks may wait for a free handler, beyond
	// those running. Default: Concurrency.
	Prefetch int
	// ExecutorPoolSize bounds rediq.RunInExecutor. Default: GOMAXPROCS.
	ExecutorPoolSize int
	// ShutdownTimeout is how long a stopping worker lets running and prefetched
	// tasks finish before it cancels them. Default 30s.
	ShutdownTimeout time.Duration
	// LeaseTTL is how long a worker's tasks stay leased to it without a
	// heartbeat: a worker that dies has its tasks run elsewhere within LeaseTTL
	// (plus a few ms). Heartbeats go every LeaseTTL/3. Default 15s.
	LeaseTTL time.Duration
	// MaxRecoveries is how many times a task may be taken back from a worker that
	// died (or froze past its lease) while running it before it goes to the
	// dead set as poison. Only started tasks count; a worker runs at most one
	// recovered task at a time, so that a task that kills its worker is never
	// again run beside another recovered one and ends as poison alone. A
	// retry or a success resets the count: it counts deaths in a row.
	// Default 3; -1 for none (the first recovery is poison).
	MaxRecoveries int
	// TimeoutGrace is how long a handler may go on past its timeout, ignoring
	// its cancelled ctx, before the worker gives up on it: the attempt counts
	// as failed (retried per the task's retries), the runner is replaced so
	// that the tasks behind it run, and the stuck goroutine is reported once
	// and left to finish on its own (Go cannot stop it). Default 10s.
	TimeoutGrace time.Duration
	// UnknownTaskRetries is how many times a task whose name this worker has
	// not registered is given back to its queue before it goes to dead: during
	// a rolling deploy, old workers meet the new producers' tasks. Each retry
	// waits a short delay, 250ms doubling to a cap of 3s, so that the task
	// reaches a worker that knows it within about 3s of one being up; the
	// count sets the total: by default 200 retries, about 10 minutes — a
	// rolling deploy's length (each retry costs a fetch and a settle). These
	// retries do not use up the task's own. Programs that share a queue must
	// register the same tasks; otherwise a task bounces between them until a
	// worker that knows it fetches it. Default 200; -1 for none.
	UnknownTaskRetries int
	// DeadMaxAge and DeadMaxLen bound each queue's dead set. Default 30 days and
	// 10,000 tasks.
	DeadMaxAge time.Duration
	DeadMaxLen int
	// Logger for the worker. Default: the App's logger.
	Logger *zap.Logger
	// WaitReplicas is how many replicas must confirm the worker's fetches and
	// settlements (Redis's WAIT after each round trip), so that a failover
	// does not undo them and run their tasks again. A round trip they do not
	// confirm within WaitReplicasTimeout is taken as applied, and a warning
	// says so (at most every 10s): an undone fetch or settlement runs a task
	// again, it never loses one. While fewer replicas are online, each fetch
	// and settlement round trip lasts WaitReplicasTimeout. Default: the App's
	// rediq.Config.WaitReplicas; -1 for none.
	WaitReplicas int
	// WaitReplicasTimeout bounds each WAIT. Default: the App's
	// rediq.Config.WaitReplicasTimeout when WaitReplicas is the App's, else
	// rediq.DefaultWaitReplicasTimeout.
	WaitReplicasTimeout time.Duration

	// DisableSchedules keeps this worker from firing the App's schedules
	// (App.Schedule); by default every worker fires them, each tick once.
	DisableSchedules bool

	// now is the worker's clock (tests skew it); default time.Now.
	now func() time.Time
	// skewed: now was set (not time.Now): the real clock must be read apart.
	skewed bool
}

// Defaults of Config.
const (
	DefaultConcurrency     = 10
	DefaultShutdownTimeout = 30 * time.Second
	DefaultLeaseTTL        = 15 * time.Second
	DefaultMaxRecoveries   = 3
	DefaultDeadMaxAge      = 30 * 24 * time.Hour
	DefaultDeadMaxLen      = 10000
	DefaultTimeoutGrace    = 10 * time.Second
	DefaultUnknownRetries  = 200
)

// Worker runs tasks. Create it with New, run it with Run.
type Worker struct {
	app *core.App
	b   *broker.Broker
	cfg Config
	log *zap.Logger

	queues    []*queue
	byName    map[string]*queue
	session   string
	exec      *executor.Pool
	keep      broker.DeadRetention
	lease     leaseClock
	probes    probeState
	replLog   replicationLog
	observers []attemptObserver // see each attempt start and end (pipeline.go)
	clock     clock             // Config.now: the services' time
	// windowKick wakes the window service: a queue's window changed.
	windowKick chan struct{}

	prefetch prefetchBuffer // what the fetcher feeds the runners (fetch.go)
	beats    beats          // a heartbeat succeeded: the probe and the upkeep follow
	settler  settler
	out      output // batch output lines on their way to Redis

	life    lifecycle
	pool    runnerPool
	cancels cancelRegistry
	hooks   [core.NumEvents][]core.Hook
	base    context.Context // parent of the handlers' contexts
}

// lifecycle is Run's and Shutdown's handshake.
type lifecycle struct {
	started atomic.Bool
	stopReq chan context.Context // Shutdown hands its context to Run
	done    chan struct{}        // closed when Run returns
	cut     atomic.Bool          // the drain was cut short: its context ended, or a forced stop
	runErr  error
}

// runnerPool is the runners and what a stop, a lost lease or the watchdog
// needs of them.
type runnerPool struct {
	forced    chan struct{} // closed: skip the rest of the drain
	forceOnce sync.Once
	abort     chan struct{} // closed: runners start nothing more
	leftMu    sync.Mutex
	leftover  []*job       // jobs runners declined after abort
	active    atomic.Int64 // handlers running now
	slotMu    sync.Mutex
	slots     map[*slot]struct{} // the runners' slots, abandoned ones removed
	abandoned int                // runners given up on (stuck handlers)
	runners   sync.WaitGroup
}

// cancelRegistry holds the ids CancelTask asked this worker's queues to
// cancel (task id -> when heard), for tasks it holds or is about to hold.
type cancelRegistry struct {
	mu  sync.Mutex
	ids map[string]time.Time
	n   atomic.Int32 // len(ids)
}

// leaseKey is one lease: a task id and the token its lease names (its
// fetch's; every task of a fetch shares it).
type leaseKey struct {
	id    string
	token uint64
}

type queue struct {
	*broker.Queue
	weight    int
	ready     atomic.Bool  // may have pending tasks: fetch from it
	recovered atomic.Bool  // its last fetch saw recovered tasks waiting (true until the first)
	nextDue   atomic.Int64 // local Unix ms of its earliest scheduled task, 0 if none
	// waitRunner: its last fetch passed over tasks of limited flows, which are
	// only taken to start at once: the queue is ready again for a fetch with
	// an idle runner.
	waitRunner atomic.Bool
	gen        atomic.Pointer[generation]
	reconcile  atomic.Bool // the heartbeat saw a lease count the worker does not hold

	heldMu sync.Mutex
	held   map[leaseKey]struct{} // leases fetched and not yet settled in Redis

	// The start gate (pause.go): paused, pauseID and the window are guarded by
	// startMu; starting counts runners past the gate whose handlers are not
	// yet called.
	startMu sync.RWMutex
	paused  bool
	pauseID int64 // the latest pause or resume heard of (ids grow)
	// The queue's run window (window.go): closed outside it.
	windowSpec string
	window     *window.Spec
	windowAsOf time.Time // when Redis held windowSpec (applyWindow)
	closed     bool
	starting   atomic.Int64
}

// generation is a lease epoch of one queue: when the session's lease on the
// queue is lost, the tasks it held are run elsewhere, so the generation is marked
// lost, its running tasks are cancelled and its prefetched ones dropped.
type generation struct {
	lost     atomic.Bool
	lostOnce sync.Once
	lostCh   chan struct{}
}

func newGeneration() *generation { return &generation{lostCh: make(chan struct{})} }

func (g *generation) markLost() {
	g.lostOnce.Do(func() {
		g.lost.Store(true)
		close(g.lostCh)
	})
}

// slot is what one runner is running, so that a stop, a lost lease or the
// stuck-handler watchdog can act on it.
type slot struct {
	mu        sync.Mutex
	cancel    context.CancelCauseFunc // nil when idle
	gen       *generation
	deadline  time.Time // past it (timeout + grace) the handler is stuck
	running   attempt   // what the watchdog needs to fail it; running.j is nil when idle
	abandoned bool      // the watchdog gave up on it: its runner exits
	// The handler's timeout: one timer per slot (a context.WithTimeout per
	// attempt cost a timer, a context and a map entry in its parent: a
	// seventh of the worker's CPU for short tasks). It cancels the handler's
	// context with cause DeadlineExceeded once the real clock passes
	// timesOut (a run for an earlier attempt, not yet due, does nothing).
	// It is not stopped when an attempt ends, nor set again for the next
	// one while it fires no later than that one's timeout: short tasks
	// under the default timeout set it once, not twice per task; a run that
	// finds the attempt not yet due sets it for the rest. timerAt is when
	// it is set to fire (zero: not set).
	timer    *time.Timer
	timerAt  time.Time
	timesOut time.Time
}

// timedOut is the slot timer's: it ends the running handler's context if
// its timeout passed, and sets the timer again for one not yet due.
func (sl *slot) timedOut() {
	sl.mu.Lock()
	sl.timerAt = time.Time{}
	cancel := sl.cancel
	left := time.Until(sl.timesOut)
	if cancel != nil && left > 0 {
		sl.timer.Reset(left)
		sl.timerAt = sl.timesOut
	}
	sl.mu.Unlock()
	if cancel != nil && left <= 0 {
		cancel(context.DeadlineExceeded)
	}
}

// armLocked makes the slot's timer fire by timesOut, d from now, for the
// attempt that starts; sl.mu is held.
func (sl *slot) armLocked(d time.Duration, timesOut time.Time) {
	switch {
	case sl.timer == nil:
		sl.timer = time.AfterFunc(d, sl.timedOut)
	case sl.timerAt.IsZero() || sl.timerAt.After(timesOut):
		sl.timer.Reset(d)
	default: // it fires before this attempt is due, and sets itself again then
		return
	}
	sl.timerAt = timesOut
}

// stopTimer stops the slot's timer: its runner is done.
func (sl *slot) stopTimer() {
	sl.mu.Lock()
	if sl.timer != nil {
		sl.timer.Stop()
		sl.timerAt = time.Time{}
	}
	sl.mu.Unlock()
}

// attempt is a running attempt as the watchdog would settle it: its envelope
// and its limits. env is the runner's, which returns to a pool once the
// attempt is cleared from its slot: read it under the slot's lock, and copy
// what is kept past it (running and abandon do).
type attempt struct {
	j          *job
	env        *codec.Envelope
	def        *core.TaskDef
	maxRetries int
	timeout    time.Duration
}

// complete fills in cfg's defaults (those of c, the App, where it has them)
// and checks the result.
func (cfg *Config) complete(c *core.App) error {
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.Prefetch == 0 {
		cfg.Prefetch = cfg.Concurrency
	}
	if cfg.ExecutorPoolSize == 0 {
		cfg.ExecutorPoolSize = runtime.GOMAXPROCS(0)
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.MaxRecoveries == 0 {
		cfg.MaxRecoveries = DefaultMaxRecoveries
	}
	if cfg.DeadMaxAge == 0 {
		cfg.DeadMaxAge = DefaultDeadMaxAge
	}
	if cfg.DeadMaxLen == 0 {
		cfg.DeadMaxLen = DefaultDeadMaxLen
	}
	if cfg.Logger == nil {
		cfg.Logger = c.Log
	}
	if cfg.TimeoutGrace == 0 {
		cfg.TimeoutGrace = DefaultTimeoutGrace
	}
	if cfg.UnknownTaskRetries == 0 {
		cfg.UnknownTaskRetries = DefaultUnknownRetries
	}
	// -1 means none for the two limits whose zero means the default.
	if cfg.UnknownTaskRetries == -1 {
		cfg.UnknownTaskRetries = 0
	}
	if cfg.MaxRecoveries == -1 {
		cfg.MaxRecoveries = 0
	}
	if cfg.now == nil {
		cfg.now = time.Now
	} else {
		cfg.skewed = true
	}
	if cfg.Name == "" {
		host, _ := os.Hostname()
		cfg.Name = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	switch {
	case cfg.Concurrency < 0 || cfg.Prefetch < 0 || cfg.ExecutorPoolSize < 0:
		return errors.New("worker: concurrency, prefetch and executor pool size must be positive")
	case cfg.LeaseTTL < 30*time.Millisecond:
		return fmt.Errorf("worker: lease TTL %s is under 30ms", cfg.LeaseTTL)
	case cfg.ShutdownTimeout < 0 || cfg.MaxRecoveries < 0 || cfg.DeadMaxAge < 0 || cfg.DeadMaxLen < 0 ||
		cfg.TimeoutGrace < 0 || cfg.UnknownTaskRetries < 0:
		return errors.New("worker: durations and limits must not be negative")
	case cfg.WaitReplicas < -1 || cfg.WaitReplicasTimeout < 0:
		return fmt.Errorf("worker: WaitReplicas %d (-1 for none) or WaitReplicasTimeout %s is negative", cfg.WaitReplicas, cfg.WaitReplicasTimeout)
	}
	return nil
}

// New checks cfg and returns a worker for app.
func New(app *rediq.App, cfg Config) (*Worker, error) {
	c := core.Unwrap(app)
	if err := cfg.complete(c); err != nil {
		return nil, err
	}
	names := append([]string(nil), cfg.Queues...)
	if len(names) == 0 { // serve the queues the App's tasks go to
		for _, n := range c.TaskNames() {
			if d, ok := c.Task(n); ok && !slices.Contains(names, d.Queue) {
				names = append(names, d.Queue)
			}
		}
		slices.Sort(names)
	}
	if !cfg.SkipDefaultQueue {
		names = append(names, rediq.DefaultQueue)
	}
	b := c.Broker()
	switch repl := b.Replication(); {
	case cfg.WaitReplicas < 0:
		b = b.WithReplication(broker.Replication{})
	case cfg.WaitReplicas > 0:
		repl = broker.Replication{Replicas: cfg.WaitReplicas, Timeout: cmp.Or(cfg.WaitReplicasTimeout, rediq.DefaultWaitReplicasTimeout)}
		if err := b.CheckReplication(repl); err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
		b = b.WithReplication(repl)
	case cfg.WaitReplicasTimeout > 0 && repl.Replicas > 0:
		repl.Timeout = cfg.WaitReplicasTimeout
		if err := b.CheckReplication(repl); err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
		b = b.WithReplication(repl)
	}
	w := &Worker{
		app: c, b: b, cfg: cfg, log: cfg.Logger.With(zap.String("worker", cfg.Name)),
		byName:  map[string]*queue{},
		keep:    broker.DeadRetention{MaxAge: cfg.DeadMaxAge, MaxLen: cfg.DeadMaxLen},
		life:    lifecycle{stopReq: make(chan context.Context, 1), done: make(chan struct{})},
		pool:    runnerPool{abort: make(chan struct{}), forced: make(chan struct{}), slots: map[*slot]struct{}{}},
		cancels: cancelRegistry{ids: map[string]time.Time{}},
		probes:  probeState{resub: make(chan struct{}, 1)},
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		if err := broker.ValidateQueueName(n); err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
		weight := 1
		if wt, ok := cfg.Weights[n]; ok {
			if wt < 1 {
				return nil, fmt.Errorf("worker: weight of queue %q must be at least 1", n)
			}
			weight = wt
		}
		q := &queue{Queue: b.Queue(n), weight: weight, held: map[leaseKey]struct{}{}}
		q.recovered.Store(true) // unknown until its first fetch: offer it the turn
		w.queues = append(w.queues, q)
		w.byName[q.Name] = q
	}
	for n := range cfg.Weights {
		if !seen[n] {
			return nil, fmt.Errorf("worker: weight given for queue %q, which the worker does not serve", n)
		}
	}
	if len(w.queues) == 0 {
		return nil, errors.New("worker: no queues to serve (SkipDefaultQueue with no Queues)")
	}
	w.session = cfg.Name + "/" + codec.NewID(time.Now())[12:]
	w.prefetch.capacity = int64(cfg.Concurrency + cfg.Prefetch)
	w.prefetch.jobs = make(chan *job, w.prefetch.capacity)
	w.prefetch.kick = make(chan struct{}, 1)
	w.windowKick = make(chan struct{}, 1)
	w.observers = []attemptObserver{batchObserver{w}}
	w.clock = realClock{now: cfg.now}
	w.settler.init(w)
	w.out.init(w)
	w.lease.init(w.clock.Now, !cfg.skewed)
	return w, nil
}

// Name returns the worker's name.
func (w *Worker) Name() string { return w.cfg.Name }

// Run starts the worker and blocks until it has stopped: when ctx ends it stops
// fetching and drains within Config.ShutdownTimeout (see Shutdown for a drain
// bounded by a context of your own). It first checks that Redis answers (a
// PING, before the BeforeWorkerStartup hooks run) and returns an error naming
// the server if not. It returns the BeforeWorkerStartup hooks' error if one
// fails, else nil after a complete drain, or an error describing what could
// not be drained. A Worker runs once.
func (w *Worker) Run(ctx context.Context) error {
	if !w.life.started.CompareAndSwap(false, true) {
		return errors.New("worker: Run called twice")
	}
	defer close(w.life.done)
	w.life.runErr = w.run(ctx)
	return w.life.runErr
}

// redisCheckTimeout bounds the PING that Run starts with.
const redisCheckTimeout = 10 * time.Second

// checkRedis pings Redis, naming it (without its password) in the error.
func (w *Worker) checkRedis(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, redisCheckTimeout)
	defer cancel()
	if err := w.b.Ping(pctx); err != nil {
		return fmt.Errorf("Redis at %s (namespace %q): %w", w.app.RedisName(), w.b.Namespace(), err)
	}
	return nil
}

// Shutdown stops a running worker like http.Server.Shutdown: it stops fetching,
// lets running and prefetched tasks finish until ctx ends, then cancels what is
// still running and returns what never started to its queue. It waits for Run to
// return, and returns ctx.Err() if ctx ended before the drain was complete.
// Calling it again, or with a context already done (to skip the wait), is safe.
func (w *Worker) Shutdown(ctx context.Context) error {
	if !w.life.started.Load() {
		return errors.New("worker: not running")
	}
	select {
	case w.life.stopReq <- ctx:
	default: // a stop is already under way
	}
	select {
	case <-w.life.done:
		// Run may have returned before this select: a ctx already done cut
		// the drain as surely as one that ends while it waits.
		if w.life.cut.Load() {
			return ctx.Err()
		}
		return nil
	case <-ctx.Done():
		w.force()
		<-w.life.done
		return ctx.Err()
	}
}

func (w *Worker) force() { w.pool.forceOnce.Do(func() { close(w.pool.forced) }) }
