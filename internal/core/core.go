// Package core is the state that package rediq (registration, enqueue, accessors)
// and package worker (running tasks) share without exporting it to users.
package core

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/executor"
	"github.com/rediq/rediq/internal/window"
)

// NumEvents is the number of rediq.Event values, which index the hook lists
// (rediq defines the events; package rediq checks the number at compile time).
const NumEvents = 6

// Hook is a registered event handler.
type Hook func(ctx context.Context) error

// TaskDef is a registered task with its defaults.
type TaskDef struct {
	Name     string
	Queue    string
	Priority int
	Retries  int
	Timeout  time.Duration
	Backoff  func(retried int) time.Duration
	// Defaults of the options that also work per call (0: none).
	Retention, Unique, ExpireIn, Memo time.Duration
	// Window is when the task may start (rediq.RunWindow); nil: any time.
	Window *window.Spec
	// ResultTable is the batch table a success's result goes to ("" default).
	ResultTable string
	// Limit is the task's limit declared in code (rediq.RateLimit,
	// rediq.Concurrency): workers write it as the default at start.
	Limit broker.Limit
	// Run decodes the msgpack args and calls the typed handler.
	Run func(ctx context.Context, args []byte) (any, error)
}

// App is the shared state behind a rediq.App.
type App struct {
	Log *zap.Logger
	// unroute ends go-redis's log lines going to Log (RouteRedisLog).
	unroute func()

	// conn is how the App reaches Redis. It is decided before the App is
	// used, by NewApp and perhaps once more by worker.Main (Configure), and
	// fixed by the first use: a client or broker that callers hold is never
	// replaced, so neither needs an atomic pointer.
	conn struct {
		sync.Mutex
		setup Setup
		rdb   redis.UniversalClient // made from setup, or setup.Client; no I/O until used
		fixed bool                  // used: Configure refuses
	}
	fixOnce sync.Once
	broker  *broker.Broker // set by fix, then never changed

	mu    sync.RWMutex
	tasks atomic.Pointer[map[string]*TaskDef] // copied on write: runners read it lock-free
	hooks [NumEvents][]Hook
	// schedules declared in code (schedule.go), guarded by mu.
	schedules map[string]*ScheduleDef
}

// NewApp returns an App with no tasks or hooks, on s's client: the
// program's, or one dialed from s.Endpoint that Close closes. It does no I/O.
func NewApp(s Setup, log *zap.Logger) (*App, error) {
	rdb, err := s.check(nil, Setup{})
	if err != nil {
		return nil, err
	}
	a := &App{Log: log}
	a.conn.setup, a.conn.rdb = s, rdb
	installRedisLog()
	if log.Core().Enabled(zap.WarnLevel) {
		a.unroute = RouteRedisLog(log)
	}
	a.tasks.Store(&map[string]*TaskDef{})
	return a, nil
}

// Broker returns the App's broker, built by the first call: from then on the
// App's connection is fixed.
func (a *App) Broker() *broker.Broker {
	a.fixOnce.Do(a.fix)
	return a.broker
}

// Redis returns the App's client, which fixes the App's connection as
// Broker does: the caller may keep it.
func (a *App) Redis() redis.UniversalClient {
	a.fixOnce.Do(a.fix)
	return a.conn.rdb // fixed from here on
}

func (a *App) fix() {
	a.conn.Lock()
	defer a.conn.Unlock()
	a.conn.fixed = true
	a.broker = broker.New(a.conn.rdb, a.conn.setup.Namespace)
	a.broker.SetReplication(a.conn.setup.Replication)
}

// Close closes the client if the App made it. A closed App stays on its
// closed client: it can no longer be configured.
func (a *App) Close() error {
	a.fixOnce.Do(a.fix)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.unroute != nil {
		a.unroute()
	}
	if a.conn.setup.Client != nil {
		return nil
	}
	if err := a.conn.rdb.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
		return err
	}
	return nil
}

// Package rediq sets these at init, so that package worker can reach what it
// needs of rediq without it being part of rediq's API.
var (
	// Unwrap returns the core of a *rediq.App.
	Unwrap func(app any) *App
	// EnqueueOnComplete enqueues a completed batch's stored OnComplete call,
	// if it has one, and clears its pending flag.
	EnqueueOnComplete func(ctx context.Context, b *broker.Broker, k *broker.BatchKeys) error
)

// AddTask registers def; it reports false if the name is taken.
func (a *App) AddTask(def *TaskDef) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := *a.tasks.Load()
	if _, dup := old[def.Name]; dup {
		return false
	}
	tasks := make(map[string]*TaskDef, len(old)+1)
	for n, d := range old {
		tasks[n] = d
	}
	tasks[def.Name] = def
	a.tasks.Store(&tasks)
	return true
}

// Task returns the registered task called name.
func (a *App) Task(name string) (*TaskDef, bool) {
	d, ok := (*a.tasks.Load())[name]
	return d, ok
}

// TaskNames lists the registered task names, sorted.
func (a *App) TaskNames() []string {
	return slices.Sorted(maps.Keys(*a.tasks.Load()))
}

// AddHook appends a hook for e, a rediq.Event.
func (a *App) AddHook(e int, h Hook) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.hooks[e] = append(a.hooks[e], h)
}

// Hooks returns the hooks registered for e, a rediq.Event.
func (a *App) Hooks(e int) []Hook {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.hooks[e]
}

// State is what the context accessors read: the current task (ID empty in worker
// hooks) and the worker's executor.
type State struct {
	ID         string
	Name       string
	Queue      string
	Priority   int
	Args       []byte
	EnqueuedAt int64 // Unix milliseconds (a time.Time would be 16 bytes more per task)
	Worker     string
	MaxRetries int
	Timeout    time.Duration
	Retried    int
	Recovered  int
	LimitKey   string

	Result any
	Err    error

	Exec *executor.Pool
	Log  *zap.Logger // the worker's logger; Logger adds the task's fields

	// Batch is the task's batch (0: none); Print writes a line to its output,
	// Collect appends encoded rows to one of its tables.
	Batch   int64
	Print   func(line string)
	Collect func(table string, rows [][]byte) error

	HasResult bool // beside logOnce, in its padding
	logOnce   sync.Once
	taskLog   *zap.Logger
}

// Logger returns a logger carrying the task's fields, built on first use.
func (s *State) Logger() *zap.Logger {
	s.logOnce.Do(func() {
		s.taskLog = s.Log
		if s.ID != "" {
			s.taskLog = s.Log.With(zap.String("task_id", s.ID), zap.String("task", s.Name),
				zap.String("queue", s.Queue), zap.Int("retried", s.Retried))
		}
	})
	return s.taskLog
}

type stateKey struct{}

// WithState returns ctx carrying s.
func WithState(ctx context.Context, s *State) context.Context {
	return context.WithValue(ctx, stateKey{}, s)
}

// StateContext is a context carrying a task's State, as WithState makes one,
// for a caller that keeps it in a struct of its own (the worker's attempt):
// one allocation less per task.
type StateContext struct {
	context.Context
	State *State
}

// Value answers the State for StateFrom, and asks the parent for other keys.
func (c *StateContext) Value(key any) any {
	if key == (stateKey{}) {
		return c.State
	}
	return c.Context.Value(key)
}

// StateFrom returns the state ctx carries, or nil.
func StateFrom(ctx context.Context) *State {
	s, _ := ctx.Value(stateKey{}).(*State)
	return s
}
