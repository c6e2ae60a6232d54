package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/broker"
	"github.com/rediq/rediq/internal/core"
	"github.com/rediq/rediq/internal/settings"
)

// Main is the worker command line of an application binary: it runs a worker
// for app until SIGINT or SIGTERM, drains it, and exits. A second signal skips
// the drain's wait. --help lists the flags.
//
// cfg, if given, is the program's configuration of the worker. Each setting
// can be changed where the program is deployed: a REDIQ_… environment variable
// overrides the program's value, and a flag on the command line overrides
// both; what neither sets keeps the program's value. The App's Redis URL, TLS
// files and namespace (--redis-url, --tls-…, --namespace) are overridden the
// same way, and also by the settings file that "rediq config set" writes
// ($REDIQ_CONFIG, else rediq/config.json in the user's configuration
// directory), which ranks below the environment and above the program: flag >
// environment > file > program. A client the program passed in
// rediq.Config.Redis is never replaced: then --redis-url and --tls-… are
// errors, and their variables and the file's settings are ignored. A Logger in
// cfg is used unless a --log-… flag or variable is given.
//
// The App's connection is fixed by its first use (an enqueue, a read,
// App.Redis), so that nothing holding its client sees it replaced: a program
// calls Main before it uses the App, or Main fails when its settings would
// change the connection.
//
//	func main() {
//		app := myapp.New()
//		worker.Main(app, worker.Config{Queues: []string{"emails"}, Concurrency: 50})
//	}
//
// Main also sends go-redis's own log lines, such as failed dials, to the
// worker's logger at Warn level: go-redis has one logger per process, which
// only the program's entry point may set.
func Main(app *rediq.App, cfg ...Config) {
	os.Exit(main(app, oneConfig("Main", cfg), os.Args[0], os.Args[1:], os.Stderr, os.LookupEnv))
}

// MainArgs is Main for a program with several commands, of which the worker is
// one: it reads its flags from args instead of os.Args[1:], names itself prog
// in its usage and errors (say "myapp worker"; "" is os.Args[0]), and returns
// the exit code instead of exiting: 0 after a drain or for --help, 2 for a
// usage mistake (a bad flag, variable or settings file), 1 when the worker
// failed. Everything else is Main's, including the signal handling, which
// lasts until it returns; it closes app before returning.
//
//	if len(os.Args) > 1 && os.Args[1] == "worker" { // myapp worker --queue emails
//		os.Exit(worker.MainArgs(app, "myapp worker", os.Args[2:], worker.Config{Concurrency: 50}))
//	}
func MainArgs(app *rediq.App, prog string, args []string, cfg ...Config) int {
	return main(app, oneConfig("MainArgs", cfg), cmp.Or(prog, os.Args[0]), args, os.Stderr, os.LookupEnv)
}

// oneConfig is the optional Config of Main and MainArgs.
func oneConfig(fn string, cfg []Config) Config {
	if len(cfg) > 1 {
		panic("worker: " + fn + " takes at most one Config")
	}
	if len(cfg) == 1 {
		return cfg[0]
	}
	return Config{}
}

// flagSettings are the worker's flags with their environment variables; the
// connection settings among them are the rediq command's too.
var flagSettings = []settings.Setting{
	settings.RedisURL,
	settings.TLSCAFile,
	settings.TLSCertFile,
	settings.TLSKeyFile,
	settings.Namespace,
	{Key: "queue", Env: "REDIQ_QUEUES"},
	{Key: "skip-default-queue", Env: "REDIQ_SKIP_DEFAULT_QUEUE"},
	{Key: "strict", Env: "REDIQ_STRICT"},
	{Key: "name", Env: "REDIQ_WORKER_NAME"},
	{Key: "prefetch", Env: "REDIQ_PREFETCH"},
	{Key: "concurrency", Env: "REDIQ_CONCURRENCY"},
	{Key: "executor-pool-size", Env: "REDIQ_EXECUTOR_POOL_SIZE"},
	{Key: "shutdown-timeout", Env: "REDIQ_SHUTDOWN_TIMEOUT"},
	{Key: "lease-ttl", Env: "REDIQ_LEASE_TTL"},
	settings.WaitReplicas,
	settings.WaitReplicasTimeout,
	{Key: "log-level", Env: "REDIQ_LOG_LEVEL"},
	{Key: "log-file", Env: "REDIQ_LOG_FILE"},
	{Key: "log-format", Env: "REDIQ_LOG_FORMAT"},
}

