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
	switch {
	case len(args) == 0:
		return usageErrorf("%s: missing action: %s (see rediq %s --help)", group, list, group)
	case args[0] == "-h" || args[0] == "--help" || args[0] == "help":
		help()
		return nil
	case slices.Contains(names, args[0]):
		return run(args[0], args[1:])
	case strings.HasPrefix(args[0], "-"):
		return usageErrorf("%s: flag %s before the action: flags go after it, as in \"rediq %s %s\"", group, args[0], example, args[0])
	}
	return usageErrorf("%s: unknown action %q: %s", group, args[0], list)
}
