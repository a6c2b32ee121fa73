package alloc

import (
	"encoding/binary"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
)

func lease(t testing.TB, a *Allocator) Heap {
	t.Helper()
	h, err := a.Lease()
	require.NoError(t, err)
	t.Cleanup(func() {
		if a.st.Guard() == nil {
			_ = h.Release() // refused if the test released it already
		}
	})
	return h
}

func TestAllocResolveFree(t *testing.T) {
	st, a := openTest(t, testDir(t), shm.Options{})
	h := lease(t, a)
	sizes := []int{1, 8, 16, 17, 24, 100, 1000, 4096, 16383, 16385, 20 << 10, 40<<10 + 3, 100 << 10, MaxSmall, MaxSmall + 1, 1 << 20}
	var hds []handle.Handle
	for _, n := range sizes {
		hd, b, err := h.Alloc(n)
		require.NoError(t, err, "alloc %d", n)
		require.Len(t, b, n)
		require.Equal(t, uint16(1), hd.Gen()&1, "allocated generations are odd")
		require.Zero(t, uintptr(unsafe.Pointer(&b[0]))%8, "blocks are 8-aligned")
		for i := range b {
			b[i] = byte(n + i)
		}
		hds = append(hds, hd)
	}
	for k, hd := range hds {
		b, err := a.Resolve(hd)
		require.NoError(t, err)
		require.GreaterOrEqual(t, len(b), sizes[k])
		for i := 0; i < sizes[k]; i++ {
			require.Equal(t, byte(sizes[k]+i), b[i], "block %v byte %d", hd, i)
		}
	}
	require.Equal(t, len(sizes), h.LogLen())
	h.ForgetLog()
	for _, hd := range hds {
		require.NoError(t, h.Free(hd))
		_, err := a.Resolve(hd)
		require.ErrorIs(t, err, handle.ErrStaleHandle, "resolve after free")
		require.ErrorIs(t, h.Free(hd), handle.ErrStaleHandle, "double free")
	}
	_, _, err := h.Alloc(0)
	require.ErrorIs(t, err, ErrBadSize)
	_, _, err = h.Alloc(-5)
	require.ErrorIs(t, err, ErrBadSize)
	_, _, err = h.Alloc(int(st.RegionSize()))
	require.ErrorIs(t, err, ErrTooLarge)
	h.Release()
	require.Zero(t, a.Stats().UsedBytes)
	requireClean(t, st, a)
}

func TestReuseAfterFreeGetsNewGeneration(t *testing.T) {
	st, a := openTest(t, testDir(t), shm.Options{})
	h := lease(t, a)
	defer h.Release()
	h1, _, err := h.Alloc(64)
	require.NoError(t, err)
	require.NoError(t, h.Free(h1))
	h2, _, err := h.Alloc(64)
	require.NoError(t, err)
	require.Equal(t, h1.Offset(), h2.Offset(), "the freed block is reused first")
	require.NotEqual(t, h1.Gen(), h2.Gen())
	_, err = a.Resolve(h1)
	require.ErrorIs(t, err, handle.ErrStaleHandle)
	require.ErrorIs(t, h.Free(h1), handle.ErrStaleHandle, "a stale handle frees nothing")
	_, err = a.Resolve(h2)
	require.NoError(t, err)
	h.ForgetLog()
	require.NoError(t, h.Free(h2))
	requireClean(t, st, a)
}

func TestRemoteFreeIsCollected(t *testing.T) {
	st, a := openTest(t, testDir(t), shm.Options{})
	owner, other := lease(t, a), lease(t, a)
	const n = 5000
	var hds []handle.Handle
	for i := 0; i < n; i++ {
		hd, _, err := owner.Alloc(48)
		require.NoError(t, err)
		hds = append(hds, hd)
	}
	owner.ForgetLog()
	used := a.Stats().UsedBytes
	for _, hd := range hds {
		require.NoError(t, other.Free(hd)) // remote: other does not own the superblocks
	}
	require.Equal(t, used-n*48, a.Stats().UsedBytes)
	requireClean(t, st, a)
	// The owner gets the blocks back: allocating again does not grow.
	regions := st.Regions()
	for i := 0; i < n; i++ {
		_, _, err := owner.Alloc(48)
		require.NoError(t, err)
	}
	require.Equal(t, regions, st.Regions())
	owner.FreeLog()
	owner.Release()
	other.Release()
	require.NoError(t, st.Close()) // gives back the slots and their log chunks
	st, a = openTest(t, st.Dir()[:len(st.Dir())-2], shm.Options{})
	require.Zero(t, a.Stats().UsedBytes)
	requireClean(t, st, a)
}