// redisFlags are the flags that change how the App reaches Redis.
var redisFlags = []string{settings.RedisURL.Key, settings.TLSCAFile.Key, settings.TLSCertFile.Key, settings.TLSKeyFile.Key}

type options struct {
	cfg       Config
	queues    []string
	redisURL  string
	tls       core.TLSFiles
	namespace string
	logLevel  string
	logFile   string
	logFormat string
	// given maps each flag set on the command line, by the environment or by
	// the settings file to where: "--name", "$REDIQ_WORKER_NAME" or
	// "redis-url in /home/u/.config/rediq/config.json".
	given map[string]string
}

// logGiven reports whether a --log-… flag or variable was given.
func (o *options) logGiven() bool {
	return o.given["log-level"] != "" || o.given["log-file"] != "" || o.given["log-format"] != ""
}

// parseFlags reads the command line, then the environment, then the settings
// file over base, the program's Config, and namespace, the App's.
func parseFlags(prog string, args []string, stderr io.Writer, getenv func(string) (string, bool), base Config, namespace string) (*options, error) {
	o := &options{cfg: base, given: map[string]string{}}
	fs := o.flags(prog, stderr, base, namespace)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		// A program whose worker is a subcommand ("myapp worker") passes the
		// arguments after it to MainArgs.
		return nil, fmt.Errorf("unexpected argument %q: the worker takes flags only (a program that runs it as a subcommand passes the arguments after it to worker.MainArgs)", fs.Arg(0))
	}
	if err := o.resolve(fs, getenv); err != nil {
		return nil, err
	}
	// Given, 0 says none, which the Config says with -1 (0 is the App's).
	if o.given["wait-replicas"] != "" && o.cfg.WaitReplicas == 0 {
		o.cfg.WaitReplicas = -1
	}
	if err := o.setQueues(); err != nil {
		return nil, err
	}
	return o, nil
}

