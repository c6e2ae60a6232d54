package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// flagSet is a command's flags with the help text --help prints.
type flagSet struct {
	*pflag.FlagSet
	usage string // the lines between "Usage:" and "Flags:"
}

// newFlagSet returns the flags of command name. pflag prints nothing itself: an
// error becomes one line from main, and --help goes to stdout.
func newFlagSet(name, usage string) *flagSet {
	fs := pflag.NewFlagSet("rediq "+name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, usage: usage}
}

// parse parses args, which must be flags only. For --help it prints the help to
// stdout and returns pflag.ErrHelp, which run turns into success.
func (fs *flagSet) parse(args []string, stdout io.Writer) error {
	_, err := fs.parseArgs(args, stdout)
	return err
}

// parseArgs is parse for a command that takes one positional argument per
// name in names (as "ID"), which it returns in order.
func (fs *flagSet) parseArgs(args []string, stdout io.Writer, names ...string) ([]string, error) {
	err := fs.Parse(args)
	if errors.Is(err, pflag.ErrHelp) {
		fmt.Fprintf(stdout, "Usage: %s\n\nFlags:\n%s", fs.usage, fs.FlagUsages())
		return nil, err
	}
	if err != nil {
		return nil, usageErrorf("%s: %w (see %s --help)", fs.shortName(), err, fs.Name())
	}
	if fs.NArg() < len(names) {
		return nil, usageErrorf("%s: missing %s (see %s --help)", fs.shortName(), strings.Join(names[fs.NArg():], " "), fs.Name())
	}
	if fs.NArg() > len(names) {
		return nil, usageErrorf("%s: unexpected argument %q", fs.shortName(), fs.Arg(len(names)))
	}
	return fs.Args(), nil
}

// parseLeadingArgs is parseArgs for a command that takes the named
// positional arguments and then any number of words more (a spec).
func (fs *flagSet) parseLeadingArgs(args []string, stdout io.Writer, names ...string) ([]string, error) {
	if err := fs.Parse(args); errors.Is(err, pflag.ErrHelp) || err != nil || fs.NArg() < len(names) {
		return fs.parseArgs(args, stdout, names...) // the help, or the error
	}
	return fs.Args(), nil
}

// parseOptionalArg is parse for a command that takes at most one positional
// argument, which it returns ("" when absent).
func (fs *flagSet) parseOptionalArg(args []string, stdout io.Writer) (string, error) {
	err := fs.Parse(args)
	if errors.Is(err, pflag.ErrHelp) {
		fmt.Fprintf(stdout, "Usage: %s\n\nFlags:\n%s", fs.usage, fs.FlagUsages())
		return "", err
	}
	if err != nil {
		return "", usageErrorf("%s: %w (see %s --help)", fs.shortName(), err, fs.Name())
	}
	if fs.NArg() > 1 {
		return "", usageErrorf("%s: unexpected argument %q", fs.shortName(), fs.Arg(1))
	}
	return fs.Arg(0), nil
}

// shortName is the command's name without "rediq ", as errors are prefixed with it.
func (fs *flagSet) shortName() string { return fs.Name()[len("rediq "):] }

// outputFormat is the value of --output: how a command prints what it found.
type outputFormat string

const (
	outputTable outputFormat = "table" // aligned columns for people
	outputJSON  outputFormat = "json"  // for scripts and jq
)

// registerOutput adds --output (-o), default table.
func registerOutput(fs *flagSet, jsonShape string) *outputFormat {
	o := outputTable
	fs.VarP(&o, "output", "o", "output format: table (for people) or json ("+jsonShape+")")
	return &o
}

func (o *outputFormat) String() string { return string(*o) }
func (o *outputFormat) Type() string   { return "format" }

func (o *outputFormat) Set(s string) error {
	switch f := outputFormat(s); f {
	case outputTable, outputJSON:
		*o = f
		return nil
	}
	return fmt.Errorf("%q is not table or json", s)
}

// runAction runs the action of a command group (rediq task, batch, dead,
// config) named by args[0] with the rest of args. No action, an unknown one or
// a flag before it is a usage error naming the actions; example shows where
// flags go ("task show ID").
func runAction(group, example string, names []string, args []string, help func(), run func(name string, rest []string) error) error {
	list := "one of " + strings.Join(names, ", ")
	if len(names) == 1 {
		list = names[0]
	}
	// The shared flags may come before the action too: "rediq task
	// --namespace app show ID".
	global, args, err := globalFlags(args)
	if err != nil {
		return usageErrorf("%s: %w", group, err)
	}
	switch {
	case len(args) == 0:
		return usageErrorf("%s: missing action: %s (see rediq %s --help)", group, list, group)
	case args[0] == "-h" || args[0] == "--help" || args[0] == "help":
		help()
		return nil
	case slices.Contains(names, args[0]):
		return run(args[0], withFlags(args[1:], global))
	case strings.HasPrefix(args[0], "-"):
		return usageErrorf("%s: flag %s before the action: flags go after it, as in \"rediq %s %s\"", group, args[0], example, args[0])
	}
	if s := suggest(args[0], names); s != "" {
		return usageErrorf("%s: unknown action %q: did you mean %q? (%s)", group, args[0], s, list)
	}
	return usageErrorf("%s: unknown action %q: %s", group, args[0], list)
}

// globalValueFlags are the flags, all taking a value, that may come before
// the command (or a group's action) as well as after it: the connection, the
// namespace and the output format. bench's old --redis is among them, as
// bench takes it.
var globalValueFlags = map[string]bool{
	"redis-url": true, "namespace": true, "tls-ca-file": true, "tls-cert-file": true, "tls-key-file": true,
	"output": true, "o": true, "redis": true,
}

// globalFlags splits the global flags at the start of args from the rest,
// which begins with the command or action. Any other flag (-h, --help,
// --version, one the caller refuses) is left at the start of rest. Each
// global flag comes back as one --name=value argument.
func globalFlags(args []string) (global, rest []string, err error) {
	for len(args) > 0 {
		a := args[0]
		if a == "--" || !strings.HasPrefix(a, "-") || len(a) < 2 {
			break
		}
		var name, value string
		hasValue := false
		if strings.HasPrefix(a, "--") {
			name, value, hasValue = strings.Cut(a[2:], "=")
		} else {
			// -o json, -ojson, -o=json
			name, value = a[1:2], strings.TrimPrefix(a[2:], "=")
			hasValue = len(a) > 2
		}
		if !globalValueFlags[name] {
			break
		}
		if !hasValue {
			if len(args) < 2 {
				return nil, nil, usageErrorf("flag %s needs a value", a)
			}
			value, args = args[1], args[1:]
		}
		flag := "--" + name
		if name == "o" {
			flag = "--output"
		}
		global = append(global, flag+"="+value)
		args = args[1:]
	}
	return global, args, nil
}

// withFlags returns args with the global flags added at their end (before a
// "--", after which pflag reads no flags).
func withFlags(args, global []string) []string {
	if len(global) == 0 {
		return args
	}
	i := slices.Index(args, "--")
	if i < 0 {
		i = len(args)
	}
	return slices.Concat(args[:i], global, args[i:])
}

// suggest returns the one of names closest to name — a prefix either way, or
// at most two edits away — or "" if none is close.
func suggest(name string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		d := levenshtein(name, n)
		if (strings.HasPrefix(n, name) || strings.HasPrefix(name, n)) && len(name) > 1 {
			d = min(d, 2)
		}
		if d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// levenshtein is the edit distance between a and b, in runes.
func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
