// Command rediq inspects and operates a rediq deployment from the shell.
//
//	rediq queues [--output json]
//	rediq tasks [--queue Q] [--state STATE] [--limit N] [--offset N] [--output json]
//	rediq task show ID [--output json]
//	rediq task result|cancel|delete|requeue ID
//	rediq limit set TASK [--rate N/DURATION] [--concurrency N] [--clear] | show [--output json]
//	rediq dead requeue --queue Q [--output json]
//	rediq batch stat N|--latest, list [--last N], wait N|--latest, logs N [--follow],
//	            dump N [--table T] [--limit N] [--file F [--append|--force]] [--pop], errors N, stop N
//	rediq config set KEY VALUE | unset KEY | show
//	rediq version | --version
//	rediq help [command [action]]
//
// The connection flags, --namespace and --output may come before the command
// (or a group's action) as well as after it.
//
// Commands that touch Redis read --redis-url, --tls-ca-file, --tls-cert-file,
// --tls-key-file and --namespace, falling back to $REDIQ_REDIS_URL,
// $REDIQ_TLS_CA_FILE, $REDIQ_TLS_CERT_FILE, $REDIQ_TLS_KEY_FILE and
// $REDIQ_NAMESPACE, then to the settings file "rediq config set" writes
// ($REDIQ_CONFIG, else rediq/config.json in the user's configuration
// directory), then to the library's defaults. The URL may name one
// server, a Redis Cluster (redis+cluster://) or a master behind Sentinel
// (redis+sentinel://), as rediq.Config.RedisURL describes.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/pflag"
)

func main() {
	// go-redis logs failed dials itself; the same error comes back to the command,
	// which reports it once.
	redis.SetLogger(quietLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "rediq: %v\n", err)
		var u *usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// command is one subcommand. run gets the arguments after the command's name.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands lists the subcommands in the order usage shows them.
var commands = []command{
	{"queues", "list the queues of a namespace with their counts", runQueues},
	{"tasks", "list a page of tasks: of a queue, in a state, or every one", runTasks},
	{"task", "show, cancel, delete or requeue one task by id, or print its result", runTask},
	{"queue", "pause or resume a queue on every worker", runQueue},
	{"cron", "list, pause, resume or trigger schedules", runCron},
	{"limit", "set or show the rate and concurrency limits of tasks", runLimit},
	{"dead", "requeue the dead tasks of a queue", runDead},
	{"batch", "a batch's stat, output, tables and errors; list, wait for or stop batches", runBatch},
	{"config", "set or show the settings file: Redis URL, TLS files, namespace", runConfig},
	{"bench", "run the standard workload and print its figures as JSON", runBench},
	{"version", "print the version of this binary", runVersion},
}

// usageError is a mistake on the command line; main exits 2 for it, 1 otherwise.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// Flags every command shares may come before the command too, as with git
	// or kubectl: they move to the end of the command's own arguments.
	global, args, err := globalFlags(args)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		if len(global) == 0 {
			// A bare "rediq" is a usage mistake: the list goes where errors go.
			printUsage(stderr)
			return usageErrorf("missing command (run \"rediq help\" for the list)")
		}
		return usageErrorf("flag %s but no command (run \"rediq help\" for the list)", global[0])
	}
	name, rest := args[0], withFlags(args[1:], global)
	switch name {
	case "help", "-h", "--help":
		// "help -h" is help; so is help followed only by global flags.
		if name == "help" && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
			if lookup(rest[0]) == nil {
				return usageErrorf("help: %s", unknownCommand(rest[0]))
			}
			// "rediq help batch stat" is "rediq batch stat --help".
			return run(ctx, append(slices.Clone(rest), "--help"), stdout, stderr)
		}
		printUsage(stdout)
		return nil
	case "--version":
		name = "version"
	}
	if strings.HasPrefix(name, "-") {
		return usageErrorf("unknown flag %s before the command (run \"rediq help\" for the commands and flags)", name)
	}
	c := lookup(name)
	if c == nil {
		return usageErrorf("%s", unknownCommand(name))
	}
	if err := c.run(ctx, rest, stdout, stderr); !errors.Is(err, pflag.ErrHelp) {
		return err
	}
	return nil
}

// unknownCommand says that name is no command, suggesting the closest one.
func unknownCommand(name string) string {
	names := []string{"help"}
	for _, c := range commands {
		names = append(names, c.name)
	}
	if s := suggest(name, names); s != "" {
		return fmt.Sprintf("unknown command %q: did you mean %q? (run \"rediq help\" for the list)", name, s)
	}
	return fmt.Sprintf("unknown command %q (run \"rediq help\" for the list)", name)
}

func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, "rediq inspects and operates rediq task queues.\n\nUsage:\n  rediq <command> [flags]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-10s %s\n", "help", "show this list, or a command's flags: rediq help <command>")
	fmt.Fprint(w, "\nCommands that touch Redis take --redis-url [$REDIQ_REDIS_URL], the --tls-… files [$REDIQ_TLS_…]\n"+
		"and --namespace [$REDIQ_NAMESPACE]; what neither gives comes from \"rediq config set\".\n"+
		"These and --output (-o) may come before the command too: rediq --namespace app queues.\n"+
		"rediq --version is rediq version.\n")
}
