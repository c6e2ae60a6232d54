//go:build linux

package testredis

import (
	"os"
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel SIGKILL the server when the test binary
// dies, however it dies (panic, go test -timeout, SIGKILL), so no
// redis-server outlives its test. Its own process group lets killGroup take
// any child it forked (AOF rewrite) with it.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup SIGKILLs the server's process group.
func killGroup(p *os.Process) error { return syscall.Kill(-p.Pid, syscall.SIGKILL) }

// terminate asks the server to shut down cleanly.
func terminate(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
