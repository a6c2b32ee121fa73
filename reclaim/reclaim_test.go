package reclaim

import (
	"errors"
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
)

func TestEnterExitActive(t *testing.T) {
	e := newEnv(t)
	require.Equal(t, uint64(math.MaxUint64), e.r.MinActive(), "nobody active")
	for _, tc := range []struct {
		name string
		rv   uint64
		want uint64
	}{
		{"zero", 0, 0},
		{"small", 7, 7},
		{"max is clamped", math.MaxUint64, math.MaxUint64 - 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.r.Enter(3, tc.rv)
			rv, ok := e.r.Active(3)
			require.True(t, ok)
			require.Equal(t, tc.want, rv)
			require.Equal(t, tc.want, e.r.MinActive())
			e.r.Exit(3)
			_, ok = e.r.Active(3)
			require.False(t, ok)
		})
	}
	e.r.Enter(1, 9)
	e.r.Enter(5, 4)
	require.Equal(t, uint64(4), e.r.MinActive())
	e.r.Exit(5)
	require.Equal(t, uint64(9), e.r.MinActive())
	e.r.Exit(1)
	// Slots out of range are ignored, never a panic.
	e.r.Enter(-1, 1)
	e.r.Enter(1000, 1)
	e.r.Exit(1000)
	_, ok := e.r.Active(1000)
	require.False(t, ok)
	n, oldest := e.r.Held(-3)
	require.Zero(t, n)
	require.Zero(t, oldest)
	require.Equal(t, uint64(math.MaxUint64), e.r.MinActive())
}

// A batch retired at epoch R waits while a slot is active at rv < R, and
// is freed once that slot exits or reads at rv >= R.
func TestHeldBackByActiveReader(t *testing.T) {
	e := newEnv(t)
	h := e.lease()
	reader := e.lease().Slot()
	used0 := e.used()

	xs := e.blocks(h, 3, 100)
	b := e.batch(h, blockEntries(xs...)...)
	e.r.Enter(reader, 5)
	require.NoError(t, e.r.Retire(h, b, 6))
	n, oldest := e.r.Held(h.Slot())
	require.Equal(t, 1, n)
	require.Equal(t, uint64(6), oldest)

	freed, err := e.r.Collect(h)
	require.NoError(t, err)
	require.Zero(t, freed, "the reader at rv 5 may still see what epoch 6 unlinked")
	e.requireLive(append(xs, b)...)

	e.r.Enter(reader, 6) // a transaction at rv 6 cannot see it
	freed, err = e.r.Collect(h)
	require.NoError(t, err)
	require.Equal(t, 1, freed)
	e.requireFreed(append(xs, b)...)
	require.Equal(t, used0, e.used())
	n, oldest = e.r.Held(h.Slot())
	require.Zero(t, n)
	require.Zero(t, oldest)

	// And quiescent slots do not count at all.
	ys := e.blocks(h, 2, 40)
	e.r.Enter(reader, 1)
	require.NoError(t, e.r.Retire(h, e.batch(h, blockEntries(ys...)...), 2))
	freed, _ = e.r.Collect(h)
	require.Zero(t, freed)
	e.r.Exit(reader)
	freed, err = e.r.Collect(h)
	require.NoError(t, err)
	require.Equal(t, 1, freed)
	e.requireFreed(ys...)
	require.Equal(t, used0, e.used())
	e.requireClean()
}

