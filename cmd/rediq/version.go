package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

func runVersion(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("version", "rediq version\n\nPrints the version of this binary and of the Go toolchain that built it.")
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	_, err := fmt.Fprintf(stdout, "rediq %s %s %s/%s\n", version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}

// version is the module version the binary was built from: a tag when installed
// with go install …@version, "(devel)" when built from a checkout.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
