package main

import (
	"context"
	"fmt"
	"io"
	"runtime"

	"github.com/rediq/rediq/internal/version"
)

func runVersion(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("version", "rediq version\n\nPrints the version of this binary and of the Go toolchain that built it.")
	out := registerOutput(fs, `{"version": V, "go": GO, "os": OS, "arch": ARCH}`)
	if err := fs.parse(args, stdout); err != nil {
		return err
	}
	if *out == outputJSON {
		return printJSON(stdout, struct {
			Version string `json:"version"`
			Go      string `json:"go"`
			OS      string `json:"os"`
			Arch    string `json:"arch"`
		}{version.String(), runtime.Version(), runtime.GOOS, runtime.GOARCH})
	}
	_, err := fmt.Fprintf(stdout, "rediq %s %s %s/%s\n", version.String(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}