func TestRetireIdempotentAndChecked(t *testing.T) {
	e := newEnv(t)
	h := e.lease()
	other := e.lease()
	e.r.Enter(other.Slot(), 0) // hold everything back

	b := e.batch(h, blockEntries(e.blocks(h, 2, 64)...)...)
	require.NoError(t, e.r.Retire(h, b, 3))
	require.NoError(t, e.r.Retire(h, b, 3), "recovery may retire twice")
	require.NoError(t, e.r.RetireFor(h.Slot(), other, b, 3))
	require.NoError(t, e.r.RetireFor(h.Slot(), alloc.Heap{}, b, 3))
	n, _ := e.r.Held(h.Slot())
	require.Equal(t, 1, n)

	// Not batches: refused, nothing changes.
	plain := e.blocks(h, 1, 64)[0]
	require.ErrorIs(t, e.r.Retire(h, plain, 3), ErrBadBatch)
	require.ErrorIs(t, e.r.Retire(h, handle.Handle(0xdead_beef_1234_5677), 3), handle.ErrBadHandle)
	require.ErrorIs(t, e.r.Retire(h, handle.Null, 3), handle.ErrBadHandle)
	require.ErrorIs(t, e.r.Retire(alloc.Heap{}, b, 3), ErrNoHeap)
	require.ErrorIs(t, e.r.RetireFor(99, h, b, 3), ErrBadSlot)
	_, err := e.r.NewBatch(alloc.Heap{}, nil)
	require.ErrorIs(t, err, ErrNoHeap)
	_, err = e.r.Collect(alloc.Heap{})
	require.ErrorIs(t, err, ErrNoHeap)
	n, _ = e.r.Held(h.Slot())
	require.Equal(t, 1, n)

	// A batch freed already (retired, collected, then retired again by a
	// recoverer) is done: nothing to add.
	e.r.Exit(other.Slot())
	freed, err := e.r.Collect(h)
	require.NoError(t, err)
	require.Equal(t, 1, freed)
	require.NoError(t, e.r.Retire(h, b, 3))
	require.NoError(t, e.r.RetireFor(h.Slot(), alloc.Heap{}, b, 3))
	n, _ = e.r.Held(h.Slot())
	require.Zero(t, n)
	require.NoError(t, h.Free(plain))
	e.requireClean()
}

// A long transaction fills the ring: Retire merges instead of failing, the
// merge leaves nothing in the caller's allocation log, and everything is
// freed once the transaction ends.
func TestRingFullMerges(t *testing.T) {
	e := newEnv(t)
	h := e.lease()
	reader := e.lease().Slot()
	used0 := e.used()
	e.r.Enter(reader, 0)

	var all []handle.Handle
	const batches = 3*RingCap + 7
	for i := 0; i < batches; i++ {
		xs := e.blocks(h, 2, 48)
		b := e.batch(h, blockEntries(xs...)...)
		all = append(all, b)
		all = append(all, xs...)
		require.NoError(t, e.r.Retire(h, b, uint64(i+1)))
		require.Zero(t, h.LogLen(), "a merge batch must not stay in the caller's log")
		n, oldest := e.r.Held(h.Slot())
		require.LessOrEqual(t, n, RingCap)
		require.GreaterOrEqual(t, oldest, uint64(1))
	}
	// Everything is still accounted for.
	seen := map[handle.Handle]bool{}
	e.r.Each(func(hd handle.Handle, kind uint8) { seen[hd] = true })
	for _, hd := range all {
		require.True(t, seen[hd], "Each misses %v", hd)
	}
	e.requireLive(all...)

	freed, err := e.r.Collect(h)
	require.NoError(t, err)
	require.Zero(t, freed)
	e.r.Exit(reader)
	freed, err = e.r.Collect(h)
	require.NoError(t, err)
	require.Positive(t, freed)
	require.Zero(t, e.held())
	e.requireFreed(all...)
	require.Equal(t, used0, e.used())
	e.requireClean()
}