func TestOutOfMemoryThenFreesMakeRoom(t *testing.T) {
	st, a := openTest(t, testDir(t), shm.Options{RegionSize: 1 << 20, MaxSize: 2 << 20})
	h := lease(t, a)
	defer h.Release()
	var hds []handle.Handle
	var err error
	for {
		var hd handle.Handle
		hd, _, err = h.Alloc(1000)
		if err != nil {
			break
		}
		hds = append(hds, hd)
	}
	require.ErrorIs(t, err, ErrOutOfMemory)
	require.Equal(t, uint32(2), st.Regions())
	h.ForgetLog()
	requireClean(t, st, a)
	// Another class cannot be served either...
	_, _, err = h.Alloc(5000)
	require.ErrorIs(t, err, ErrOutOfMemory)
	// ...until frees make room: then every class is served again.
	for _, hd := range hds {
		require.NoError(t, h.Free(hd))
	}
	require.Equal(t, uint64(SuperblockSize), a.Stats().UsedBytes, "only the log chunk stays")
	for _, n := range []int{5000, 16, MaxSmall + 1, 200 << 10} {
		hd, _, err := h.Alloc(n)
		require.NoError(t, err, "alloc %d after freeing everything", n)
		require.NoError(t, h.Free(hd))
	}
	h.ForgetLog()
	requireClean(t, st, a)
}

func TestGrowthAndLazyMapping(t *testing.T) {
	dir := testDir(t)
	st, a := openTest(t, dir, shm.Options{RegionSize: 1 << 20})
	st2, a2 := openTest(t, dir, shm.Options{}) // a second attachment: its own mappings
	require.Equal(t, uint32(0), st2.Regions())
	h := lease(t, a)
	defer h.Release()
	var last handle.Handle
	for st.Regions() < 3 {
		hd, b, err := h.Alloc(60 << 10)
		require.NoError(t, err)
		binary.LittleEndian.PutUint64(b, uint64(hd))
		last = hd
	}
	require.Nil(t, st2.MappedRegion(last.Region()), "not mapped before first use")
	b, err := a2.Resolve(last)
	require.NoError(t, err)
	require.Equal(t, uint64(last), binary.LittleEndian.Uint64(b))
	require.NotNil(t, st2.MappedRegion(last.Region()))
	h.FreeLog()
	requireClean(t, st, a)
}

func TestLogChunksAndFreeLog(t *testing.T) {
	st, a := openTest(t, testDir(t), shm.Options{})
	h := lease(t, a)
	n := logInline + 2*chunkEntries + 10
	for i := 0; i < n; i++ {
		_, _, err := h.Alloc(16 + i%100)
		require.NoError(t, err)
	}
	require.Equal(t, n, h.LogLen())
	chunkBytes := uint64(3 * SuperblockSize)
	require.Greater(t, a.Stats().UsedBytes, chunkBytes)
	h.FreeLog()
	require.Zero(t, h.LogLen())
	require.Equal(t, chunkBytes, a.Stats().UsedBytes, "only the log's own chunks stay")
	h.Release()
	require.NoError(t, st.Close())
	st, err := shm.Open("t", shm.Options{Dir: st.Dir()[:len(st.Dir())-2]})
	require.NoError(t, err)
	a, err = New(st)
	require.NoError(t, err)
	require.Zero(t, a.Stats().UsedBytes, "Close frees the chunks too")
	requireClean(t, st, a)
	require.NoError(t, st.Close())
}

func TestTruncateLogKeepsEarlierEntries(t *testing.T) {
	st, a := openTest(t, testDir(t), shm.Options{})
	h := lease(t, a)
	defer h.Release()
	keep, _, err := h.Alloc(32)
	require.NoError(t, err)
	mark := h.LogLen()
	drop, _, err := h.Alloc(32)
	require.NoError(t, err)
	h.TruncateLog(mark)
	require.NoError(t, h.Free(drop))
	h.FreeLog()
	_, err = a.Resolve(keep)
	require.ErrorIs(t, err, handle.ErrStaleHandle, "entries before the mark are still logged")
	requireClean(t, st, a)
}

