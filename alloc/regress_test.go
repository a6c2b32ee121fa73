package alloc

import (
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
)

// Regression tests for problems a review found. Each failed before its fix.

// churnLarge runs goroutines that allocate large blocks, tag them, look at
// them again a moment later and free them, until stop; it counts blocks
// that were freed or overwritten under their owner.
func churnLarge(t *testing.T, a *Allocator, stop *atomic.Bool) (wait func() (bad int64, first any)) {
	var bad atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	fail := func(msg string) { bad.Add(1); first.CompareAndSwap(nil, msg) }
	for w := 0; w < 3; w++ {
		h := lease(t, a)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				hd, b, err := h.Alloc(MaxSmall + 1)
				if err != nil {
					fail("alloc: " + err.Error())
					return
				}
				h.ForgetLog()
				binary.LittleEndian.PutUint64(b, uint64(hd))
				time.Sleep(time.Microsecond)
				rb, err := a.Resolve(hd)
				if err != nil {
					fail("resolve own block: " + err.Error())
					continue
				}
				if binary.LittleEndian.Uint64(rb) != uint64(hd) {
					fail("own block overwritten")
					continue
				}
				if err := h.Free(hd); err != nil {
					fail("free: " + err.Error())
				}
			}
		}()
	}
	return func() (int64, any) { wg.Wait(); return bad.Load(), first.Load() }
}

// Recovery (and Close) used to re-read a freed large block's state before
// returning it to the pool: a block freed, returned by its freer and
// allocated again in between was returned while live.
func TestRecoveryScanDoesNotReturnLiveLargeBlocks(t *testing.T) {
	st, a := openTest(t, testDir(t), shm.Options{RegionSize: 8 << 20, MaxSize: 64 << 20})
	var stop atomic.Bool
	wait := churnLarge(t, a, &stop)
	scans := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); scans++ {
		a.recoverSuperblocks(map[uint32]bool{}) // the scan every recovery runs
	}
	stop.Store(true)
	bad, first := wait()
	require.Zero(t, bad, "after %d scans: %v", scans, first)
	requireClean(t, st, a)
}

// An attachment that opens and closes repeatedly must not touch the large
// blocks another attachment is using.
func TestCloseDoesNotTouchOthersBlocks(t *testing.T) {
	dir := testDir(t)
	_, a := openTest(t, dir, shm.Options{RegionSize: 8 << 20, MaxSize: 256 << 20})
	var stop atomic.Bool
	wait := churnLarge(t, a, &stop)
	cycles := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); cycles++ {
		st2, err := shm.Open("t", shm.Options{Dir: dir})
		require.NoError(t, err)
		a2, err := New(st2)
		require.NoError(t, err)
		h2, err := a2.Lease()
		require.NoError(t, err)
		for c := 1; c <= NumClasses; c += 5 {
			_, _, err := h2.Alloc(int(Classes[c].Size))
			require.NoError(t, err)
		}
		require.NoError(t, h2.Release())
		require.NoError(t, st2.Close())
	}
	stop.Store(true)
	bad, first := wait()
	require.Zero(t, bad, "after %d open/close cycles: %v", cycles, first)
}

// Rebuilding a class's bins (after its lock was stolen) used to rewrite the
// descriptors of superblocks that heaps own, racing their return to the
// pool: one superblock ended up in the pool and in a bin.
func TestRebuildBinsRacingOwners(t *testing.T) {
	st, a := openTest(t, testDir(t), shm.Options{RegionSize: 4 << 20, MaxSize: 64 << 20})
	c := ClassOf(64)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		h := lease(t, a)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				a.g.starved.Store(1) // owners hand back wholly free superblocks at once
				var hds []handle.Handle
				for k := 0; k < 1000; k++ {
					hd, _, err := h.Alloc(64)
					if err != nil {
						t.Error(err)
						return
					}
					hds = append(hds, hd)
				}
				h.ForgetLog()
				for _, hd := range hds {
					if err := h.Free(hd); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		ch := &a.g.classes[c]
		a.st.Lock(&ch.lock)
		a.rebuildBinsLocked(c)
		a.st.Unlock(&ch.lock)
	}
	stop.Store(true)
	wg.Wait()
	requireClean(t, st, a)
}