// RetireFor into a full ring without a heap puts the batch into the
// overflow ring (and fails, changing nothing, only when that is full too);
// with a heap it merges through that heap. Collect drains the overflow.
func TestRetireForFullRing(t *testing.T) {
	e := newEnv(t)
	h := e.lease()
	rec := e.lease() // the "recoverer"
	reader := e.lease().Slot()
	used0 := e.used()
	e.r.Enter(reader, 0)
	newBatch := func(hp alloc.Heap) handle.Handle {
		return e.batch(hp, blockEntries(e.blocks(hp, 1, 32)...)...)
	}
	for i := 0; i < RingCap; i++ {
		require.NoError(t, e.r.Retire(h, newBatch(h), uint64(i+1)))
	}
	n, _ := e.r.Held(h.Slot())
	require.Equal(t, RingCap, n, "no merge yet")

	extra := newBatch(rec)
	require.NoError(t, e.r.RetireFor(h.Slot(), alloc.Heap{}, extra, 500))
	require.NoError(t, e.r.RetireFor(h.Slot(), alloc.Heap{}, extra, 500), "idempotent")
	require.NoError(t, e.r.RetireFor(h.Slot(), rec, extra, 500), "idempotent, with a heap too")
	n, _ = e.r.Held(h.Slot())
	require.Equal(t, RingCap, n)
	over, oldestOver := e.r.HeldOverflow()
	require.Equal(t, 1, over, "into the overflow ring")
	require.Equal(t, uint64(500), oldestOver)
	for i := 1; i < RingCap; i++ {
		require.NoError(t, e.r.RetireFor(h.Slot(), alloc.Heap{}, newBatch(rec), 600))
	}
	refused := newBatch(rec)
	require.ErrorIs(t, e.r.RetireFor(h.Slot(), alloc.Heap{}, refused, 700), ErrRingFull)
	over, _ = e.r.HeldOverflow()
	require.Equal(t, RingCap, over)
	seen := map[handle.Handle]bool{}
	e.r.Each(func(hd handle.Handle, _ uint8) { seen[hd] = true })
	require.True(t, seen[extra], "Each walks the overflow ring")
	require.False(t, seen[refused])

	require.NoError(t, e.r.RetireFor(h.Slot(), rec, refused, 700))
	require.Zero(t, rec.LogLen())
	n, oldest := e.r.Held(h.Slot())
	require.Equal(t, 2, n, "the merged batch and the new one")
	require.Equal(t, uint64(RingCap), oldest, "the merged batch carries the largest epoch it merged")

	// Nothing is freed while the reader runs, not even from the overflow.
	freed, err := e.r.Collect(h)
	require.NoError(t, err)
	require.Zero(t, freed)
	e.requireLive(extra, refused)

	e.r.Exit(reader)
	for pass := 0; e.held() > 0 || over > 0; pass++ {
		require.Less(t, pass, 5)
		_, err = e.r.Collect(h)
		require.NoError(t, err)
		over, _ = e.r.HeldOverflow()
	}
	e.requireFreed(extra, refused)
	require.Equal(t, used0, e.used())

	// Without a reader, a full ring makes room by freeing (no heap needed
	// for plain blocks).
	e.r.Enter(reader, 1000)
	for i := 0; i < RingCap; i++ {
		require.NoError(t, e.r.Retire(h, newBatch(h), 7))
	}
	require.NoError(t, e.r.RetireFor(h.Slot(), alloc.Heap{}, newBatch(rec), 8))
	n, _ = e.r.Held(h.Slot())
	require.Equal(t, 1, n)
	over, _ = e.r.HeldOverflow()
	require.Zero(t, over)
	e.r.Exit(reader)
	_, err = e.r.Collect(h)
	require.NoError(t, err)
	require.Equal(t, used0, e.used())
	e.requireClean()
}