// The crash points of the fast paths, reproduced by hand: a slot's heap is
// left as its process would leave it if killed between two stores, then the
// slot is recovered as a dead one. Every block must end up exactly once
// free or allocated, and the store consistent.
func TestRecoverCrashPoints(t *testing.T) {
	type crash func(t *testing.T, h Heap) (live []handle.Handle)
	const c = 7 // 64-byte class
	points := map[string]crash{
		"logged, state not flipped": func(t *testing.T, h Heap) []handle.Handle {
			cu := &h.cur[c]
			i := cu.d.localHead - 1
			gen := (*stateAt(cu.states, i) + 1) & stateCount
			require.NoError(t, h.Adopt(handle.Make(cu.region, cu.granule0+i*cu.granules, uint16(gen))))
			return nil
		},
		"state flipped, not popped": func(t *testing.T, h Heap) []handle.Handle {
			cu := &h.cur[c]
			i := cu.d.localHead - 1
			sp := stateAt(cu.states, i)
			gen := (*sp + 1) & stateCount
			require.NoError(t, h.Adopt(handle.Make(cu.region, cu.granule0+i*cu.granules, uint16(gen))))
			*sp = gen
			return nil
		},
		"bump flipped, fresh not moved": func(t *testing.T, h Heap) []handle.Handle {
			cu := &h.cur[c]
			i := cu.d.fresh
			sp := stateAt(cu.states, i)
			gen := (*sp + 1) & stateCount
			require.NoError(t, h.Adopt(handle.Make(cu.region, cu.granule0+i*cu.granules, uint16(gen))))
			*sp = gen
			return nil
		},
		"local free: state flipped, not linked": func(t *testing.T, h Heap) []handle.Handle {
			hd, _, err := h.Alloc(64)
			require.NoError(t, err)
			h.ForgetLog()
			b, err := h.a.locate(hd)
			require.NoError(t, err)
			*b.sp = (b.state + 1) & stateCount
			return nil
		},
		"handed over, log cleared": func(t *testing.T, h Heap) []handle.Handle {
			hd, _, err := h.Alloc(64)
			require.NoError(t, err)
			h.ForgetLog()
			return []handle.Handle{hd}
		},
	}
	for name, crash := range points {
		t.Run(name, func(t *testing.T) {
			st, a := openTest(t, testDir(t), shm.Options{})
			h := lease(t, a)
			// A superblock with a free list and a fresh tail.
			var hds []handle.Handle
			for i := 0; i < 10; i++ {
				hd, _, err := h.Alloc(64)
				require.NoError(t, err)
				hds = append(hds, hd)
			}
			h.ForgetLog()
			for _, hd := range hds[:5] {
				require.NoError(t, h.Free(hd))
			}
			live := append(crash(t, h), hds[5:]...)
			require.NoError(t, a.Recover(0, []int{h.Slot()}))
			requireClean(t, st, a)
			for _, hd := range live {
				_, err := a.Resolve(hd)
				require.NoError(t, err, "a handed-over block survives recovery")
				require.NoError(t, a.FreeAny(hd))
			}
			require.Zero(t, a.Stats().UsedBytes)
			// The memory is reusable: a new heap on the same slot allocates.
			a.heaps[h.Slot()].Store(nil)
			h2 := a.Heap(h.Slot())
			for i := 0; i < 2000; i++ {
				_, _, err := h2.Alloc(64)
				require.NoError(t, err)
			}
			h2.FreeLog()
			h.Release()
			requireClean(t, st, a)
		})
	}
}

func TestCheckFindsCorruption(t *testing.T) {
	st, a := openTest(t, testDir(t), shm.Options{})
	h := lease(t, a)
	defer h.Release()
	var hds []handle.Handle
	for i := 0; i < 10; i++ {
		hd, _, err := h.Alloc(64)
		require.NoError(t, err)
		hds = append(hds, hd)
	}
	h.ForgetLog()
	require.NoError(t, h.Free(hds[0]))
	requireClean(t, st, a)
	b, err := a.locate(hds[1])
	require.NoError(t, err)
	// A block both free (on the list) and allocated.
	d := b.d
	saved := d.localHead
	*(*uint32)(b.ptr) = d.localHead
	d.localHead = b.index + 1
	d.localFree++
	probs := a.Check()
	require.NotEmpty(t, probs)
	require.Contains(t, probs[0], "on the free list and allocated")
	d.localHead, d.localFree = saved, d.localFree-1
	// A free block on no list: a leak.
	*b.sp = (b.state + 1) & stateCount
	probs = a.Check()
	require.NotEmpty(t, probs)
	require.Contains(t, probs[0], "leaked")
	*b.sp = b.state
	requireClean(t, st, a)
}

