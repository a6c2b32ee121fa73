//go:build linux && (amd64 || arm64)

package shm

import (
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Futex words are 32-bit words in shared memory. The operations are the
// shared (not FUTEX_PRIVATE_FLAG) ones, because the waiter and the waker are
// different processes mapping the same file page: the kernel keys a shared
// futex by (inode, offset), so the addresses may differ between processes.
// x/sys/unix has the syscall number but no wrapper.
const (
	futexWait = 0 // FUTEX_WAIT
	futexWake = 1 // FUTEX_WAKE
)

// FutexWait sleeps while *word == val, for at most d (every wait in
// shmstore has a timeout, so that liveness is re-checked; d <= 0 returns at
// once). It returns on a wake, on a timeout, on a signal, or at once if
// *word != val; callers re-check their condition in every case.
func FutexWait(word *atomic.Uint32, val uint32, d time.Duration) {
	ts := unix.NsecToTimespec(d.Nanoseconds())
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(word)), futexWait,
		uintptr(val), uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// FutexWake wakes at most n waiters sleeping on word, in any process.
func FutexWake(word *atomic.Uint32, n int) {
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(word)), futexWake,
		uintptr(n), 0, 0, 0)
}
