package bench

import "syscall"

// childProcAttr puts a child (a bridge, redis-server) in a process group of its own, so that a
// terminal's Ctrl-C reaches only the benchmark, which then reads the child's peak RSS and stops
// it; and has the kernel kill the child should the benchmark die without stopping it. Pdeathsig
// fires when the thread that started the child exits: Go ends a thread only when a goroutine
// locked to it returns, and nothing the benchmark links does that.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
