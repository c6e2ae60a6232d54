//go:build !linux

package testredis

import (
	"os"
	"os/exec"
)

// dieWithParent does nothing here: only Linux has a parent-death signal.
// Servers are still stopped by Main and t.Cleanup, but one can outlive a test
// binary that crashes.
func dieWithParent(cmd *exec.Cmd) {}

// killGroup kills the server process.
func killGroup(p *os.Process) error { return p.Kill() }

// terminate kills the server: there is no portable SIGTERM.
func terminate(p *os.Process) error { return p.Kill() }