// A process that closes leaves the batches a reader still holds; the slot
// is then nobody's, and the next Collect anywhere adopts and frees them.
// Release frees at once what it can without a heap.
func TestCollectAdoptsOrphanRings(t *testing.T) {
	e1 := newEnv(t)
	base := filepath.Dir(e1.st.Dir())
	e2 := openEnv(t, base)
	h1 := e1.lease()
	reader := e1.lease().Slot()
	used0 := e1.used()

	h2 := e2.lease()
	s2 := h2.Slot()
	held := e2.blocks(h2, 4, 200)
	e1.r.Enter(reader, 5)
	require.NoError(t, e2.r.Retire(h2, e2.batch(h2, blockEntries(held...)...), 10))
	require.NoError(t, h2.Release())
	require.NoError(t, e2.st.Close())
	require.Zero(t, e1.st.Slot(s2).Owner.Load(), "the closed process's slot is free")
	n, oldest := e1.r.Held(s2)
	require.Equal(t, 1, n, "Release must not free what a reader may see")
	require.Equal(t, uint64(10), oldest)
	e1.requireLive(held...)

	freed, err := e1.r.Collect(h1)
	require.NoError(t, err)
	require.Zero(t, freed)
	n, _ = e1.r.Held(s2)
	require.Equal(t, 1, n, "not adopted while it cannot be freed")
	n, _ = e1.r.Held(h1.Slot())
	require.Zero(t, n)

	e1.r.Exit(reader)
	freed, err = e1.r.Collect(h1)
	require.NoError(t, err)
	require.Equal(t, 1, freed)
	e1.requireFreed(held...)
	require.Equal(t, used0, e1.used())

	// Release at Close frees plain blocks at once, and leaves object
	// batches (no heap, no finalizer) for the next collector.
	e3 := openEnv(t, base)
	h3 := e3.lease()
	s3 := h3.Slot()
	plain := e3.blocks(h3, 2, 64)
	objs := e3.blocks(h3, 2, 64)
	require.NoError(t, e3.r.Retire(h3, e3.batch(h3, blockEntries(plain...)...), 1))
	objBatch := e3.batch(h3, Entry{objs[0], 2}, Entry{objs[1], 2}, Entry{plain[0], KindBlock})
	require.NoError(t, e3.r.Retire(h3, objBatch, 2))
	require.NoError(t, h3.Release())
	require.NoError(t, e3.st.Close())
	e1.requireFreed(plain...)
	e1.requireLive(objs...)
	n, _ = e1.r.Held(s3)
	require.Equal(t, 1, n, "the object batch waits for a finalizer")

	var finalized []handle.Handle
	e1.r.SetFinalizer(2, func(h alloc.Heap, obj handle.Handle) error {
		finalized = append(finalized, obj)
		return h.Free(obj)
	})
	freed, err = e1.r.Collect(h1)
	require.NoError(t, err)
	require.Equal(t, 1, freed)
	require.ElementsMatch(t, objs, finalized)
	e1.requireFreed(objBatch)
	require.Equal(t, used0, e1.used())
	e1.requireClean()
}

// A slot that a live process owns but does not use (an idle slot in
// txn's pool) does not keep its batches: another slot's Collect adopts
// those that may go, unless a live collector is at work on the ring.
func TestCollectAdoptsIdleRings(t *testing.T) {
	e := newEnv(t)
	h1 := e.lease()
	idle := e.lease()
	reader := e.lease().Slot()
	used0 := e.used()

	e.r.Enter(reader, 2)
	early := e.blocks(idle, 2, 64)
	late := e.blocks(idle, 2, 64)
	require.NoError(t, e.r.Retire(idle, e.batch(idle, blockEntries(early...)...), 2))
	require.NoError(t, e.r.Retire(idle, e.batch(idle, blockEntries(late...)...), 3))
	freed, err := e.r.Collect(h1)
	require.NoError(t, err)
	require.Equal(t, 1, freed, "the batch at epoch 2 may go; the one at 3 waits")
	e.requireFreed(early...)
	e.requireLive(late...)
	n, oldest := e.r.Held(idle.Slot())
	require.Equal(t, 1, n, "left where it was")
	require.Equal(t, uint64(3), oldest)
	e.r.Exit(reader)

	// A live collector at work on the ring: hands off.
	rp := &e.r.part(idle.Slot()).ring
	rp.collector.Store(e.st.Token())
	freed, err = e.r.Collect(h1)
	require.NoError(t, err)
	require.Zero(t, freed)
	e.requireLive(late...)
	// A dead one's mark stays until its recovery clears it.
	const deadToken = 0x7fff_ffff
	rp.collector.Store(deadToken)
	require.NoError(t, e.r.Recover(deadToken, nil))
	require.Zero(t, rp.collector.Load())
	freed, err = e.r.Collect(h1)
	require.NoError(t, err)
	require.Equal(t, 1, freed)
	e.requireFreed(late...)
	require.Zero(t, e.held())
	require.Equal(t, used0, e.used())
	e.requireClean()
}

