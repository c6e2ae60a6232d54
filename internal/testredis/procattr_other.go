//go:build !linux

package testredis

import "syscall"

// sysProcAttr is empty where there is no parent-death signal: a server outlives
// a test binary that dies before its cleanups run.
func sysProcAttr() *syscall.SysProcAttr { return nil }
