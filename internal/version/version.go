// Package version reports the rediq module version a binary was built from.
package version

import "runtime/debug"

const module = "github.com/rediq/rediq"

// String is the rediq module version as built — a tag when installed with
// go install …@version or used as a dependency — or "(devel)" from a checkout.
func String() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	if bi.Main.Path == module && bi.Main.Version != "" {
		return bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == module && d.Version != "" {
			return d.Version
		}
	}
	return "(devel)"
}