// Finalizers run exactly for object entries, each with its own kind,
// through nested batches; a kind without finalizer keeps its batch.
func TestFinalizers(t *testing.T) {
	e := newEnv(t)
	h := e.lease()
	used0 := e.used()
	calls := map[uint8][]handle.Handle{}
	fin := func(kind uint8) Finalizer {
		return func(fh alloc.Heap, obj handle.Handle) error {
			require.Equal(t, h.Slot(), fh.Slot(), "the collector's heap")
			calls[kind] = append(calls[kind], obj)
			return fh.Free(obj)
		}
	}
	e.r.SetFinalizer(2, fin(2))
	e.r.SetFinalizer(3, fin(3))
	e.r.SetFinalizer(KindBatch, fin(KindBatch)) // not an object kind: ignored
	e.r.SetFinalizer(KindBlock, fin(KindBlock))

	bs := e.blocks(h, 7, 64)
	inner := e.batch(h, Entry{bs[0], 2}, Entry{bs[1], 3}, Entry{bs[2], KindBlock})
	outer := e.batch(h, Entry{bs[3], KindBlock}, Entry{bs[4], 2}, Entry{inner, KindBatch}, Entry{bs[5], 3})
	require.NoError(t, e.r.Retire(h, outer, 1))
	freed, err := e.r.Collect(h)
	require.NoError(t, err)
	require.Equal(t, 1, freed)
	require.ElementsMatch(t, []handle.Handle{bs[0], bs[4]}, calls[2])
	require.ElementsMatch(t, []handle.Handle{bs[1], bs[5]}, calls[3])
	require.Empty(t, calls[KindBlock])
	require.Empty(t, calls[KindBatch])
	e.requireFreed(bs[:6]...)
	e.requireFreed(inner, outer)
	e.requireLive(bs[6])

	// Kind 9 has no finalizer: its plain blocks go, the batch stays.
	nine := e.blocks(h, 1, 64)[0]
	b9 := e.batch(h, Entry{nine, 9}, Entry{bs[6], KindBlock})
	require.NoError(t, e.r.Retire(h, b9, 2))
	freed, err = e.r.Collect(h)
	require.ErrorIs(t, err, ErrNoFinalizer)
	require.Zero(t, freed)
	e.requireFreed(bs[6])
	e.requireLive(nine, b9)
	e.r.SetFinalizer(9, fin(9))
	freed, err = e.r.Collect(h)
	require.NoError(t, err)
	require.Equal(t, 1, freed)
	require.Equal(t, []handle.Handle{nine}, calls[9])

	// A failing finalizer stops the collection; the batch stays, and the
	// next Collect runs it again.
	boom := errors.New("boom")
	fails := 1
	e.r.SetFinalizer(4, func(fh alloc.Heap, obj handle.Handle) error {
		if fails > 0 {
			fails--
			return boom
		}
		calls[4] = append(calls[4], obj)
		return fh.Free(obj)
	})
	four := e.blocks(h, 1, 64)[0]
	require.NoError(t, e.r.Retire(h, e.batch(h, Entry{four, 4}), 3))
	_, err = e.r.Collect(h)
	require.ErrorIs(t, err, boom)
	n, _ := e.r.Held(h.Slot())
	require.Equal(t, 1, n)
	freed, err = e.r.Collect(h)
	require.NoError(t, err)
	require.Equal(t, 1, freed)
	require.Equal(t, []handle.Handle{four}, calls[4])
	require.Equal(t, used0, e.used())
	e.requireClean()
}