// A pool-lock holder that died while returning a run (head freed, tails
// not) left tails that nothing ever freed.
func TestPoolHolderDeathFreesOrphanTails(t *testing.T) {
	dir := testDir(t)
	st, a := openTest(t, dir, shm.Options{RegionSize: 8 << 20, MaxSize: 8 << 20})
	h := lease(t, a)
	x, _, err := h.Alloc(3 * SuperblockSize)
	require.NoError(t, err)
	h.ForgetLog()
	freeBefore := a.Stats().FreeSuperblocks
	b, err := a.locate(x)
	require.NoError(t, err)
	next := (b.state + 1) & stateCount
	require.True(t, b.d.large.CompareAndSwap(b.state, next)) // freeLarge's CAS
	// Another process takes the pool lock, frees the head only, and dies.
	st2, err := shm.Open("t", shm.Options{Dir: dir})
	require.NoError(t, err)
	st2.Lock(&a.g.poolLock)
	base := a.st.MappedRegion(x.Region())
	k := uint32(x.Offset() >> sbShift)
	d0 := a.descAt(base, k)
	d0.runLen = 0
	d0.kc.Store(mkKC(kindFree, 0, 0))
	a.bitmap(base)[k/64] &^= 1 << (k % 64)
	require.NoError(t, st2.Close()) // gone: the pool lock still names its token
	// The next user of the pool steals the lock and rebuilds the pool.
	y, _, err := h.Alloc(MaxSmall + 1) // a large run: through the pool
	require.NoError(t, err)
	h.ForgetLog()
	require.NoError(t, h.Free(y))
	require.Equal(t, freeBefore+3, a.Stats().FreeSuperblocks, "the whole run is free again")
	require.NoError(t, h.Release())
	requireClean(t, st, a)
}

// A write into a freed block's link used to steer the next allocation to
// any block, even a live one.
func TestFreeListLinkOverwriteIsRepaired(t *testing.T) {
	st, a := openTest(t, testDir(t), shm.Options{})
	h := lease(t, a)
	victim, vb, err := h.Alloc(64)
	require.NoError(t, err)
	for i := 0; i < 20; i++ {
		_, _, err := h.Alloc(64)
		require.NoError(t, err)
	}
	x, xb, err := h.Alloc(64)
	require.NoError(t, err)
	h.ForgetLog()
	require.NoError(t, h.Free(x))
	vi, err := a.locate(victim)
	require.NoError(t, err)
	binary.LittleEndian.PutUint32(xb, vi.index+1) // stale write: "next free is the victim"
	binary.LittleEndian.PutUint64(vb, 0xabcdef)
	for i := 0; i < 3; i++ {
		_, b, err := h.Alloc(64)
		require.NoError(t, err)
		require.NotEqual(t, &vb[0], &b[0], "a live block handed out again")
	}
	require.Equal(t, uint64(0xabcdef), binary.LittleEndian.Uint64(vb))
	require.Equal(t, uint64(1), a.Stats().ListRepairs)
	h.FreeLog()
	_, err = a.Resolve(victim)
	require.NoError(t, err)
	require.NoError(t, h.Release())
	requireClean(t, st, a)
}

// Entry points without a slot fail cleanly on a closed or read-only store.
func TestClosedAndReadOnlyStoresRefuse(t *testing.T) {
	dir := testDir(t)
	st, a := openTest(t, dir, shm.Options{})
	h := lease(t, a)
	hd, _, err := h.Alloc(64)
	require.NoError(t, err)
	h.ForgetLog()
	require.NoError(t, h.Release())
	require.ErrorIs(t, h.Release(), shm.ErrNotLeased, "released twice")

	ro, err := shm.Open("t", shm.Options{Dir: dir, ReadOnly: true})
	require.NoError(t, err)
	ra, err := New(ro)
	require.NoError(t, err)
	_, err = ra.Resolve(hd)
	require.NoError(t, err, "a read-only store resolves")
	require.ErrorIs(t, ra.FreeAny(hd), shm.ErrBadOption, "but does not free")
	require.NoError(t, ro.Close())
	_, err = ra.Resolve(hd)
	require.ErrorIs(t, err, shm.ErrClosed)

	require.NoError(t, st.Close())
	_, err = a.Resolve(hd)
	require.ErrorIs(t, err, shm.ErrClosed)
	require.True(t, errors.Is(a.FreeAny(hd), shm.ErrClosed))
}

