package rediq

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/core"
	"github.com/rediq/rediq/internal/settings"
)

// DefaultRedisURL is used when neither Config.RedisURL nor REDIQ_REDIS_URL is set.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

// DefaultNamespace prefixes every key when Config.Namespace is empty.
const DefaultNamespace = "rediq"

// Config configures an App. The zero value is usable: it connects to
// $REDIQ_REDIS_URL or DefaultRedisURL.
type Config struct {
	// RedisURL says where Redis is and what it is; its scheme decides:
	//
	//	redis://[[user]:password@]host[:port][/db]       one server
	//	unix://[[user]:password@]/path/to/redis.sock     one server, on a socket
	//	redis+cluster://[[user]:password@]host:port[?addr=host:port&addr=…]
	//	                                                 a Redis Cluster, seeded by host and each addr
	//	redis+sentinel://[[user]:password@]host:port[/db]?master_name=NAME[&addr=host:port…]
	//	                                                 the master NAME, through the Sentinels at host and each addr
	//
	// rediss, rediss+cluster and rediss+sentinel are the same over TLS. A
	// sentinel URL's user and password are the Sentinels'; the master's go in
	// the username= and password= options. Other options are go-redis's
	// (dial_timeout=3s, pool_size=50, skip_verify=true, …). Default:
	// $REDIQ_REDIS_URL, then DefaultRedisURL. Ignored when Redis is set.
	RedisURL string
	// TLSCAFile, TLSCertFile and TLSKeyFile name PEM files for a TLS URL: CA
	// certificates that verify the server, in place of the system's, and a
	// client certificate with its key (both or neither). TLS files with a URL
	// without TLS are an error. Default: $REDIQ_TLS_CA_FILE,
	// $REDIQ_TLS_CERT_FILE and $REDIQ_TLS_KEY_FILE, each for its own field.
	// Ignored when Redis is set.
	TLSCAFile   string
	TLSCertFile string
	TLSKeyFile  string
	// Redis is a client of the caller's: a *redis.Client, *redis.ClusterClient or
	// a Sentinel failover client. rediq uses it as is and never closes it, nor
	// replaces it (worker.Main's --redis-url is then an error).
	Redis redis.UniversalClient
	// Namespace prefixes every key, so that several apps share one Redis.
	// Default: $REDIQ_NAMESPACE, then DefaultNamespace.
	Namespace string
	// Logger receives the library's logs, and go-redis's (failed dials: at
	// Warn, at most one line of a kind per 10s; go-redis has one logger per
	// process, so they go to the newest open App's). Default: a no-op logger.
	Logger *zap.Logger
	// MaxMessageBytes bounds one encoded task message (its arguments and
	// options): a larger Enqueue fails with a *TooLargeError before anything is
	// written. Redis holds every pending task in memory; large inputs belong in
	// a blob store with their key in the arguments. Default
	// DefaultMaxMessageBytes.
	MaxMessageBytes int
	// WaitReplicas, when above 0, has Redis confirm each enqueue on that many
	// replicas (WAIT) before Enqueue reports success; a worker on the App waits
	// for them after its fetches and settlements too (worker.Config can say
	// otherwise). Redis replicates asynchronously: without this, a task whose
	// Enqueue succeeded in the instant before a failover (Sentinel's or
	// Cluster's) is lost when the replica that takes over had not copied it.
	// An Enqueue whose WAIT hears from fewer replicas in time fails with a
	// *ReplicationError (ErrNotReplicated) naming the tasks, which are written
	// on the master. The cost is a round trip to the replicas per enqueue call
	// (concurrent Enqueues share one). Default: $REDIQ_WAIT_REPLICAS, then 0.
	WaitReplicas int
	// WaitReplicasTimeout bounds each WAIT; it must be shorter than the Redis
	// client's read timeout (3s unless the URL's read_timeout says otherwise).
	// Default DefaultWaitReplicasTimeout.
	WaitReplicasTimeout time.Duration
}

// DefaultWaitReplicasTimeout is Config.WaitReplicasTimeout's default.
const DefaultWaitReplicasTimeout = time.Second

// DefaultMaxMessageBytes is Config.MaxMessageBytes's default: 1 MiB.
const DefaultMaxMessageBytes = 1 << 20

// App is the registry of tasks and hooks and the connection to Redis. Producers
// use it to enqueue; package worker runs its tasks. It is safe for concurrent use.
type App struct {
	core            *core.App
	maxMessageBytes int
	hubOnce         sync.Once
	waits           *waitHub // Wait's shared subscription, started by the first Wait
	batchMu         sync.Mutex
	openBatches     map[*Batch]struct{}     // keep-alive batches not closed: Close stops their keep-alives
	heldBatches     map[*batchHold]struct{} // holds of detached batches not closed: Close seals them
}

