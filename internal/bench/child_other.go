//go:build !linux

package bench

import "syscall"

// childProcAttr puts a child (a bridge, redis-server) in a process group of its own, so that a
// terminal's Ctrl-C reaches only the benchmark, which then stops the child. Only Linux can also
// tie the child's life to the benchmark's (Pdeathsig); peak RSS and CPU come from /proc, Linux's
// too.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
