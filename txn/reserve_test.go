//go:build linux && (amd64 || arm64)

package txn

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
)

// newFullEnv is newEnv on a store of two 1 MiB regions, filled: ordinary
// data took every superblock it may, and the slot the transactions use
// took every free block of every class and the upper half of the reserve
// (as values replacing larger ones may), so that what a commit allocates
// can only come from the reserve's lower half. The cells come first.
func newFullEnv(t *testing.T) (*env, []cell, cell) {
	t.Helper()
	ev := newEnvWith(t, shm.Options{RegionSize: 1 << 20, MaxSize: 2 << 20}, false)
	a := ev.a
	cs := ev.cells(t, 3, 10)
	victim := ev.cells(t, 1, 0)[0]
	require.NoError(t, ev.e.WithTx(func(tx *Tx) error {
		for n := alloc.SuperblockSize; n >= 16; n /= 2 { // whole superblocks, then smaller
			for {
				if _, _, err := tx.heap.Alloc(n); err != nil {
					require.ErrorIs(t, err, alloc.ErrOutOfMemory)
					break
				}
			}
		}
		defer tx.heap.Using(tx.heap.Using(alloc.UseReplacement))
		for {
			if _, _, err := tx.heap.Alloc(16); err != nil {
				require.ErrorIs(t, err, alloc.ErrOutOfMemory)
				break
			}
		}
		tx.heap.ForgetLog() // kept for good
		return nil
	}))
	require.EqualValues(t, a.ReserveSuperblocks()/2, a.FreeSuperblocks(), "the reserve's lower half is left")
	return ev, cs, victim
}

// TestCrashAtEveryCommitPointAtAFullStore is TestCrashAtEveryCommitPoint
// with the store full, so that the commit's retire batch is a run of the
// reserve. Recovery leaves the run where the commit's outcome wants it:
// freed, the reserve whole again, if the commit did not happen; listed in
// the slot's retire ring if it did, and freed by the next collection.
func TestCrashAtEveryCommitPointAtAFullStore(t *testing.T) {
	for _, cp := range crashPoints {
		t.Run(fmt.Sprintf("%s#%d", cp.name, cp.nth), func(t *testing.T) {
			ev, cs, victim := newFullEnv(t) // the stopped goroutine keeps its lease: no Close
			free := ev.a.FreeSuperblocks()
			s := ev.crashCommit(cs, victim, cp.name, cp.nth)
			batch := handle.Handle(ev.e.slotPart(s).Batch.Load()) // stored before "redo written"
			if cp.name != "logged lock" && cp.name != "took lock" {
				require.Equal(t, free-1, ev.a.FreeSuperblocks(), "the batch took a superblock of the reserve")
				b, err := ev.a.Resolve(batch)
				require.NoError(t, err)
				require.Equal(t, alloc.SuperblockSize, len(b), "a run of its own")
			}
			for _, l := range []shm.Layer{ev.e, ev.r, ev.a} {
				require.NoError(t, l.Recover(0, []int{s}))
			}
			retired := false
			ev.r.Each(func(h handle.Handle, _ uint8) { retired = retired || h == victim.h })
			require.Equal(t, cp.committed, retired, "victim retired")
			if batch != handle.Null {
				_, err := ev.a.Resolve(batch)
				if cp.committed {
					require.NoError(t, err, "the batch waits in the slot's ring")
				} else {
					require.ErrorIs(t, err, handle.ErrStaleHandle, "the batch of a commit that did not happen is freed")
				}
			}
			for i, c := range cs {
				require.False(t, isLocked(c.lock().Load()), "cell %d still locked", i)
			}
			require.NoError(t, ev.add(cs, []int64{1, 1, 1}, nil), "a new transaction commits")
			require.NoError(t, ev.e.Collect())
			if batch != handle.Null {
				_, err := ev.a.Resolve(batch)
				require.ErrorIs(t, err, handle.ErrStaleHandle, "collected")
			}
			// The recovery also freed the slot's allocation-log chunk:
			// at least as many superblocks are free as before the commit.
			require.GreaterOrEqual(t, ev.a.FreeSuperblocks(), free, "the reserve is whole again")
			require.Empty(t, ev.a.Check())
		})
	}
}

// A slot gives its redo-log chunks back while memory is short (each freed
// before its handle is cleared): a crash between the two leaves a stale
// handle, which recovery's free refuses and the slot's next transaction
// forgets; nothing is freed twice.
func TestFreedLogChunkLeftStale(t *testing.T) {
	ev := newEnv(t, true)
	var stale handle.Handle
	require.NoError(t, ev.e.WithTx(func(tx *Tx) error {
		if err := tx.growLog(0); err != nil {
			return err
		}
		stale = tx.sp.Chunks[0]
		require.NoError(t, tx.heap.Free(stale)) // the "crash": the handle stays
		// Another block takes its place: a second free must not reach it.
		h, _, err := tx.heap.Alloc(chunkWords * 8)
		require.NoError(t, err)
		tx.heap.ForgetLog()
		ev.e.freeChunks(tx.sp) // what recovery and Release do
		require.Equal(t, handle.Null, tx.sp.Chunks[0])
		_, err = ev.a.Resolve(h)
		require.NoError(t, err, "the new block is untouched")
		return tx.heap.Free(h)
	}))
	require.Empty(t, ev.a.Check())
	require.NoError(t, ev.e.WithTx(func(tx *Tx) error {
		tx.sp.Chunks[1] = stale // and a transaction finds one
		tx.chunk[1] = nil
		return nil
	}))
	require.NoError(t, ev.e.WithTx(func(tx *Tx) error {
		ntx := newTx(ev.e, tx.heap)
		require.Equal(t, handle.Null, ntx.sp.Chunks[1], "forgotten")
		return nil
	}))
	require.Empty(t, ev.a.Check())
}