// A link overwritten with 0 cut the free list short while its count still
// promised blocks: acquire then took and re-binned the superblock forever.
func TestFreeListCutShortIsRepaired(t *testing.T) {
	st, a := openTest(t, testDir(t), shm.Options{})
	h := lease(t, a)
	c := ClassOf(64)
	var hds []handle.Handle
	var bufs [][]byte
	hd, b, err := h.Alloc(64)
	require.NoError(t, err)
	hds, bufs = append(hds, hd), append(bufs, b)
	d := h.cur[c].d
	for d.fresh < d.nblocks {
		hd, b, err := h.Alloc(64)
		require.NoError(t, err)
		hds, bufs = append(hds, hd), append(bufs, b)
	}
	h.ForgetLog()
	require.NoError(t, h.Free(hds[10]))
	require.NoError(t, h.Free(hds[20]))        // list: 20 -> 10
	binary.LittleEndian.PutUint32(bufs[20], 0) // stray write: the list ends at 20
	done := make(chan error, 1)
	got := map[handle.Handle]bool{}
	go func() {
		for i := 0; i < 5; i++ {
			hd, _, err := h.Alloc(64)
			if err != nil {
				done <- err
				return
			}
			got[hd] = true
		}
		done <- nil
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Alloc did not return: a count the list does not match made it loop")
	}
	require.Len(t, got, 5)
	require.GreaterOrEqual(t, a.Stats().ListRepairs, uint64(1))
	h.ForgetLog()
	requireClean(t, st, a)
}

// Once another return had cleared "starved", a heap that emptied its
// superblock kept it while idle, and allocations failed with it free.
func TestFreedMemoryServesOthersAtMaxSize(t *testing.T) {
	st, a := openTest(t, testDir(t), shm.Options{RegionSize: 4 << 20, MaxSize: 4 << 20})
	h1 := lease(t, a)
	var large []handle.Handle
	for {
		hd, _, err := h1.Alloc(MaxSmall + 1) // 3 superblocks each
		if err != nil {
			require.ErrorIs(t, err, ErrOutOfMemory)
			break
		}
		large = append(large, hd)
	}
	h1.ForgetLog()
	require.NoError(t, h1.Free(large[len(large)-1])) // 3 superblocks back; starved cleared
	large = large[:len(large)-1]
	h2 := lease(t, a)
	x, _, err := h2.Alloc(64) // carves one of the 3
	require.NoError(t, err)
	h2.ForgetLog()
	require.NoError(t, h2.Free(x)) // wholly free again
	require.NoError(t, h2.Release())
	_, _, err = h1.Alloc(MaxSmall + 1)
	require.NoError(t, err, "the idle heap gave its wholly free superblock back")
	h1.FreeLog()
	for _, hd := range large {
		require.NoError(t, h1.Free(hd))
	}
	requireClean(t, st, a)
}

// A large head a live slot is allocating (findRun hands it over with an
// even state and the slot as owner) must not be returned by a scan that
// mistook it for a freed one.
func TestReturnLargeSparesRunsBeingAllocated(t *testing.T) {
	st, a := openTest(t, testDir(t), shm.Options{})
	h := lease(t, a)
	id, base, err := a.takeRun(3, h.mine, kindLargeHead, 0)
	require.NoError(t, err)
	d := a.descAt(base, id.index())
	even := d.large.Load()
	require.Zero(t, even&1)
	a.returnLarge(id, d, even)
	require.Equal(t, uint32(kindLargeHead), d.kind(), "the run stays with its allocator")
	// The allocator finishes as allocRun would; the block is then freed.
	gen := (even + 1) & stateCount
	hd := handle.Make(id.region(), id.index()<<sbShift/handle.Granule, uint16(gen))
	d.large.Store(gen)
	d.owner.Store(0)
	require.NoError(t, h.Free(hd))
	requireClean(t, st, a)
}

// An allocation that finds the store full recovers dead processes before
// giving up, also when trimming its own heap found something first, and
// also for large blocks.
func TestOutOfMemoryRecoversTheDead(t *testing.T) {
	for _, tc := range []struct {
		name     string
		withFree bool // the heap holds a wholly free superblock, which trim gives back
		size     int
	}{
		{"span class", false, 20 << 10},
		{"span class after a trim", true, 20 << 10},
		{"large block", false, MaxSmall + 1},
		{"large block after a trim", true, MaxSmall + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := testDir(t)
			st, a := openTest(t, dir, shm.Options{RegionSize: 4 << 20, MaxSize: 4 << 20})
			h := lease(t, a)
			if tc.withFree {
				y, _, err := h.Alloc(16)
				require.NoError(t, err)
				h.ForgetLog()
				require.NoError(t, h.Free(y))
			} else {
				_, err := st.Grow(0)
				require.NoError(t, err)
			}
			killedHog(t, dir) // it held everything else
			hd, _, err := h.Alloc(tc.size)
			require.NoError(t, err, "a dead process held the memory: recovery gives it back")
			h.ForgetLog()
			require.NoError(t, h.Free(hd))
			require.NoError(t, h.Release())
			requireClean(t, st, a)
		})
	}
}

