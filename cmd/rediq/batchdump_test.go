package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rediq/rediq"
)

// dump --file refuses a file that exists, unless --append or --force.
func TestBatchDumpExistingFile(t *testing.T) {
	t.Parallel()
	e := newBatchEnv(t, 2)
	b := e.batch(rediq.BatchOptions{Detached: true}, jobArgs{N: 1}, jobArgs{N: 2}, jobArgs{N: 3})
	e.wait(b)
	file := filepath.Join(t.TempDir(), "rows.jsonl")
	if err := os.WriteFile(file, []byte("keep me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := e.cmd(t, "batch", "dump", id(b), "-t", "rows", "--file", file, "--pop")
	if err == nil || !strings.Contains(err.Error(), file+" exists: --append") {
		t.Fatalf("dump to an existing file: %v; want refused", err)
	}
	if data, _ := os.ReadFile(file); string(data) != "keep me\n" {
		t.Fatalf("the refused dump changed the file: %q", data)
	}
	if n := len(jsonLines[jobRow](t, e.ok(t, "batch", "dump", id(b), "-t", "rows"))); n != 3 {
		t.Fatalf("the refused --pop took rows: %d left, want 3", n)
	}
	out := e.ok(t, "batch", "dump", id(b), "-t", "rows", "-n", "2", "--file", file, "--append")
	if data, _ := os.ReadFile(file); !strings.HasPrefix(string(data), "keep me\n") || strings.Count(string(data), "\n") != 3 ||
		!strings.HasPrefix(out, "appended 2 rows") {
		t.Fatalf("--append: %q, file %q", out, data)
	}
	e.ok(t, "batch", "dump", id(b), "-t", "rows", "-n", "1", "--file", file, "--force")
	if data, _ := os.ReadFile(file); strings.Contains(string(data), "keep me") || strings.Count(string(data), "\n") != 1 {
		t.Fatalf("--force: file %q; want one row in place of what it held", data)
	}
	if _, err := e.cmd(t, "batch", "dump", id(b), "--append"); !isUsage(err) {
		t.Fatalf("--append without --file: %v; want a usage error", err)
	}
}

// After dump --pop, the ROWS of batch list and the stat count what the
// tables still hold.
func TestBatchRowsAfterPop(t *testing.T) {
	t.Parallel()
	e := newBatchEnv(t, 2)
	args := make([]jobArgs, 5)
	for i := range args {
		args[i] = jobArgs{N: 2*i + 1} // odd: a row each in "rows", none in "extra"
	}
	b := e.batch(rediq.BatchOptions{Detached: true}, args...)
	e.wait(b)
	e.ok(t, "batch", "dump", id(b), "-t", "rows", "-n", "2", "--pop")

	rows := fields(e.ok(t, "batch", "list"))
	col := slices.Index(rows[0], "ROWS")
	if col < 0 || len(rows) != 2 || rows[1][col] != "3" {
		t.Fatalf("batch list after popping 2 of 5 rows: %q; want ROWS 3", rows)
	}
	var j map[string]any
	if err := json.Unmarshal([]byte(e.ok(t, "batch", "stat", id(b), "-o", "json")), &j); err != nil || j["rows_held"] != 3.0 || j["rows"] != 5.0 {
		t.Fatalf("stat json: %v (%v); want rows 5 (collected), rows_held 3", j, err)
	}
	if out := e.ok(t, "batch", "stat", id(b)); !strings.Contains(out, "rows:     3 in the tables, 5 collected, 2 popped") {
		t.Fatalf("stat:\n%s", out)
	}
}
