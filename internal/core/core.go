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
	// ResultTable is the batch table a success's result goes to ("" default).
	ResultTable string
	// Run decodes the msgpack args and calls the typed handler.
	Run func(ctx context.Context, args []byte) (any, error)
}

// App is the shared state behind a rediq.App.
type App struct {
	Log *zap.Logger

	broker atomic.Pointer[broker.Broker]
	own    bool     // the client was made by rediq: close it
	ep     Endpoint // what the client was dialed from, when own
	// unroute ends go-redis's log lines going to Log (RouteRedisLog).
	unroute func()

	mu    sync.RWMutex
	tasks atomic.Pointer[map[string]*TaskDef] // copied on write: runners read it lock-free
	hooks [NumEvents][]Hook
}

// NewApp returns an App with no tasks or hooks. own says whether Close closes rdb.
func NewApp(rdb redis.UniversalClient, own bool, ns string, log *zap.Logger) *App {
	a := &App{Log: log, own: own}
	installRedisLog()
	if log.Core().Enabled(zap.WarnLevel) {
		a.unroute = RouteRedisLog(log)
	}
	a.tasks.Store(&map[string]*TaskDef{})
	a.broker.Store(broker.New(rdb, ns))
	return a
}

// Broker returns the App's broker.
func (a *App) Broker() *broker.Broker { return a.broker.Load() }

// Redis is the App's client (App.Redis: the users' one way to raw Redis).
func (a *App) Redis() redis.UniversalClient { return a.Broker().Client() }

// Close closes the client if the App made it.
func (a *App) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.unroute != nil {
		a.unroute()
	}
	if !a.own {
		return nil
	}
	if err := a.Broker().Client().Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
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
	EnqueuedAt time.Time
	Worker     string
	MaxRetries int
	Timeout    time.Duration
	Retried    int
	Recovered  int

	Result    any
	HasResult bool
	Err       error

	Exec *executor.Pool
	Log  *zap.Logger // the worker's logger; Logger adds the task's fields

	// Batch is the task's batch (0: none); Print writes a line to its output,
	// Collect appends encoded rows to one of its tables.
	Batch   int64
	Print   func(line string)
	Collect func(table string, rows [][]byte) error

	logOnce sync.Once
	taskLog *zap.Logger
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

// StateFrom returns the state ctx carries, or nil.
func StateFrom(ctx context.Context) *State {
	s, _ := ctx.Value(stateKey{}).(*State)
	return s
}
