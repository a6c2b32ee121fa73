//go:build linux && (amd64 || arm64)

package shm

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMutexDeadHolder: a process SIGKILLed while holding Mutexes; a waiter
// steals the lock (stolen=true), TakeOver takes an idle one, and recovery
// steals the recovery lock it needs.
func TestMutexDeadHolder(t *testing.T) {
	dir := testDir(t)
	o := smallOpts(dir)
	s := openT(t, "mu", o)
	co := o
	co.Create = MustExist
	c := startChild(t, testBinary(t), "hold", childArgs{Name: "mu", Opts: []Options{co}, Lock: true}, nil)
	r := report(c)
	grow, extra := &s.hdr.growLock, extraMutex(s)
	require.Equal(t, r.Token, grow.Holder())
	require.Equal(t, r.Token, s.hdr.recoverLock.Holder())
	require.Equal(t, r.Token, extra.Holder())
	require.False(t, s.TakeOver(extra), "TakeOver from a live holder")
	require.Equal(t, r.Token, extra.Holder())
	require.Empty(t, s.Check())

	got := make(chan bool, 1)
	go func() { got <- s.Lock(grow) }()
	select {
	case stolen := <-got:
		t.Fatalf("Lock returned (stolen=%v) while the holder was alive", stolen)
	case <-time.After(200 * time.Millisecond):
	}
	require.Equal(t, r.Token, grow.Holder())

	killChild(t, c)
	select {
	case stolen := <-got:
		require.True(t, stolen, "the lock of a dead holder is reported stolen")
	case <-time.After(waitLong):
		t.Fatal("Lock still waiting after its holder died")
	}
	require.Equal(t, s.Token(), grow.Holder())
	require.True(t, s.NeedsRecovery())
	require.ElementsMatch(t, []string{
		fmt.Sprintf("process %d (pid %d) is dead and not recovered", r.Proc, r.PID),
		fmt.Sprintf("recovery lock held by dead process %d", r.Proc),
	}, s.Check())
	s.Unlock(grow)
	require.Zero(t, grow.Holder())

	require.True(t, s.TakeOver(extra))
	require.Equal(t, s.Token(), extra.Holder())
	require.False(t, s.TakeOver(extra), "TakeOver from ourselves")
	s.Unlock(extra)
	require.False(t, s.TakeOver(extra), "TakeOver of a free lock")

	n, err := s.RecoverDead() // steals recoverLock from the dead child
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.False(t, s.NeedsRecovery())
	require.Zero(t, s.hdr.recoverLock.Holder())
	require.Empty(t, s.Check())
	require.False(t, s.Lock(grow), "an ordinary lock is not stolen")
	s.Unlock(grow)
}

// TestMutexLiveHolder: a second attachment of this process is a different
// live process; its Lock waits for the Unlock and is not stolen.
func TestMutexLiveHolder(t *testing.T) {
	dir := testDir(t)
	o := smallOpts(dir)
	s1 := openT(t, "mu", o)
	s2 := openT(t, "mu", o)
	require.NotEqual(t, s1.Token(), s2.Token())
	m1, m2 := &s1.hdr.growLock, &s2.hdr.growLock

	require.False(t, s1.Lock(m1))
	got := make(chan bool, 1)
	go func() { got <- s2.Lock(m2) }()
	select {
	case stolen := <-got:
		t.Fatalf("Lock returned (stolen=%v) while a live process held the lock", stolen)
	case <-time.After(300 * time.Millisecond): // many liveness checks
	}
	require.False(t, s2.TakeOver(m2))
	require.Equal(t, s1.Token(), m2.Holder())
	s1.Unlock(m1)
	select {
	case stolen := <-got:
		require.False(t, stolen)
	case <-time.After(waitLong):
		t.Fatal("Lock still waiting after Unlock")
	}
	require.Equal(t, s2.Token(), m1.Holder())
	require.False(t, s2.NeedsRecovery())
	s2.Unlock(m2)
	require.Zero(t, m1.Holder())
	require.Empty(t, s1.Check())
}

// TestMutexExclusion: goroutines of two attachments increment a plain
// counter in shared memory under the Mutex; no increment is lost.
func TestMutexExclusion(t *testing.T) {
	dir := testDir(t)
	o := smallOpts(dir)
	stores := []*Store{openT(t, "mu", o), openT(t, "mu", o)}
	const goroutines, iters = 4, 300
	var wg sync.WaitGroup
	var stolen atomic.Int32
	for _, s := range stores {
		m := extraMutex(s)
		counter := (*uint64)(s.SlotPart(0, PartTxn))
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < iters; i++ {
					if s.Lock(m) {
						stolen.Add(1)
					}
					v := *counter
					runtime.Gosched()
					*counter = v + 1
					s.Unlock(m)
				}
			}()
		}
	}
	wg.Wait()
	require.Zero(t, stolen.Load())
	require.Equal(t, uint64(len(stores)*goroutines*iters), *(*uint64)(stores[0].SlotPart(0, PartTxn)))
	require.Zero(t, extraMutex(stores[1]).Holder())
}

// TestFutex: wait and wake across two mappings of the same file (a shared,
// not private, futex), the timeout, and waking with nobody waiting.
func TestFutex(t *testing.T) {
	dir := testDir(t)
	o := smallOpts(dir)
	s1 := openT(t, "fx", o)
	s2 := openT(t, "fx", o)
	w1 := (*atomic.Uint32)(s1.GlobalPart(PartIPC))
	w2 := (*atomic.Uint32)(s2.GlobalPart(PartIPC))
	require.NotSame(t, w1, w2, "two mappings")

	// Woken: the word never changes, so only a wake (through the other
	// mapping) ends a wait of a minute.
	done := make(chan struct{})
	go func() {
		FutexWait(w1, 0, time.Minute)
		close(done)
	}()
	deadline := time.After(waitLong)
wake:
	for {
		FutexWake(w2, 1)
		select {
		case <-done:
			break wake
		case <-deadline:
			t.Fatal("FutexWait not woken by FutexWake")
		case <-time.After(5 * time.Millisecond):
		}
	}
	require.Zero(t, w1.Load())

	// Not woken: returns after its timeout.
	const d = 50 * time.Millisecond
	start := time.Now()
	returned := make(chan time.Duration, 1)
	go func() {
		FutexWait(w1, 0, d)
		returned <- time.Since(start)
	}()
	select {
	case el := <-returned:
		require.GreaterOrEqual(t, el, d, "returned before its timeout without a wake")
	case <-time.After(waitLong):
		t.Fatal("FutexWait did not time out")
	}

	// The word differs: returns at once (not after the minute).
	w1.Store(7)
	returned2 := make(chan struct{})
	go func() {
		FutexWait(w2, 0, time.Minute)
		close(returned2)
	}()
	select {
	case <-returned2:
	case <-time.After(waitLong):
		t.Fatal("FutexWait slept although the word differed")
	}

	// Nobody waiting: harmless.
	FutexWake(w1, 1)
	FutexWake(w2, 1<<30)
	require.Equal(t, uint32(7), w2.Load())
	var local atomic.Uint32
	FutexWake(&local, 1)
	require.Zero(t, local.Load())
}
