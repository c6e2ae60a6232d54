package testredis

import "syscall"

// sysProcAttr makes a server die with the test binary, even when it panics or
// is killed before its cleanups run.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