// flags returns the worker's flag set, whose flags write to o.
func (o *options) flags(prog string, stderr io.Writer, base Config, namespace string) *pflag.FlagSet {
	c := &o.cfg
	fs := pflag.NewFlagSet(prog, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [flags]\n\nRuns a rediq worker for this program's tasks until SIGINT or SIGTERM.\n"+
			"On the first signal it stops fetching and lets running and prefetched tasks finish\n"+
			"(up to --shutdown-timeout), then returns unstarted ones to their queues; a second\n"+
			"signal skips the wait. Each flag can also be set by the environment variable shown;\n"+
			"a flag wins over its variable, and both over the program's own settings, which\n"+
			"the defaults below show. --redis-url, --tls-… and --namespace can also come from\n"+
			"the settings file of \"rediq config set\" ($%s, else rediq/config.json in the\n"+
			"user's configuration directory), below the environment and above the program.\n\nFlags:\n", prog, settings.EnvPath)
		fs.PrintDefaults()
	}
	env := map[string]string{}
	for _, s := range flagSettings {
		env[s.Key] = s.Env
	}
	help := func(name, text string) string { return text + " [$" + env[name] + "]" }
	// showDefault makes --help show the default that New gives a zero field,
	// while the field stays zero: "not given" keeps the program's value.
	showDefault := func(name string, zero bool, def string) {
		if zero {
			fs.Lookup(name).DefValue = def
		}
	}
	fs.StringVar(&o.redisURL, "redis-url", "", help("redis-url", "Redis URL: redis://, rediss:// (TLS), redis+cluster://host:port?addr=host:port…, "+
		"redis+sentinel://host:port?master_name=NAME…")+" (default: the program's, else "+rediq.DefaultRedisURL+")")
	fs.StringVar(&o.tls.CA, "tls-ca-file", "", help("tls-ca-file", "PEM file of the CA certificates that verify Redis over TLS")+" (default: the program's, else the system's)")
	fs.StringVar(&o.tls.Cert, "tls-cert-file", "", help("tls-cert-file", "PEM file of the client certificate offered to Redis over TLS; needs --tls-key-file")+" (default: the program's)")
	fs.StringVar(&o.tls.Key, "tls-key-file", "", help("tls-key-file", "PEM file of the client certificate's private key")+" (default: the program's)")
	fs.StringVar(&o.namespace, "namespace", namespace, help("namespace", "key namespace of the app's queues"))
	fs.StringArrayVarP(&o.queues, "queue", "q", queueList(base), help("queue", "queue to serve, as name or name:weight; repeat for several (the environment variable takes a comma-separated list)"))
	fs.BoolVar(&c.SkipDefaultQueue, "skip-default-queue", c.SkipDefaultQueue, help("skip-default-queue", `do not serve the "default" queue`))
	fs.BoolVar(&c.StrictPriority, "strict", c.StrictPriority, help("strict", "serve queues strictly in the order given instead of sharing by weight"))
	fs.StringVar(&c.Name, "name", c.Name, help("name", "worker name, shown in logs and task info")+orDefault(c.Name, "host:pid"))
	fs.IntVar(&c.Prefetch, "prefetch", c.Prefetch, help("prefetch", "tasks fetched ahead to wait for a free handler")+orDefault(c.Prefetch, "--concurrency"))
	fs.IntVarP(&c.Concurrency, "concurrency", "c", c.Concurrency, help("concurrency", "handlers running at once"))
	showDefault("concurrency", c.Concurrency == 0, strconv.Itoa(DefaultConcurrency))
	fs.IntVar(&c.ExecutorPoolSize, "executor-pool-size", c.ExecutorPoolSize, help("executor-pool-size", "goroutines for rediq.RunInExecutor")+orDefault(c.ExecutorPoolSize, "GOMAXPROCS"))
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, help("shutdown-timeout", "how long a stop waits for running and prefetched tasks"))
	showDefault("shutdown-timeout", c.ShutdownTimeout == 0, DefaultShutdownTimeout.String())
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", c.LeaseTTL, help("lease-ttl", "how soon another worker takes over the tasks of a worker that died"))
	showDefault("lease-ttl", c.LeaseTTL == 0, DefaultLeaseTTL.String())
	fs.IntVar(&c.WaitReplicas, "wait-replicas", c.WaitReplicas, help("wait-replicas",
		"replicas that must confirm each enqueue, fetch and settlement (Redis WAIT), so that a failover loses no enqueued task; 0 for none")+
		orDefault(c.WaitReplicas, "the program's rediq.Config.WaitReplicas, else 0"))
	fs.DurationVar(&c.WaitReplicasTimeout, "wait-replicas-timeout", c.WaitReplicasTimeout, help("wait-replicas-timeout",
		"how long each WAIT waits for them; under the Redis client's read timeout")+
		orDefault(c.WaitReplicasTimeout, "the program's rediq.Config.WaitReplicasTimeout, else "+rediq.DefaultWaitReplicasTimeout.String()))
	logs := "; a --log-… flag replaces the program's logger"
	if base.Logger == nil {
		logs = ""
	}
	fs.StringVar(&o.logLevel, "log-level", "info", help("log-level", "debug, info, warn or error"+logs))
	fs.StringVar(&o.logFile, "log-file", "", help("log-file", "append logs to this file instead of stderr"+logs))
	fs.StringVar(&o.logFormat, "log-format", "console", help("log-format", "json or console"+logs))
	return fs
}

