package alloc

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
)

// fillOrdinary allocates blocks of n bytes until ErrOutOfMemory and hands
// them over; it returns them.
func fillOrdinary(t *testing.T, h Heap, n int) []handle.Handle {
	t.Helper()
	var hds []handle.Handle
	for {
		hd, _, err := h.Alloc(n)
		if err != nil {
			require.ErrorIs(t, err, ErrOutOfMemory)
			break
		}
		hds = append(hds, hd)
	}
	h.ForgetLog()
	return hds
}

func TestReserveSize(t *testing.T) {
	for _, tc := range []struct{ usable, want uint64 }{
		{12, 3}, {30, 6}, {96, 6}, {252, 15}, {1020, 32}, {1 << 20, 32},
	} {
		require.Equal(t, uint32(tc.want), reserveFor(tc.usable), "%d usable superblocks", tc.usable)
	}
}

// Ordinary allocations leave the reserve alone at the maximum size;
// metadata takes it, a superblock of its own at a time, and freeing gives
// it back at once.
func TestReserveServesMetadataOnly(t *testing.T) {
	st, a := openTest(t, testDir(t), shm.Options{RegionSize: 4 << 20, MaxSize: 8 << 20})
	h := lease(t, a)
	r := a.ReserveSuperblocks()
	require.Equal(t, 7, r) // 2 regions of 63 usable superblocks: 126/16
	hds := fillOrdinary(t, h, 1000)
	require.Equal(t, r, a.Stats().FreeSuperblocks, "the fill stopped at the reserve")
	_, _, err := h.Alloc(5000) // another class: would carve
	require.ErrorIs(t, err, ErrOutOfMemory)
	_, _, err = h.Alloc(MaxSmall + 1)
	require.ErrorIs(t, err, ErrOutOfMemory)

	prev := h.Using(UseMetadata)
	require.Equal(t, UseOrdinary, prev)
	var meta []handle.Handle
	for _, n := range []int{40, 25 << 10, 64 << 10, MaxSmall + 1} {
		hd, b, err := h.Alloc(n)
		require.NoError(t, err, "metadata of %d bytes at a full store", n)
		require.Equal(t, n, len(b))
		meta = append(meta, hd)
	}
	require.Equal(t, r-6, a.Stats().FreeSuperblocks, "a superblock of its own each (3 for the large one)")
	h.Using(prev)
	h.ForgetLog()
	_, _, err = h.Alloc(40)
	require.ErrorIs(t, err, ErrOutOfMemory, "ordinary allocations do not share the reserve's superblocks")
	for _, hd := range meta {
		require.NoError(t, h.Free(hd))
	}
	require.Equal(t, r, a.Stats().FreeSuperblocks, "freeing refilled the reserve")
	for _, hd := range hds {
		require.NoError(t, h.Free(hd))
	}
	requireClean(t, st, a)
}

// A replacement value may take the upper half of the reserve, never the
// lower half that metadata keeps.
func TestReserveReplacementTakesHalf(t *testing.T) {
	st, a := openTest(t, testDir(t), shm.Options{RegionSize: 4 << 20, MaxSize: 8 << 20})
	h := lease(t, a)
	r := a.ReserveSuperblocks()
	hds := fillOrdinary(t, h, SuperblockSize)
	h.Using(UseReplacement)
	repl := fillOrdinary(t, h, SuperblockSize)
	require.Len(t, repl, r-r/2)
	h.Using(UseMetadata)
	meta := fillOrdinary(t, h, SuperblockSize)
	require.Len(t, meta, r/2)
	h.Using(UseOrdinary)
	for _, hd := range append(append(hds, repl...), meta...) {
		require.NoError(t, h.Free(hd))
	}
	requireClean(t, st, a)
}

// Before it takes a superblock of the reserve, metadata takes a free block
// of a larger class.
func TestReserveMetadataUsesLargerFreeBlocks(t *testing.T) {
	st, a := openTest(t, testDir(t), shm.Options{RegionSize: 4 << 20, MaxSize: 8 << 20})
	h := lease(t, a)
	hds := fillOrdinary(t, h, 200)
	require.NoError(t, h.Free(hds[len(hds)-1])) // a free block in the heap's superblock
	free := a.Stats().FreeSuperblocks
	h.Using(UseMetadata)
	hd, b, err := h.Alloc(40)
	require.NoError(t, err)
	require.Equal(t, 40, len(b))
	h.Using(UseOrdinary)
	h.ForgetLog()
	full, err := a.Resolve(hd)
	require.NoError(t, err)
	require.Equal(t, int(Classes[ClassOf(200)].Size), len(full), "the freed 200-byte block")
	require.Equal(t, free, a.Stats().FreeSuperblocks, "no superblock of the reserve")
	require.NoError(t, h.Free(hd))
	for _, hd := range hds[:len(hds)-1] {
		require.NoError(t, h.Free(hd))
	}
	requireClean(t, st, a)
}
