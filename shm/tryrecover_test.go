package shm

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TryRecoverDead does not wait behind a live recoverer; RecoverDead does.
func TestTryRecoverDeadDoesNotWait(t *testing.T) {
	dir := testDir(t)
	s1 := openT(t, "s", smallOpts(dir))
	s2 := openT(t, "s", smallOpts(dir))
	// An entry that says alive while nobody holds its lock byte: dead.
	j := s2.ProcIndex() + 1
	e := s1.Proc(j)
	require.Equal(t, ProcFree, e.State.Load())
	e.PID.Store(1 << 30)
	e.Seq.Store(s1.Header().AttachSeq.Add(1))
	e.State.Store(ProcAlive)
	require.Equal(t, []int{j}, s1.DeadProcs())

	s2.Lock(&s2.hdr.recoverLock) // a live process is recovering
	n, err := s1.TryRecoverDead()
	require.NoError(t, err)
	require.Zero(t, n, "returns at once, leaving the work to the live recoverer")

	done := make(chan int)
	go func() {
		n, _ := s1.RecoverDead()
		done <- n
	}()
	select {
	case <-done:
		t.Fatal("RecoverDead did not wait for the live recoverer")
	case <-time.After(100 * time.Millisecond):
	}
	s2.Unlock(&s2.hdr.recoverLock)
	require.Equal(t, 1, <-done)
	n, err = s1.TryRecoverDead()
	require.NoError(t, err)
	require.Zero(t, n, "nothing left")
	require.Empty(t, s1.Check())
}