// A finalizer that retires what it unlinks, into the full ring being
// collected, makes Retire merge instead of collecting recursively.
func TestFinalizerRetiresIntoFullRing(t *testing.T) {
	e := newEnv(t)
	h := e.lease()
	used0 := e.used()
	var children []handle.Handle
	finalized := 0
	e.r.SetFinalizer(5, func(fh alloc.Heap, obj handle.Handle) error {
		finalized++
		if _, err := e.a.Resolve(obj); err != nil {
			return nil // freed already
		}
		kids := e.blocks(fh, 1, 32)
		children = append(children, kids...)
		if err := e.r.Retire(fh, e.batch(fh, blockEntries(kids...)...), 1000); err != nil {
			return err
		}
		// Collect from inside a collection of the same slot does nothing.
		if n, err := e.r.Collect(fh); n != 0 || err != nil {
			return errors.New("nested Collect collected")
		}
		return fh.Free(obj)
	})
	objs := e.blocks(h, RingCap, 64)
	for i, o := range objs {
		require.NoError(t, e.r.Retire(h, e.batch(h, Entry{o, 5}), uint64(i+1)))
	}
	_, err := e.r.Collect(h)
	require.NoError(t, err)
	// Each pass finalizes what the previous merge listed; the children
	// retired meanwhile may fill the ring and be merged again.
	for pass := 0; e.held() > 0; pass++ {
		require.Less(t, pass, 10, "no progress")
		_, err := e.r.Collect(h)
		require.NoError(t, err)
	}
	require.Equal(t, RingCap, finalized, "each object finalized once")
	e.requireFreed(objs...)
	e.requireFreed(children...)
	require.Equal(t, RingCap, len(children))
	require.Equal(t, used0, e.used())
	e.requireClean()
}

// Each reports every batch block once as a block and every listed entry
// with its kind, through nested batches; what no longer resolves is left
// out.
func TestEach(t *testing.T) {
	e := newEnv(t)
	h := e.lease()
	reader := e.lease().Slot()
	e.r.Enter(reader, 0)
	bs := e.blocks(h, 6, 64)
	inner := e.batch(h, Entry{bs[0], 2}, Entry{bs[1], KindBlock})
	outer := e.batch(h, Entry{inner, KindBatch}, Entry{bs[2], KindBlock}, Entry{bs[3], 7}, Entry{bs[4], KindBlock})
	other := e.batch(h, Entry{bs[5], KindBlock}, Entry{bs[2], KindBlock}) // bs[2] listed twice
	require.NoError(t, e.r.Retire(h, outer, 1))
	h2 := e.lease()
	require.NoError(t, e.r.Retire(h2, other, 1))
	require.NoError(t, h.Free(bs[4])) // no longer resolves

	got := map[handle.Handle]uint8{}
	count := 0
	e.r.Each(func(hd handle.Handle, kind uint8) {
		got[hd] = kind
		count++
	})
	want := map[handle.Handle]uint8{
		outer: KindBlock, inner: KindBlock, other: KindBlock,
		bs[0]: 2, bs[1]: KindBlock, bs[2]: KindBlock, bs[3]: 7, bs[5]: KindBlock,
	}
	require.Equal(t, want, got)
	require.Equal(t, len(want), count, "each handle once")
	e.r.Exit(reader)
	e.r.SetFinalizer(2, func(fh alloc.Heap, obj handle.Handle) error { return fh.Free(obj) })
	e.r.SetFinalizer(7, func(fh alloc.Heap, obj handle.Handle) error { return fh.Free(obj) })
	_, err := e.r.Collect(h)
	require.NoError(t, err)
	_, err = e.r.Collect(h2)
	require.NoError(t, err)
	e.r.Each(func(hd handle.Handle, kind uint8) { t.Errorf("still reported: %v", hd) })
	e.requireClean()
}