// resolve fills in each flag that the command line did not give from the
// environment, then the settings file, as the rediq command does (package
// settings decides: flag > environment > file > the program's value, which
// is what no one sets leaves as the App has it), and records in o.given
// where each given one came from.
func (o *options) resolve(fs *pflag.FlagSet, getenv func(string) (string, bool)) error {
	src, err := settings.Open(getenv)
	if err != nil {
		return err
	}
	for _, s := range flagSettings {
		// A flag given empty counts as given: --tls-ca-file "" drops the
		// program's file.
		v := src.Resolve(s, "", fs.Changed(s.Key))
		if v.From == "" {
			continue
		}
		o.given[s.Key] = v.From
		switch {
		case v.FromFlag():
		case s.Key == "queue":
			o.queues = nil
			for _, q := range strings.Split(v.Value, ",") {
				if q = strings.TrimSpace(q); q != "" {
					o.queues = append(o.queues, q)
				}
			}
		default:
			if err := fs.Set(s.Key, v.Value); err != nil {
				return fmt.Errorf("%s: %w", v.From, err)
			}
		}
	}
	return nil
}

// setQueues makes the queue list given, if one was, the Config's: it
// replaces the program's queues and their weights.
func (o *options) setQueues() error {
	how := o.given["queue"]
	if how == "" {
		return nil
	}
	c := &o.cfg
	c.Queues, c.Weights = nil, nil
	for _, q := range o.queues {
		name, weight, hasWeight := strings.Cut(q, ":")
		c.Queues = append(c.Queues, name)
		if hasWeight {
			n, err := strconv.Atoi(weight)
			if err != nil || n < 1 {
				return fmt.Errorf("%s %q: weight must be a positive integer", how, q)
			}
			if c.Weights == nil {
				c.Weights = map[string]int{}
			}
			c.Weights[name] = n
		}
	}
	return nil
}

// orDefault is the help's note of the default New gives a zero field; pflag
// shows a set one itself.
func orDefault[T comparable](v T, def string) string {
	var zero T
	if v != zero {
		return ""
	}
	return " (default " + def + ")"
}

// queueList writes cfg's queues as --queue takes them.
func queueList(cfg Config) []string {
	var list []string
	for _, q := range cfg.Queues {
		if w, ok := cfg.Weights[q]; ok {
			q += ":" + strconv.Itoa(w)
		}
		list = append(list, q)
	}
	return list
}

func newLogger(level, file, format string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	var cfg zap.Config
	switch format {
	case "json":
		cfg = zap.NewProductionConfig()
	case "console":
		cfg = zap.NewDevelopmentConfig()
		cfg.Development = false
		cfg.DisableStacktrace = true
	default:
		return nil, fmt.Errorf("--log-format %q: want json or console", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Sampling = nil
	cfg.OutputPaths = []string{"stderr"}
	if file != "" {
		cfg.OutputPaths = []string{file}
	}
	return cfg.Build()
}

func main(app *rediq.App, base Config, prog string, args []string, stderr io.Writer, getenv func(string) (string, bool)) int {
	c := core.Unwrap(app)
	o, err := parseFlags(prog, args, stderr, getenv, base, c.Namespace())
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 2
	}
	log := base.Logger
	if log == nil || o.logGiven() {
		if log, err = newLogger(o.logLevel, o.logFile, o.logFormat); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", prog, err)
			return 2
		}
	}
	defer log.Sync() //nolint:errcheck // nothing to do about a failed flush at exit
	o.cfg.Logger = log
	defer app.Close()
	if err := configureApp(c, o, log); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 2
	}
	defer core.RouteRedisLog(log)()
	w, err := New(app, o.cfg)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 2
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer func() {
		signal.Stop(sigs)
		close(sigs) // ends the goroutine below; nothing sends after Stop
	}()
	go func() {
		sig, ok := <-sigs
		if !ok {
			return
		}
		log.Info("signal received: draining; send it again to stop at once", zap.Stringer("signal", sig),
			zap.Duration("shutdown_timeout", w.cfg.ShutdownTimeout))
		stop()
		if sig, ok = <-sigs; ok {
			log.Warn("second signal: cancelling running tasks and returning the rest", zap.Stringer("signal", sig))
			done, cancel := context.WithCancel(context.Background())
			cancel()
			_ = w.Shutdown(done)
		}
	}()
	if err := w.Run(ctx); err != nil {
		log.Error("worker", zap.Error(err))
		return 1
	}
	return 0
}

