package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/rediq/rediq"
	"github.com/rediq/rediq/internal/testredis"
)

// testredis.Main checks for leaked goroutines, as goleak.VerifyTestMain did.
func TestMain(m *testing.M) { testredis.Main(m) }

// The example runs to the end on the embedded miniredis, prints every task's
// lines, progress and the table.
func TestBatchExampleRuns(t *testing.T) {
	t.Setenv("REDIQ_REDIS_URL", "") // the embedded miniredis, as on a fresh machine
	t.Setenv("REDIQ_NAMESPACE", "")
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
	for _, want := range []string{"completed: 100 succeeded, 0 failed, 100 rows", "the 5 newest rows of table pages:",
		"https://example.com/", "batch 1 in namespace batchexample", "(it ends with this program)"} {
		if !strings.Contains(s, want) {
			t.Fatalf("output lacks %q:\n%s", want, s)
		}
	}
}

// On a Redis of REDIQ_REDIS_URL, the example prints the namespace and the
// command that shows its batch, and the batch is still there when it has
// returned: "rediq batch stat N" afterwards works, as its comment says.
func TestBatchExampleLeavesTheBatch(t *testing.T) {
	ns := testredis.Namespace(t)
	t.Setenv("REDIQ_REDIS_URL", testredis.URL())
	t.Setenv("REDIQ_NAMESPACE", ns)
	var out bytes.Buffer
	if err := run(&out); err != nil {
		t.Fatalf("%v; output:\n%s", err, out.String())
	}
	want := fmt.Sprintf("rediq batch stat 1 --redis-url %s --namespace %s\n", testredis.URL(), ns)
	if !strings.Contains(out.String(), want) {
		t.Fatalf("output lacks %q:\n%s", want, out.String())
	}
	app, err := rediq.New(rediq.Config{RedisURL: testredis.URL(), Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	st, err := app.BatchStat(context.Background(), 1)
	if err != nil || st.Succeeded != 100 || st.Finished.IsZero() {
		t.Fatalf("after the example: batch 1 = %+v, %v; want it completed with 100 succeeded", st, err)
	}
}
