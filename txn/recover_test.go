//go:build linux && (amd64 || arm64)

package txn

import (
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
)

// TestStaleLockCountIsNeverWalked: NLocks keeps the previous commit's
// count while the slot is IDLE. A crash while a new commit logs its locks
// must not make recovery walk the previous commit's entries: their words
// may belong to blocks freed and reused since, and a reused word that
// looks "locked by this slot" (for slot 0: an odd value below 4) would be
// rewritten. Deterministic.
func TestStaleLockCountIsNeverWalked(t *testing.T) {
	ev := newEnv(t, false) // the stopped goroutine keeps its lease: no Close
	cs := ev.cells(t, 3, 10)
	other := ev.cells(t, 1, 0)[0]

	// Commit 1 locks 3 cells; NLocks stays 3 afterwards.
	require.NoError(t, ev.add(cs, []int64{1, 1, 1}, nil))
	var s int
	require.NoError(t, ev.e.WithTx(func(tx *Tx) error { s = tx.Slot(); return nil }))
	sp := ev.e.slotPart(s)
	require.EqualValues(t, 3, sp.NLocks.Load())
	last, err := ev.e.readLog(sp, 2) // the entry commit 2 will not overwrite
	require.NoError(t, err)
	var victim cell
	for _, c := range cs {
		if Addr(last) == AddrOf(c.h, 0) {
			victim = c
		}
	}
	require.NotZero(t, victim.h)

	// The victim's object goes away; its memory is reused for user data
	// whose first word happens to look locked by slot s.
	user := uint64(s)<<slotShift | lockedBit
	var reused cell
	require.NoError(t, ev.e.WithTx(func(tx *Tx) error {
		if err := tx.heap.Free(victim.h); err != nil {
			return err
		}
		h, b, err := tx.Alloc(16)
		if err != nil {
			return err
		}
		reused = cell{h, unsafe.Pointer(&b[0])}
		*(*uint64)(reused.p) = user
		tx.heap.ForgetLog()
		return nil
	}))
	require.Equal(t, AddrOf(victim.h, 0), AddrOf(reused.h, 0), "the freed block was not reused (test setup)")

	// Commit 2, in the same slot, locks one cell and dies after logging it,
	// before the count is stored.
	reached := make(chan struct{})
	crashHook = func(point string) {
		if point == "logged lock" {
			close(reached)
			select {} // the process dies here
		}
	}
	var slot2 atomic.Int64
	go func() {
		_ = ev.e.Run(false, func(tx *Tx) error {
			slot2.Store(int64(tx.Slot()))
			if _, err := read(tx, other); err != nil {
				return err
			}
			if err := tx.Lock(other.lock(), AddrOf(other.h, 0), false); err != nil {
				return err
			}
			return tx.AddWriter(&setWriter{cells: []cell{other}, vals: []uint64{1}})
		})
	}()
	<-reached
	crashHook = nil
	require.EqualValues(t, s, slot2.Load())
	for _, l := range []shm.Layer{ev.e, ev.r, ev.a} {
		require.NoError(t, l.Recover(0, []int{s}))
	}
	require.Equal(t, user, atomic.LoadUint64((*uint64)(reused.p)),
		"recovery of a commit that never took a lock rewrote an unrelated, reused word")
}

// TestViewKeepsItsEpochAcrossAttempts: a View that aborts keeps its first
// attempt's epoch published until it returns, so nothing its earlier
// attempts read (and a later attempt's prelock may lock) is freed under
// it: a block retired after its first attempt began stays allocated, even
// through collections, until the View returns.
func TestViewKeepsItsEpochAcrossAttempts(t *testing.T) {
	ev := newEnv(t, true)
	cs := ev.cells(t, 2, 1)
	A, B := cs[0], cs[1]
	victim := ev.cells(t, 1, 0)[0]
	attempts := 0
	var first uint64
	err := ev.e.Run(true, func(tx *Tx) error {
		attempts++
		rv, ok := ev.r.Active(tx.Slot())
		require.True(t, ok)
		if attempts == 1 {
			first = rv
		} else {
			require.Equal(t, first, rv, "attempt %d published another epoch", attempts)
		}
		if _, err := read(tx, A); err != nil {
			return err
		}
		if attempts <= 3 {
			// A writer changes A and B, and retires the victim, meanwhile;
			// collections run: the read of B below aborts the attempt.
			done := make(chan error)
			go func() {
				var retire []handle.Handle
				if attempts == 1 {
					retire = []handle.Handle{victim.h}
				}
				err := ev.add([]cell{A, B}, []int64{1, 1}, retire)
				if err == nil {
					err = ev.e.Collect()
				}
				done <- err
			}()
			if err := <-done; err != nil {
				return err
			}
			_, err := ev.a.Resolve(victim.h)
			require.NoError(t, err, "attempt %d: a block retired during the View was freed", attempts)
		}
		_, err := read(tx, B)
		return err
	})
	require.NoError(t, err)
	require.Greater(t, attempts, 3)
	require.NoError(t, ev.e.Collect())
	_, err = ev.a.Resolve(victim.h)
	require.Error(t, err, "freed once the View returned")
}
