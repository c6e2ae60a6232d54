package core

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// go-redis logs through one logger per process (redis.SetLogger has no
// per-client form), by default to stderr: with Redis down, two "failed to dial"
// lines a second. The first App installs redisLog in its place, which hands
// each line to the logger of the newest open App that has one (worker.Main's
// own while it runs), at Warn, at most once per redisLogEvery for each kind of
// line (its format), counting the lines held back meanwhile. With no logger to
// hand them to (the library's default is a no-op) the lines are dropped. A
// program that wants go-redis's lines elsewhere calls redis.SetLogger after
// its first rediq.New.

// redisLogEvery is how often one kind of go-redis line is logged at most.
const redisLogEvery = 10 * time.Second

var (
	redisLog        = newRedisRouter(redisLogEvery, time.Now)
	redisLogInstall sync.Once
)

// installRedisLog makes go-redis log through redisLog, once per process.
func installRedisLog() { redisLogInstall.Do(func() { redis.SetLogger(redisLog) }) }

// RouteRedisLog hands go-redis's log lines to log (named "redis") until the
// returned func is called, unless a newer route is open.
func RouteRedisLog(log *zap.Logger) (unroute func()) {
	installRedisLog()
	// The caller would be this file, not the line of go-redis that logged.
	return redisLog.route(log.Named("redis").WithOptions(zap.WithCaller(false)))
}

type redisRouter struct {
	every time.Duration
	now   func() time.Time

	mu     sync.Mutex
	routes []*zap.Logger // newest last
	kinds  map[string]*lineKind
}

// lineKind is what the router remembers of one format.
type lineKind struct {
	logged time.Time // when a line of the kind was last logged
	held   int       // lines not logged since
}

func newRedisRouter(every time.Duration, now func() time.Time) *redisRouter {
	return &redisRouter{every: every, now: now, kinds: map[string]*lineKind{}}
}

func (r *redisRouter) route(log *zap.Logger) func() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.routes = append(r.routes, log)
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			for i := len(r.routes) - 1; i >= 0; i-- {
				if r.routes[i] == log {
					r.routes = append(r.routes[:i], r.routes[i+1:]...)
					break
				}
			}
		})
	}
}

// Printf is go-redis's logging interface.
func (r *redisRouter) Printf(_ context.Context, format string, v ...any) {
	r.mu.Lock()
	if len(r.routes) == 0 {
		r.mu.Unlock()
		return
	}
	log := r.routes[len(r.routes)-1]
	k := r.kinds[format]
	if k == nil {
		if len(r.kinds) >= 100 { // formats are constants in go-redis; bound it anyway
			clear(r.kinds)
		}
		k = &lineKind{}
		r.kinds[format] = k
	}
	now := r.now()
	if !k.logged.IsZero() && now.Sub(k.logged) < r.every {
		k.held++
		r.mu.Unlock()
		return
	}
	held := k.held
	k.logged, k.held = now, 0
	r.mu.Unlock()

	msg := strings.TrimPrefix(strings.TrimSpace(fmt.Sprintf(format, v...)), "redis: ")
	if held > 0 {
		log.Warn(msg, zap.Int("suppressed", held)) // lines of the kind held back since the last one
		return
	}
	log.Warn(msg)
}