func init() {
	core.Unwrap = func(app any) *core.App { return app.(*App).core }
	core.EnqueueOnComplete = enqueueOnComplete
}

// New returns an App. It does not connect until first used. Each setting is
// the Config's, else its environment variable's, else the default; New
// reads no settings file, which only the rediq command and worker.Main do.
func New(cfg Config) (*App, error) {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.MaxMessageBytes == 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.MaxMessageBytes < 0 {
		return nil, fmt.Errorf("rediq: MaxMessageBytes %d is negative", cfg.MaxMessageBytes)
	}
	s, err := setup(cfg, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	c, err := core.NewApp(s, cfg.Logger)
	if ue := (*core.URLError)(nil); errors.As(err, &ue) {
		return nil, &RedisURLError{Err: ue.Err}
	}
	if err != nil {
		return nil, fmt.Errorf("rediq: %w", err)
	}
	return &App{core: c, maxMessageBytes: cfg.MaxMessageBytes}, nil
}

// setup decides the App's connection from cfg, else getenv, else the
// defaults.
func setup(cfg Config, getenv func(string) (string, bool)) (core.Setup, error) {
	env := settings.Sources{Getenv: getenv} // no file: a program's settings are its own
	get := func(s settings.Setting, field, def string) string {
		return cmp.Or(env.Resolve(s, field, field != "").Value, def)
	}
	s := core.Setup{Client: cfg.Redis, Namespace: get(settings.Namespace, cfg.Namespace, DefaultNamespace)}
	if cfg.Redis == nil {
		s.Endpoint = core.Endpoint{
			URL: get(settings.RedisURL, cfg.RedisURL, DefaultRedisURL),
			TLS: core.TLSFiles{
				CA:   get(settings.TLSCAFile, cfg.TLSCAFile, ""),
				Cert: get(settings.TLSCertFile, cfg.TLSCertFile, ""),
				Key:  get(settings.TLSKeyFile, cfg.TLSKeyFile, ""),
			},
		}
	}
	n := strconv.Itoa(cfg.WaitReplicas)
	if cfg.WaitReplicas == 0 {
		n = get(settings.WaitReplicas, "", "")
	}
	var err error
	s.Replication, err = replication(n, cfg.WaitReplicasTimeout)
	return s, err
}

// replication is the WAIT that Config's WaitReplicas (n, perhaps from
// $REDIQ_WAIT_REPLICAS) and WaitReplicasTimeout ask for, with their defaults.
func replication(n string, timeout time.Duration) (broker.Replication, error) {
	replicas := 0
	if n != "" {
		v, err := strconv.Atoi(n)
		if err != nil {
			return broker.Replication{}, fmt.Errorf("rediq: %s=%q is not a number of replicas", settings.WaitReplicas.Env, n)
		}
		replicas = v
	}
	if replicas < 0 || timeout < 0 {
		return broker.Replication{}, fmt.Errorf("rediq: WaitReplicas %d and WaitReplicasTimeout %s must not be negative", replicas, timeout)
	}
	if replicas == 0 {
		return broker.Replication{}, nil
	}
	return broker.Replication{Replicas: replicas, Timeout: cmp.Or(timeout, DefaultWaitReplicasTimeout)}, nil
}

// checkIDElsewhere fails if a queue of the namespace other than queue holds a
// task with the id (the enqueue script checks queue itself, atomically).
func (a *App) checkIDElsewhere(ctx context.Context, id, queue string) error {
	in, err := a.core.Broker().Holder(ctx, id, queue)
	if err != nil {
		return fmt.Errorf("rediq: check task id %q: %w", id, err)
	}
	if in != "" {
		return &DuplicateError{ExistingID: TaskID(id), Queue: in}
	}
	return nil
}

// Redis returns the client the App uses. Like any use of the App, it fixes
// the App's connection: worker.Main can no longer change it.
func (a *App) Redis() redis.UniversalClient { return a.core.Redis() }

// Namespace returns the key prefix.
func (a *App) Namespace() string { return a.core.Namespace() }

// Close closes the Redis client if the App created it; a client passed in
// Config.Redis is left open.
func (a *App) Close() error {
	a.hubOnce.Do(func() {}) // no hub from now on, unless one started
	if a.waits != nil {
		_ = a.waits.close()
	}
	// Open batches lose their producer: keep-alive ones stop, detached ones
	// are sealed.
	a.closeBatches()
	if err := a.core.Close(); err != nil {
		return fmt.Errorf("rediq: close: %w", err)
	}
	return nil
}
