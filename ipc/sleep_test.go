//go:build linux && (amd64 || arm64)

package ipc

// Two properties without which the store's waits would be either polling
// loops or lost wake-ups, each with a test that fails when it breaks:
//
//   - a wait sleeps: with no Wake, Wait and WaitAnyOr do not return
//     before (most of) their timeout (a no-op wait fails this: it is what
//     turns every waiter of the store into a poller);
//   - a Wake wakes a waiter asleep in the kernel: a waiter with a
//     one-minute timeout returns promptly after a Wake (a Wake that only
//     bumps the sequence, or does nothing, fails this under the
//     watchdog). The waiter is seen blocked in the futex system call
//     itself (/proc/self/task/TID/syscall) before the Wake, so it is the
//     kernel's wake-up that is tested, not the sequence check that makes
//     a Wait after the Wake return at once (TestWakeBeforeWaitIsNotLost).

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/shmstore/shmstore/shm"
)

// sysFutexWaitv is futex_waitv's number (the same on amd64 and arm64).
const sysFutexWaitv = 449

// requireSleeps calls wait (a wait of d with no Wake) n times and checks
// that together they took at least (n-2)*d: each sleeps its timeout, but
// for at most two returned early (a signal may interrupt a futex wait).
// A no-op wait takes microseconds in all.
func requireSleeps(t *testing.T, what string, d time.Duration, wait func(d time.Duration)) {
	t.Helper()
	const n = 5
	start := time.Now()
	for i := 0; i < n; i++ {
		wait(d)
	}
	took := time.Since(start)
	t.Logf("%s: %d waits of %v with no Wake took %v", what, n, d, took.Round(time.Millisecond))
	require.GreaterOrEqual(t, took, (n-2)*d, "%s returned before its timeout with no Wake: it does not sleep", what)
}

func TestWaitSleepsUntilItsTimeout(t *testing.T) {
	tb := newTable(t)
	requireSleeps(t, "Wait", 50*time.Millisecond, func(d time.Duration) {
		tb.Prepare(11).Wait(d)
	})
}

func TestWaitAnyOrSleepsUntilItsTimeout(t *testing.T) {
	tb := newTable(t)
	var extra atomic.Uint32
	requireSleeps(t, "WaitAnyOr", 50*time.Millisecond, func(d time.Duration) {
		WaitAnyOr([]Ticket{tb.Prepare(1), tb.Prepare(2), tb.Prepare(3)}, &extra, extra.Load(), d)
	})
	requireSleeps(t, "WaitAnyOr without an extra word", 50*time.Millisecond, func(d time.Duration) {
		WaitAnyOr([]Ticket{tb.Prepare(4)}, nil, 0, d)
	})
}

// blockedIn reports whether thread tid of this process is blocked in
// system call nr with first argument arg0 (0: any).
func blockedIn(t *testing.T, tid, nr int, arg0 uintptr) bool {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/syscall", tid))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return false // the thread is gone: its wait returned
	}
	require.NoError(t, err)
	f := strings.Fields(string(b))
	if len(f) < 2 || f[0] != strconv.Itoa(nr) {
		return false
	}
	if arg0 == 0 {
		return true
	}
	a, err := strconv.ParseUint(strings.TrimPrefix(f[1], "0x"), 16, 64)
	require.NoError(t, err)
	return uintptr(a) == arg0
}

// wakeParked runs wait (a wait of a minute) on a thread of its own, waits
// until that thread is blocked in system call nr (with first argument
// arg0, if not 0), calls wake, and fails unless the wait returns within
// 10 s.
func wakeParked(t *testing.T, what string, nr int, arg0 uintptr, wait func(d time.Duration), wake func()) {
	t.Helper()
	tids := make(chan int, 1)
	returned := make(chan time.Duration, 1)
	go func() {
		runtime.LockOSThread() // the thread ends with the goroutine: it may be interrupted mid-wait
		tids <- unix.Gettid()
		start := time.Now()
		wait(time.Minute)
		returned <- time.Since(start)
	}()
	tid := <-tids
	deadline := time.Now().Add(10 * time.Second)
	for !blockedIn(t, tid, nr, arg0) {
		select {
		case d := <-returned:
			t.Fatalf("%s returned after %v with no Wake", what, d)
		default:
		}
		require.True(t, time.Now().Before(deadline), "%s: the waiter never blocked in system call %d", what, nr)
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond) // still asleep: a waiter, not one passing through
	require.True(t, blockedIn(t, tid, nr, arg0), "%s: the waiter left the system call with no Wake", what)
	wake()
	select {
	case d := <-returned:
		t.Logf("%s: woken after %v asleep", what, d.Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: a Wake did not wake a waiter asleep in the kernel (its timeout is a minute)", what)
	}
}

func TestWakeWakesASleepingWait(t *testing.T) {
	tb := newTable(t)
	tk := tb.Prepare(21)
	wakeParked(t, "Wait", unix.SYS_FUTEX, uintptr(unsafe.Pointer(&tk.b.seq)),
		func(d time.Duration) { tk.Wait(d) },
		func() { tb.Wake(21) })
}

func TestWakeWakesASleepingWaitAnyOr(t *testing.T) {
	tb := newTable(t)
	var keys []uint64 // three keys of three different buckets
	seen := map[*bucket]bool{}
	for k := uint64(100); len(keys) < 3; k++ {
		if b := tb.bucketOf(k); !seen[b] {
			seen[b] = true
			keys = append(keys, k)
		}
	}
	for i, k := range keys {
		tks := []Ticket{tb.Prepare(keys[0]), tb.Prepare(keys[1]), tb.Prepare(keys[2])}
		var extra atomic.Uint32
		wakeParked(t, fmt.Sprintf("WaitAnyOr, a Wake of its ticket %d", i), sysFutexWaitv, 0,
			func(d time.Duration) { WaitAnyOr(tks, &extra, extra.Load(), d) },
			func() { tb.Wake(k) })
	}
	// The extra word: whoever cancels bumps it and wakes it.
	tks := []Ticket{tb.Prepare(keys[0])}
	var extra atomic.Uint32
	wakeParked(t, "WaitAnyOr, a change of its extra word", sysFutexWaitv, 0,
		func(d time.Duration) { WaitAnyOr(tks, &extra, 0, d) },
		func() { extra.Add(1); shm.FutexWake(&extra, 1) })
}
