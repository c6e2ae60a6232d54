package worker

import (
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
	"github.com/rediq/rediq/internal/core"
)

// Main is the worker command line for an application binary: it parses the
// flags (each also read from a REDIQ_… environment variable; a flag given on the
// command line wins), runs a worker for app until SIGINT or SIGTERM, drains it,
// and exits. A second signal skips the drain's wait. --help lists the flags.
//
//	func main() {
//		app := myapp.New()
//		worker.Main(app)
//	}
func Main(app *rediq.App) {
	os.Exit(main(app, os.Args[0], os.Args[1:], os.Stderr))
}

// flagEnv maps each flag to its environment variable.
var flagEnv = [][2]string{
	{"redis-url", "REDIQ_REDIS_URL"},
	{"queue", "REDIQ_QUEUES"},
	{"skip-default-queue", "REDIQ_SKIP_DEFAULT_QUEUE"},
	{"strict", "REDIQ_STRICT"},
	{"name", "REDIQ_WORKER_NAME"},
	{"prefetch", "REDIQ_PREFETCH"},
	{"concurrency", "REDIQ_CONCURRENCY"},
	{"executor-pool-size", "REDIQ_EXECUTOR_POOL_SIZE"},
	{"shutdown-timeout", "REDIQ_SHUTDOWN_TIMEOUT"},
	{"lease-ttl", "REDIQ_LEASE_TTL"},
	{"log-level", "REDIQ_LOG_LEVEL"},
	{"log-file", "REDIQ_LOG_FILE"},
	{"log-format", "REDIQ_LOG_FORMAT"},
}

type options struct {
	redisURL  string
	queues    []string
	logLevel  string
	logFile   string
	logFormat string
	cfg       Config
}

func parseFlags(prog string, args []string, stderr io.Writer, getenv func(string) (string, bool)) (*options, error) {
	o := &options{}
	fs := pflag.NewFlagSet(prog, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [flags]\n\nRuns a rediq worker for this program's tasks until SIGINT or SIGTERM.\n"+
			"On the first signal it stops fetching and lets running and prefetched tasks finish\n"+
			"(up to --shutdown-timeout), then returns unstarted ones to their queues; a second\n"+
			"signal skips the wait. Each flag can also be set by the environment variable shown.\n\nFlags:\n", prog)
		fs.PrintDefaults()
	}
	env := map[string]string{}
	for _, fe := range flagEnv {
		env[fe[0]] = fe[1]
	}
	help := func(name, text string) string { return text + " [$" + env[name] + "]" }
	fs.StringVar(&o.redisURL, "redis-url", "", help("redis-url", "Redis URL (redis:// or rediss://, with user:password@ and /db); default: the program's own setting, else "+rediq.DefaultRedisURL))
	fs.StringArrayVarP(&o.queues, "queue", "q", nil, help("queue", "queue to serve, as name or name:weight; repeat for several (the environment variable takes a comma-separated list)"))
	fs.BoolVar(&o.cfg.SkipDefaultQueue, "skip-default-queue", false, help("skip-default-queue", `do not serve the "default" queue`))
	fs.BoolVar(&o.cfg.StrictPriority, "strict", false, help("strict", "serve queues strictly in the order given instead of sharing by weight"))
	fs.StringVar(&o.cfg.Name, "name", "", help("name", "worker name, shown in logs and task info (default host:pid)"))
	fs.IntVar(&o.cfg.Prefetch, "prefetch", 0, help("prefetch", "tasks fetched ahead to wait for a free handler (default: --concurrency)"))
	fs.IntVarP(&o.cfg.Concurrency, "concurrency", "c", DefaultConcurrency, help("concurrency", "handlers running at once"))
	fs.IntVar(&o.cfg.ExecutorPoolSize, "executor-pool-size", 0, help("executor-pool-size", "goroutines for rediq.RunInExecutor (default GOMAXPROCS)"))
	fs.DurationVar(&o.cfg.ShutdownTimeout, "shutdown-timeout", DefaultShutdownTimeout, help("shutdown-timeout", "how long a stop waits for running and prefetched tasks"))
	fs.DurationVar(&o.cfg.LeaseTTL, "lease-ttl", DefaultLeaseTTL, help("lease-ttl", "how soon another worker takes over the tasks of a worker that died"))
	fs.StringVar(&o.logLevel, "log-level", "info", help("log-level", "debug, info, warn or error"))
	fs.StringVar(&o.logFile, "log-file", "", help("log-file", "append logs to this file instead of stderr"))
	fs.StringVar(&o.logFormat, "log-format", "console", help("log-format", "json or console"))
	// The environment sets defaults; the command line overrides them. The queue
	// list is kept apart so that --queue replaces it rather than adding to it.
	var envQueues []string
	for _, fe := range flagEnv {
		v, ok := getenv(fe[1])
		if !ok || v == "" {
			continue
		}
		if fe[0] == "queue" {
			for _, q := range strings.Split(v, ",") {
				if q = strings.TrimSpace(q); q != "" {
					envQueues = append(envQueues, q)
				}
			}
			continue
		}
		if err := fs.Set(fe[0], v); err != nil {
			return nil, fmt.Errorf("$%s: %w", fe[1], err)
		}
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if !fs.Changed("queue") {
		o.queues = envQueues
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, q := range o.queues {
		name, weight, hasWeight := strings.Cut(q, ":")
		o.cfg.Queues = append(o.cfg.Queues, name)
		if hasWeight {
			n, err := strconv.Atoi(weight)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("--queue %q: weight must be a positive integer", q)
			}
			if o.cfg.Weights == nil {
				o.cfg.Weights = map[string]int{}
			}
			o.cfg.Weights[name] = n
		}
	}
	return o, nil
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

func main(app *rediq.App, prog string, args []string, stderr io.Writer) int {
	o, err := parseFlags(prog, args, stderr, os.LookupEnv)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 2
	}
	log, err := newLogger(o.logLevel, o.logFile, o.logFormat)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 2
	}
	defer log.Sync() //nolint:errcheck // nothing to do about a failed flush at exit
	o.cfg.Logger = log
	if o.redisURL != "" {
		if err := core.Unwrap(app).Connect(o.redisURL); err != nil {
			fmt.Fprintf(stderr, "%s: --redis-url: %v\n", prog, err)
			return 2
		}
	}
	defer app.Close()
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
