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

// MaxWaitv is the most futex words one FutexWaitv waits on (the kernel's
// FUTEX_WAITV_MAX).
const MaxWaitv = 128

// futexWaiter is the kernel's struct futex_waitv.
type futexWaiter struct {
	val      uint64
	uaddr    uint64
	flags    uint32
	reserved uint32
}

const (
	sysFutexWaitv = 449 // futex_waitv(2), the same number on amd64 and arm64 (Linux 5.16)
	futex2Size32  = 2   // FUTEX2_SIZE_U32; shared, as FutexWait is
)

// FutexWaitv sleeps until a wake on any of words (at most MaxWaitv, each
// compared with its entry in vals), for at most d: FutexWait over several
// words at once, so that one sleeper can watch several parking buckets.
// It returns on a wake, a timeout, a signal, or at once if some word
// differs from its value; callers re-check their condition in every case.
// On a kernel without futex_waitv (before 5.16) it sleeps on the first
// word for at most 1 ms, so callers that re-check in a loop still make
// progress.
func FutexWaitv(words []*atomic.Uint32, vals []uint32, d time.Duration) {
	n := min(len(words), len(vals), MaxWaitv)
	if n == 0 || d <= 0 {
		return
	}
	var ws [MaxWaitv]futexWaiter
	for i := range n {
		ws[i] = futexWaiter{val: uint64(vals[i]), uaddr: uint64(uintptr(unsafe.Pointer(words[i]))), flags: futex2Size32}
	}
	var now unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &now); err != nil {
		FutexWait(words[0], vals[0], min(d, time.Millisecond))
		return
	}
	abs := unix.NsecToTimespec(now.Nano() + d.Nanoseconds()) // futex_waitv takes an absolute time
	_, _, errno := unix.Syscall6(sysFutexWaitv, uintptr(unsafe.Pointer(&ws[0])), uintptr(n), 0,
		uintptr(unsafe.Pointer(&abs)), uintptr(unix.CLOCK_MONOTONIC), 0)
	if errno == unix.ENOSYS {
		FutexWait(words[0], vals[0], min(d, time.Millisecond))
	}
}