// Recover makes a dead process's slots quiescent and repairs a ring whose
// lock it held in the middle of a merge.
func TestRecoverDeadSlot(t *testing.T) {
	e := newEnv(t)
	h := e.lease()
	s := e.lease().Slot()
	e.r.Enter(s, 3)
	require.Equal(t, uint64(3), e.r.MinActive())
	require.NoError(t, e.r.Recover(0x7fff_ffff, []int{s, -1, 12345}))
	_, ok := e.r.Active(s)
	require.False(t, ok)
	require.Equal(t, uint64(math.MaxUint64), e.r.MinActive())

	// The repair of a merge in flight: a pending batch the ring does not
	// list is freed; one it lists stays.
	rp := &e.r.part(h.Slot()).ring
	xs := e.blocks(h, 1, 64)
	listed := e.batch(h, blockEntries(xs...)...)
	require.NoError(t, e.r.Retire(h, listed, 1))
	orphan := e.batch(h, Entry{listed, KindBatch})
	for _, tc := range []struct {
		pending handle.Handle
		freed   bool
	}{{listed, false}, {orphan, true}} {
		e.r.lockRing(rp)
		rp.pending.Store(uint64(tc.pending))
		e.r.repairLocked(rp)
		require.Zero(t, rp.pending.Load())
		e.st.Unlock(&rp.mu)
		if tc.freed {
			e.requireFreed(tc.pending)
		} else {
			e.requireLive(tc.pending)
		}
	}
	e.requireLive(xs...)
	freed, err := e.r.Collect(h)
	require.NoError(t, err)
	require.Equal(t, 1, freed)
	e.requireFreed(xs...)
	e.requireClean()
}

func TestReadOnlyStore(t *testing.T) {
	e := newEnv(t)
	h := e.lease()
	b := e.batch(h, blockEntries(e.blocks(h, 1, 64)...)...)
	e.r.Enter(h.Slot(), 4)
	require.NoError(t, e.r.Retire(h, b, 9))

	o := testOptions
	o.Dir, o.ReadOnly = filepath.Dir(e.st.Dir()), true
	ro, err := shm.Open("t", o)
	require.NoError(t, err)
	defer ro.Close()
	a, err := alloc.New(ro)
	require.NoError(t, err)
	r, err := New(ro, a)
	require.NoError(t, err)
	r.Enter(h.Slot(), 100) // no effect, no fault
	r.Exit(h.Slot())
	rv, ok := r.Active(h.Slot())
	require.True(t, ok)
	require.Equal(t, uint64(4), rv)
	n, oldest := r.Held(h.Slot())
	require.Equal(t, 1, n)
	require.Equal(t, uint64(9), oldest)
	var seen []handle.Handle
	r.Each(func(hd handle.Handle, _ uint8) { seen = append(seen, hd) })
	require.Len(t, seen, 2)
	require.True(t, slices.Contains(seen, b))
	e.r.Exit(h.Slot())
	_, err = e.r.Collect(h)
	require.NoError(t, err)
}

func TestClosedStore(t *testing.T) {
	e := newEnv(t)
	require.NoError(t, e.st.Close())
	e.r.Enter(0, 1)
	e.r.Exit(0)
	_, ok := e.r.Active(0)
	require.False(t, ok)
	require.Zero(t, e.r.MinActive())
	e.r.Each(func(handle.Handle, uint8) { t.Error("nothing to report") })
	require.ErrorIs(t, e.r.Release(0), shm.ErrClosed)
	_, err := New(e.st, e.a)
	require.ErrorIs(t, err, shm.ErrClosed)
}
