package main

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The README's first command: the quickstart runs to the end and succeeds.
func TestQuickstartRuns(t *testing.T) {
	t.Setenv("REDIQ_REDIS_URL", "") // the embedded miniredis, as on a fresh machine
	if err := run(); err != nil {
		t.Fatal(err)
	}
}