func TestRandomizedSingleProcess(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	st, a := openTest(t, testDir(t), shm.Options{RegionSize: 4 << 20, MaxSize: 64 << 20})
	heaps := []Heap{lease(t, a), lease(t, a), lease(t, a)}
	type blk struct {
		hd handle.Handle
		n  int
	}
	var live []blk
	for step := 0; step < 20000; step++ {
		h := heaps[r.IntN(len(heaps))]
		if len(live) > 0 && r.IntN(2) == 0 {
			k := r.IntN(len(live))
			b, err := a.Resolve(live[k].hd)
			require.NoError(t, err)
			require.Equal(t, uint64(live[k].hd), binary.LittleEndian.Uint64(b), "block content survives")
			require.NoError(t, h.Free(live[k].hd))
			live[k] = live[len(live)-1]
			live = live[:len(live)-1]
			continue
		}
		n := 8 + int(r.ExpFloat64()*300)
		if r.IntN(50) == 0 {
			n = MaxSmall + r.IntN(200<<10)
		}
		hd, b, err := h.Alloc(n)
		require.NoError(t, err)
		binary.LittleEndian.PutUint64(b, uint64(hd))
		h.ForgetLog()
		live = append(live, blk{hd, n})
	}
	requireClean(t, st, a)
	for _, b := range live {
		require.NoError(t, heaps[0].Free(b.hd))
	}
	for _, h := range heaps {
		h.Release()
	}
	require.Zero(t, a.Stats().UsedBytes)
	requireClean(t, st, a)
}

// TestPinHeldUntilFree: a block resolved pinned stays held until it is
// freed (by its heap or remotely, small or large), and a block handed
// out again does not pass for the one pinned.
func TestPinHeldUntilFree(t *testing.T) {
	_, a := openTest(t, testDir(t), shm.Options{})
	h := lease(t, a)
	for _, n := range []int{24, 2000, MaxSmall + 1} {
		for _, remote := range []bool{false, true} {
			hd, _, err := h.Alloc(n)
			require.NoError(t, err)
			b, pin, err := a.ResolvePinned(hd)
			require.NoError(t, err)
			require.GreaterOrEqual(t, len(b), n)
			require.True(t, pin.Held(), "size %d", n)
			h.ForgetLog()
			if remote {
				require.NoError(t, a.FreeAny(hd))
			} else {
				require.NoError(t, h.Free(hd))
			}
			require.False(t, pin.Held(), "size %d, remote %v: held after the free", n, remote)
			again, _, err := h.Alloc(n)
			require.NoError(t, err)
			require.False(t, pin.Held(), "size %d, remote %v: held by the next allocation (%v after %v)", n, remote, again, hd)
			require.NoError(t, h.Free(again))
			h.ForgetLog()
		}
	}
	_, pin, err := a.ResolvePinned(handle.Null)
	require.ErrorIs(t, err, handle.ErrBadHandle)
	require.False(t, pin.Held(), "the zero Pin is held by nothing")
}

// TestPinNotHeldAfterRecycle: the superblock of a pinned block goes
// back to the pool (its descriptor no longer says this class), and the
// word where the block's state was holds, by whatever wrote it next, the
// very value the pin saw. Only the kind/class check tells (removing it
// from Held fails this test).
func TestPinNotHeldAfterRecycle(t *testing.T) {
	_, a := openTest(t, testDir(t), shm.Options{})
	h := lease(t, a)
	hd, _, err := h.Alloc(24)
	require.NoError(t, err)
	_, pin, err := a.ResolvePinned(hd)
	require.NoError(t, err)
	require.True(t, pin.Held())
	require.NoError(t, h.Free(hd))
	h.ForgetLog()
	require.Equal(t, 1, h.trim()) // the superblock, wholly free, goes back to the pool
	was := atomic.SwapUint32(pin.sp, pin.state)
	t.Cleanup(func() { atomic.StoreUint32(pin.sp, was) })
	require.False(t, pin.Held(), "held by a superblock given back to the pool")
}
