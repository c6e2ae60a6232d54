package main

import (
	"errors"
	"fmt"
	"io"

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
	err := fs.Parse(args)
	if errors.Is(err, pflag.ErrHelp) {
		fmt.Fprintf(stdout, "Usage: %s\n\nFlags:\n%s", fs.usage, fs.FlagUsages())
		return err
	}
	if err != nil {
		return usageErrorf("%s: %w (see %s --help)", fs.shortName(), err, fs.Name())
	}
	if fs.NArg() > 0 {
		return usageErrorf("%s: unexpected argument %q", fs.shortName(), fs.Arg(0))
	}
	return nil
}

// shortName is the command's name without "rediq ", as errors are prefixed with it.
func (fs *flagSet) shortName() string { return fs.Name()[len("rediq "):] }
