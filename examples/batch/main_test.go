package main

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The example runs to the end on the embedded miniredis, prints every task's
// lines, progress and the table.
func TestBatchExampleRuns(t *testing.T) {
	t.Setenv("REDIQ_REDIS_URL", "") // the embedded miniredis, as on a fresh machine
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("%v; output:\n%s", err, out.String())
	}
	s := out.String()
	if n := strings.Count(s, "] fetching page "); n != 100 {
		t.Fatalf("%d tasks' lines followed, want 100:\n%s", n, s)
	}
	if n := strings.Count(s, " words\n"); n < 105 {
		t.Fatalf("%d word lines, want 100 from the tasks and 5 from the dump:\n%s", n, s)
	}
	for _, want := range []string{"completed: 100 succeeded, 0 failed, 100 rows", "the 5 newest rows of table pages:", "https://example.com/"} {
		if !strings.Contains(s, want) {
			t.Fatalf("output lacks %q:\n%s", want, s)
		}
	}
}