// A stale copy of a released Heap is refused and touches nothing, even
// after another goroutine leased the same slot again.
func TestStaleHeapReleaseIsRefused(t *testing.T) {
	st, a := openTest(t, testDir(t), shm.Options{SlotsPerProc: 1})
	first, err := a.Lease()
	require.NoError(t, err)
	require.NoError(t, first.Release())
	second, err := a.Lease()
	require.NoError(t, err)
	require.Equal(t, first.Slot(), second.Slot(), "one slot per process: the same one again")
	a.g.starved.Store(1) // memory short: a Release would trim
	_, _, err = second.Alloc(64)
	require.NoError(t, err)
	cur := second.cur[ClassOf(64)].d
	require.ErrorIs(t, first.Release(), shm.ErrNotLeased)
	require.Same(t, cur, second.cur[ClassOf(64)].d, "the stale release left the holder's heap alone")
	require.True(t, st.HoldsLease(second.Slot(), second.lease), "and its lease")
	second.FreeLog()
	require.NoError(t, second.Release())
	require.ErrorIs(t, second.Release(), shm.ErrNotLeased)
	requireClean(t, st, a)
}

// Check from another attachment while heaps lease per operation and hand
// wholly free superblocks back at every release (memory short) used to
// report problems that were not there: kinds and owners read twice, free
// lists walked while their new owner changed them.
func TestCheckQuietOnChurningSuperblocks(t *testing.T) {
	dir := testDir(t)
	st, a := openTest(t, dir, shm.Options{RegionSize: 4 << 20, MaxSize: 4 << 20})
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for !stop.Load() {
				h, err := a.Lease()
				if err != nil {
					t.Error(err)
					return
				}
				a.g.starved.Store(1) // every release trims
				var hds []handle.Handle
				for k := 0; k < 3; k++ {
					hd, _, err := h.Alloc(64 + 300*w)
					if err != nil {
						break
					}
					hds = append(hds, hd)
				}
				h.ForgetLog()
				for _, hd := range hds {
					_ = h.Free(hd)
				}
				_ = h.Release()
			}
		}(w)
	}
	st2, err := shm.Open("t", shm.Options{Dir: dir})
	require.NoError(t, err)
	a2, err := New(st2)
	require.NoError(t, err)
	seen := map[string]int{}
	runs := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); runs++ {
		for _, p := range a2.Check() {
			seen[p]++
		}
	}
	stop.Store(true)
	wg.Wait()
	require.NoError(t, st2.Close())
	t.Logf("%d checks of churning superblocks", runs)
	require.Empty(t, seen, "problems reported while nothing was wrong")
	requireClean(t, st, a)
}

// A class lock whose holder died while changing the bins is taken by the
// next user, which rebuilds the bins from the descriptors before using
// them: no superblock of the class is lost.
func TestStolenClassLockRebuildsBins(t *testing.T) {
	dir := testDir(t)
	st, a := openTest(t, dir, shm.Options{})
	h := lease(t, a)
	c := ClassOf(64)
	// Fill a few superblocks: each exhausted one goes to the bins.
	for i := 0; i < 4*int(Classes[c].Blocks); i++ {
		_, _, err := h.Alloc(64)
		require.NoError(t, err)
	}
	h.ForgetLog()
	ch := &a.g.classes[c]
	members := ch.n[0] + ch.n[1] + ch.n[2] + ch.n[3]
	require.GreaterOrEqual(t, members, uint32(3))
	// Another process takes the class lock, wrecks the lists halfway
	// through a change, and is gone.
	st2, err := shm.Open("t", shm.Options{Dir: dir})
	require.NoError(t, err)
	st2.Lock(&ch.lock)
	ch.head = [numBins]sbID{}
	ch.n = [numBins]uint32{}
	require.NoError(t, st2.Close())
	require.Contains(t, strings.Join(a.Check(), "\n"), "lock held by dead process")
	// The heap gives its current superblock to the global heap: it takes
	// the lock from the dead holder and rebuilds the bins first.
	h.releaseCurrent(c)
	require.Equal(t, members+1, ch.n[0]+ch.n[1]+ch.n[2]+ch.n[3], "every superblock of the class is in a bin again")
	require.NoError(t, h.Release())
	requireClean(t, st, a)
}
