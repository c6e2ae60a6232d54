package rediq_test

import (
	"os/exec"
	"strings"
	"testing"
)

// Imports run one way (docs/ARCHITECTURE.md): nothing in internal/ imports
// the root package or worker, and the CLI, its bench and the examples stand
// on the public API: they import no internal/broker, internal/core or
// internal/codec. Test files are left out: a test may set up a state
// through the broker.
func TestImportsRunOneWay(t *testing.T) {
	t.Parallel()
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list the packages with")
	}
	const mod = "github.com/rediq/rediq"
	out, err := exec.Command(goCmd, "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	sealed := []string{mod + "/internal/broker", mod + "/internal/core", mod + "/internal/codec"}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		rel := strings.TrimPrefix(strings.TrimPrefix(pkg, mod), "/")
		for _, imp := range imports {
			switch {
			case strings.HasPrefix(rel, "internal/") && (imp == mod || imp == mod+"/worker"):
				t.Errorf("%s imports %s: internal packages serve rediq and worker, never the other way", pkg, imp)
			case (strings.HasPrefix(rel, "cmd/") || strings.HasPrefix(rel, "examples/")) && contains(sealed, imp):
				t.Errorf("%s imports %s: tools and examples use rediq's public API (add an App method)", pkg, imp)
			}
		}
		checked++
	}
	if checked < 10 {
		t.Fatalf("go list listed %d packages; want the whole module", checked)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