// configureApp applies the namespace, Redis URL, TLS files and wait for
// replicas of the command line, the environment and the settings file to
// the App, in one call that the App allows only before its first use; each
// keeps the App's own where none gives one. A client the program passed in
// is kept: a flag that would replace it is an error, a variable or a file's
// setting is ignored and logged. The wait for replicas applies to the App as
// well as to the worker: the tasks its handlers enqueue wait for the
// replicas as its settlements do.
func configureApp(c *core.App, o *options, log *zap.Logger) error {
	was := c.Setup()
	s := was
	if o.given["namespace"] != "" {
		s.Namespace = o.namespace
	}
	if c.OwnsClient() {
		s.Endpoint = o.endpoint(was.Endpoint)
	} else if err := o.keepProgramsClient(log); err != nil {
		return err
	}
	s.Replication = o.replication(was.Replication)
	// The client is never changed here; only the rest can differ.
	if s.Endpoint == was.Endpoint && s.Namespace == was.Namespace && s.Replication == was.Replication {
		return nil
	}
	err := c.Configure(s)
	var (
		ue *core.URLError
		se *core.SettingError
	)
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ue):
		return fmt.Errorf("%s: %w", cmp.Or(o.given["redis-url"], "--redis-url"), ue.Err)
	case errors.As(err, &se) && se.Setting == settings.Namespace.Key:
		return fmt.Errorf("%s: %w", o.given["namespace"], se.Err)
	case errors.As(err, &se) && se.Setting == settings.WaitReplicas.Key:
		// Without a wait flag, the new URL's read timeout is what refused the
		// program's wait.
		return fmt.Errorf("%s: %w", cmp.Or(o.given["wait-replicas-timeout"], o.given["wait-replicas"], o.given["redis-url"], "--redis-url"), se.Err)
	}
	return err
}

// keepProgramsClient refuses the flags that would replace a client the
// program passed in, and logs the variables and file settings it ignores.
func (o *options) keepProgramsClient(log *zap.Logger) error {
	for _, name := range redisFlags {
		switch how := o.given[name]; {
		case strings.HasPrefix(how, "--"):
			return fmt.Errorf("%s: this program passes its own Redis client (rediq.Config.Redis), which the command line cannot replace", how)
		case strings.HasPrefix(how, "$"):
			log.Info("ignoring the environment's Redis setting: the program passes its own Redis client",
				zap.String("variable", strings.TrimPrefix(how, "$")))
		case how != "":
			log.Info("ignoring the settings file's Redis setting: the program passes its own Redis client",
				zap.String("setting", how))
		}
	}
	return nil
}

// endpoint is ep, the App's, with the URL and TLS files given.
func (o *options) endpoint(ep core.Endpoint) core.Endpoint {
	if o.given["redis-url"] != "" && o.redisURL != "" {
		ep.URL = o.redisURL
	}
	// A TLS flag given empty drops the program's file.
	if o.given["tls-ca-file"] != "" {
		ep.TLS.CA = o.tls.CA
	}
	if o.given["tls-cert-file"] != "" {
		ep.TLS.Cert = o.tls.Cert
	}
	if o.given["tls-key-file"] != "" {
		ep.TLS.Key = o.tls.Key
	}
	return ep
}

// replication is r, the App's wait for replicas, with --wait-replicas and
// --wait-replicas-timeout (or their variables) applied.
func (o *options) replication(r broker.Replication) broker.Replication {
	n, timeout := o.given["wait-replicas"], o.given["wait-replicas-timeout"]
	if n == "" && timeout == "" {
		return r
	}
	if n != "" {
		r.Replicas = max(o.cfg.WaitReplicas, 0)
	}
	switch {
	case r.Replicas == 0:
		r = broker.Replication{}
	case timeout != "" && o.cfg.WaitReplicasTimeout > 0:
		r.Timeout = o.cfg.WaitReplicasTimeout
	case r.Timeout == 0:
		r.Timeout = rediq.DefaultWaitReplicasTimeout
	}
	return r
}
