package alloc

import (
	"errors"
	"fmt"
	"math/bits"
	"sync/atomic"
	"unsafe"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
)

// usedEstimate is how many blocks of a small superblock are allocated,
// counting pending remote frees as free (the hint may lag by a few).
func usedEstimate(d *desc) uint32 {
	used := d.fresh - d.localFree
	if r := d.remote.Load(); r < used {
		return used - r
	}
	return 0
}

func binFor(d *desc) uint32 {
	if d.nblocks == 0 {
		return 0
	}
	b := usedEstimate(d) * numBins / d.nblocks
	return min(b, numBins-1)
}

// toGlobal hands a small superblock from a heap (live, closing or dead) to
// the global heap: to the pool if no block of it is in use, else into a
// fullness bin of its class.
func (a *Allocator) toGlobal(id sbID, d *desc, c int) {
	if d.localFree == d.fresh {
		// Every used block is on the local list: nothing allocated,
		// nothing pending.
		base := a.st.MappedRegion(id.region())
		a.toPool(id, d, statesOf(d, sbBase(base, id.index()), c))
		return
	}
	ch := &a.g.classes[c]
	if a.st.Lock(&ch.lock) {
		a.rebuildBinsLocked(c)
	}
	d.owner.Store(0)
	if d.bin() == 0 { // not already a member (a repeated recovery)
		a.binInsertLocked(c, id, d, binFor(d))
	}
	a.st.Unlock(&ch.lock)
}

// toPool returns a wholly free small superblock (owned by the caller's heap
// or a dead one) to the pool. The next incarnation's states start above
// every generation this one handed out, so its old handles stay stale.
func (a *Allocator) toPool(id sbID, d *desc, states unsafe.Pointer) {
	floor := d.genFloor
	for i := uint32(0); i < d.fresh; i++ {
		if st := atomic.LoadUint32(stateAt(states, i)) & stateCount; st > floor {
			floor = st
		}
	}
	d.genFloor = (floor + 2) &^ 1 & stateCount
	d.kc.Store(mkKC(kindTransit, 0, 0)) // owner unchanged: a crash leaves it to recovery
	a.poolReturn(id, d)
}

// poolReturn marks the run a transit head d starts (d.runLen superblocks)
// free. Every superblock of the run takes the head's generation floor: a
// later run may start at any of them, and its states must start above every
// generation handed out in its bytes.
func (a *Allocator) poolReturn(id sbID, d *desc) {
	base := a.st.MappedRegion(id.region())
	if a.st.Lock(&a.g.poolLock) {
		a.rebuildPoolLocked()
	}
	bm := a.bitmap(base)
	n, floor := max(d.runLen, 1), d.genFloor
	for j := uint32(0); j < n; j++ {
		k := id.index() + j
		dj := a.descAt(base, k)
		dj.genFloor = max(dj.genFloor, floor)
		dj.runLen = 0
		dj.kc.Store(mkKC(kindFree, 0, 0))
		dj.owner.Store(0)
		bm[k/64] &^= 1 << (k % 64)
	}
	a.meta(base).free += n
	a.g.poolFree.Add(int64(n))
	a.g.starved.Store(0)
	a.st.Unlock(&a.g.poolLock)
}

// poolLowWater is how few free superblocks beyond the reserve count as
// memory being short once the store is at its maximum size.
const poolLowWater = 16

// poolLow reports whether memory is short: the store cannot grow and the
// pool is down to (nearly) the reserve, or an allocation is starved. Heaps
// then hand wholly free superblocks back at the end of a lease. (Always
// doing so at the maximum size made lease-per-operation 5-10x slower.)
func (a *Allocator) poolLow() bool {
	return a.g.starved.Load() != 0 || (a.g.atMax.Load() != 0 && a.g.poolFree.Load() < int64(a.reserve)+poolLowWater)
}

// Bins are circular doubly linked lists through binPrev/binNext, guarded by
// the class lock. A member has kc.bin = its bin + 1; 0 means not in a bin.

func (a *Allocator) binInsertLocked(c int, id sbID, d *desc, bin uint32) {
	ch := &a.g.classes[c]
	head := ch.head[bin]
	if head == 0 {
		d.binPrev, d.binNext = uint32(id), uint32(id)
		ch.head[bin] = id
	} else {
		hd, _, _ := a.descOf(head)
		tail := sbID(hd.binPrev)
		td, _, _ := a.descOf(tail)
		d.binPrev, d.binNext = uint32(tail), uint32(head)
		td.binNext = uint32(id)
		hd.binPrev = uint32(id)
		if bin < numBins-1 {
			ch.head[bin] = id // fuller-than-full bins serve newest first; bin 3 rotates
		}
	}
	ch.n[bin]++
	d.kc.Store(mkKC(kindSmall, uint32(c), bin+1))
}

func (a *Allocator) binRemoveLocked(c int, id sbID, d *desc) {
	ch := &a.g.classes[c]
	bin := d.bin() - 1
	if d.binNext == uint32(id) {
		ch.head[bin] = 0
	} else {
		pd, _, _ := a.descOf(sbID(d.binPrev))
		nd, _, _ := a.descOf(sbID(d.binNext))
		pd.binNext = d.binNext
		nd.binPrev = d.binPrev
		if ch.head[bin] == id {
			ch.head[bin] = sbID(d.binNext)
		}
	}
	ch.n[bin]--
	d.binPrev, d.binNext = 0, 0
	d.kc.Store(mkKC(kindSmall, uint32(c), 0))
}

// bin3Scan bounds the walk of the fullest bin on each acquire.
const bin3Scan = 8

// fromBins takes a superblock of class c with room from the global heap,
// fullest first, and makes mine its owner. A full one is taken once it
// received an eighth of its blocks back, or any (eager: an allocation
// that would otherwise take the reserve).
func (a *Allocator) fromBins(c int, mine uint32, eager bool) (sbID, *desc, unsafe.Pointer) {
	ch := &a.g.classes[c]
	if ch.head == [numBins]sbID{} {
		return 0, nil, nil // racy peek: nothing to take, no lock
	}
	if a.st.Lock(&ch.lock) {
		a.rebuildBinsLocked(c)
	}
	defer a.st.Unlock(&ch.lock)
	for _, bin := range [...]uint32{2, 1, 0} {
		if id := ch.head[bin]; id != 0 {
			d, base, _ := a.descOf(id)
			a.binRemoveLocked(c, id, d)
			d.owner.Store(mine)
			return id, d, base
		}
	}
	// The full bin: take one that received frees since it was put there.
	enough := uint32(1)
	if !eager {
		enough = max(1, Classes[c].Blocks/8)
	}
	scan := bin3Scan
	if eager {
		scan = int(ch.n[3])
	}
	for k := 0; k < scan && ch.head[3] != 0; k++ {
		id := ch.head[3]
		d, base, _ := a.descOf(id)
		if d.localFree > 0 || d.fresh < d.nblocks || d.remote.Load() >= enough {
			a.binRemoveLocked(c, id, d)
			d.owner.Store(mine)
			return id, d, base
		}
		ch.head[3] = sbID(d.binNext) // rotate
	}
	return 0, nil, nil
}

// carve takes a free superblock from the pool and sets it up for class c.
func (a *Allocator) carve(c int, mine uint32) (sbID, *desc, unsafe.Pointer, error) {
	cl := &Classes[c]
	id, base, err := a.takeRun(cl.Span, mine, kindTransit, a.reserve) // never from the reserve: see reserve.go
	if err != nil {
		return 0, nil, nil, err
	}
	d := a.descAt(base, id.index())
	sb := sbBase(base, id.index())
	states := statesOf(d, sb, c)
	floor := d.genFloor &^ 1 & stateCount
	for i := uint32(0); i < cl.Blocks; i++ {
		*stateAt(states, i) = floor
	}
	d.nblocks, d.localHead, d.localFree, d.fresh = cl.Blocks, 0, 0, 0
	d.binPrev, d.binNext = 0, 0
	d.remote.Store(0)
	if poisonOn {
		for i := uint32(0); i < cl.Blocks; i++ {
			poison(unsafe.Add(sb, uintptr(cl.BlockStart+i*cl.Size)), cl.Size)
		}
	}
	d.kc.Store(mkKC(kindSmall, uint32(c), 0)) // publish: resolvers now trust the states
	return id, d, base, nil
}

// takeRun finds n consecutive free superblocks in one region, leaving at
// least floor superblocks free in the pool once the store cannot grow (the
// part of the reserve the caller may not take), marks them used and gives the head the kind and
// owner asked for (tails point back). It grows the store when no region
// has room, reclaims wholly free superblocks from the bins when it cannot
// grow, and reports ErrOutOfMemory when neither helps.
func (a *Allocator) takeRun(n, owner, kind, floor uint32) (sbID, unsafe.Pointer, error) {
	reclaimed := false
	for {
		if id, base, ok := a.findRun(n, owner, kind, floor); ok {
			return id, base, nil
		}
		have := a.st.Regions()
		_, err := a.st.Grow(have)
		if err == nil {
			continue
		}
		if !errors.Is(err, shm.ErrStoreFull) {
			return 0, nil, fmt.Errorf("alloc: grow store: %w", err)
		}
		a.g.atMax.Store(1)
		a.g.starved.Store(1)
		if !reclaimed {
			reclaimed = true
			if a.reclaimEmpty(owner) > 0 {
				continue
			}
		}
		free := uint32(max(a.g.poolFree.Load(), 0))
		why := fmt.Sprintf("%d free", free)
		if floor > 0 {
			why += fmt.Sprintf(", %d of them kept for commits", min(free, floor))
		}
		if free >= n+floor {
			why += fmt.Sprintf(", but not %d in a row in one region", n)
		}
		return 0, nil, fmt.Errorf("alloc: %d superblocks wanted, %s; store %q at its maximum of %d regions: %w",
			n, why, a.st.Name(), a.st.MaxRegions(), ErrOutOfMemory)
	}
}

func (a *Allocator) findRun(n, owner, kind, floor uint32) (sbID, unsafe.Pointer, bool) {
	if a.st.Lock(&a.g.poolLock) {
		a.rebuildPoolLocked()
	}
	defer a.st.Unlock(&a.g.poolLock)
	regions := a.st.Regions()
	if regions == 0 {
		return 0, nil, false
	}
	if floor > 0 && regions >= a.st.MaxRegions() && a.g.poolFree.Load() < int64(n)+int64(floor) {
		// The store cannot grow: the reserve is kept. (Regions another
		// process made are counted once initialized.)
		a.eachRegion(nil, func(_ uint16, base unsafe.Pointer) {
			if a.meta(base).magic != regionMagic {
				a.initRegionLocked(base)
			}
		})
		if a.g.poolFree.Load() < int64(n)+int64(floor) {
			return 0, nil, false
		}
	}
	start := a.g.nextRegion
	for k := uint32(0); k < regions; k++ {
		r := uint16((start+k)%regions + 1)
		base, err := a.st.Region(r)
		if err != nil {
			continue
		}
		m := a.meta(base)
		if m.magic != regionMagic {
			a.initRegionLocked(base)
		}
		if m.free < n {
			continue
		}
		idx, ok := placeRun(a.bitmap(base), a.geo.nsb, n)
		if !ok {
			continue
		}
		a.g.nextRegion = uint32(r) - 1
		bm := a.bitmap(base)
		floor := uint32(0)
		for j := uint32(0); j < n; j++ {
			k := idx + j
			bm[k/64] |= 1 << (k % 64)
			floor = max(floor, a.descAt(base, k).genFloor)
		}
		m.free -= n
		a.g.poolFree.Add(-int64(n))
		head := a.descAt(base, idx)
		for j := uint32(1); j < n; j++ {
			t := a.descAt(base, idx+j)
			t.runLen = j
			t.kc.Store(mkKC(kindLargeTail, 0, 0))
		}
		head.runLen = n
		head.genFloor = floor
		head.large.Store(floor &^ 1 & stateCount)
		head.owner.Store(owner)
		head.kc.Store(mkKC(kind, 0, 0))
		return mkSB(r, idx), base, true
	}
	return 0, nil, false
}

// initRegionLocked marks a new region's metadata superblocks used.
func (a *Allocator) initRegionLocked(base unsafe.Pointer) {
	bm := a.bitmap(base)
	for k := uint32(0); k < a.geo.metaSBs; k++ {
		bm[k/64] |= 1 << (k % 64)
	}
	m := a.meta(base)
	m.free = a.geo.nsb - a.geo.metaSBs
	a.g.poolFree.Add(int64(m.free))
	m.magic = regionMagic
}

// placeRun chooses where in a region's bitmap a run of n superblocks
// goes: a single superblock at the highest free index, a longer run at
// the lowest place it fits. Singles (small classes' superblocks, redo-log
// chunks, the reserve's runs) thus pack at the top of the region, and
// spans and large blocks keep the bottom in one piece: a store that is
// nearly full still has its free superblocks in a row.
func placeRun(bm []uint64, nbits, n uint32) (uint32, bool) {
	if n == 1 {
		return findLastZero(bm, nbits)
	}
	return findZeroRun(bm, nbits, n)
}

// findLastZero finds the highest clear bit among the first nbits.
func findLastZero(bm []uint64, nbits uint32) (uint32, bool) {
	for w := (nbits + 63) / 64; w > 0; w-- {
		word := ^bm[w-1]
		if top := nbits - (w-1)*64; top < 64 {
			word &= 1<<top - 1 // bits at and above nbits are not superblocks
		}
		if word != 0 {
			return (w-1)*64 + uint32(63-bits.LeadingZeros64(word)), true
		}
	}
	return 0, false
}

// findZeroRun finds n consecutive clear bits among the first nbits.
func findZeroRun(bm []uint64, nbits, n uint32) (uint32, bool) {
	run, start := uint32(0), uint32(0)
	for i := uint32(0); i < nbits; {
		w := bm[i/64]
		if i%64 == 0 && w == ^uint64(0) {
			run = 0
			i += 64
			continue
		}
		if n == 1 && i%64 == 0 && w != ^uint64(0) {
			j := i + uint32(bits.TrailingZeros64(^w))
			return j, j < nbits
		}
		if w&(1<<(i%64)) == 0 {
			if run == 0 {
				start = i
			}
			run++
			if run == n {
				return start, true
			}
		} else {
			run = 0
		}
		i++
	}
	return 0, false
}

// allocRun allocates a large block of n superblocks, leaving floor of the
// pool. Its handle is written to *log before the block's state flips to
// allocated.
func (a *Allocator) allocRun(n, owner uint32, log *handle.Handle, floor uint32) (unsafe.Pointer, error) {
	id, base, err := a.takeRun(n, owner, kindLargeHead, floor)
	if err != nil {
		return nil, err
	}
	d := a.descAt(base, id.index())
	gen := (d.large.Load() + 1) & stateCount
	*log = handle.Make(id.region(), id.index()<<sbShift/handle.Granule, uint16(gen))
	d.large.Store(gen)
	d.owner.Store(0)
	return sbBase(base, id.index()), nil
}

// freeLarge frees a large block: one CAS on its state, then the run goes
// back to the pool. A freer that dies between the two leaves a free head
// that recovery returns; returnLarge checks under the pool lock that the
// run is still the one freed with that state (a run taken again starts
// above it, so the check cannot be fooled by reuse).
func (a *Allocator) freeLarge(hd handle.Handle, b blockRef) error {
	next := (b.state + 1) & stateCount
	if !b.d.large.CompareAndSwap(b.state, next) {
		return staleErr(hd)
	}
	a.returnLarge(mkSB(hd.Region(), uint32(hd.Offset()>>sbShift)), b.d, next)
	return nil
}

func (a *Allocator) returnLarge(id sbID, d *desc, freed uint32) {
	base := a.st.MappedRegion(id.region())
	if a.st.Lock(&a.g.poolLock) {
		a.rebuildPoolLocked()
	}
	if o := d.owner.Load(); freed&1 != 0 || d.kind() != kindLargeHead || d.large.Load() != freed ||
		(o != 0 && a.slotAlive(o)) {
		// Returned already (by its freer or by recovery) and maybe taken
		// again, or being allocated right now by a live slot (findRun
		// hands the head over with an even state and the owner set).
		a.st.Unlock(&a.g.poolLock)
		return
	}
	n := d.runLen
	bm := a.bitmap(base)
	for j := uint32(0); j < n; j++ {
		k := id.index() + j
		dj := a.descAt(base, k)
		dj.genFloor = (freed + 2) &^ 1 & stateCount
		dj.runLen = 0
		dj.kc.Store(mkKC(kindFree, 0, 0))
		dj.owner.Store(0)
		bm[k/64] &^= 1 << (k % 64)
	}
	a.meta(base).free += n
	a.g.poolFree.Add(int64(n))
	a.g.starved.Store(0)
	a.st.Unlock(&a.g.poolLock)
}

// reclaimEmpty moves wholly free superblocks from every class's bins to the
// pool, for when the store cannot grow. It returns how many it moved.
func (a *Allocator) reclaimEmpty(owner uint32) int {
	moved := 0
	for c := 1; c <= NumClasses; c++ {
		ch := &a.g.classes[c]
		if ch.head == [numBins]sbID{} {
			continue
		}
		var empty []sbID
		if a.st.Lock(&ch.lock) {
			a.rebuildBinsLocked(c)
		}
		for bin := 0; bin < numBins; bin++ {
			for k, n, id := uint32(0), ch.n[bin], ch.head[bin]; k < n && id != 0; k++ {
				d, base, _ := a.descOf(id)
				next := sbID(d.binNext)
				if a.whollyFree(d, statesOf(d, sbBase(base, id.index()), c)) {
					a.binRemoveLocked(c, id, d)
					d.owner.Store(owner) // in transit: recovery returns it if we die
					empty = append(empty, id)
				}
				id = next
			}
		}
		a.st.Unlock(&ch.lock)
		for _, id := range empty {
			d, base, _ := a.descOf(id)
			a.toPool(id, d, statesOf(d, sbBase(base, id.index()), c))
			moved++
		}
	}
	return moved
}

// whollyFree reports whether no block below fresh is allocated (a
// superblock nobody owns: its free blocks stay free).
func (a *Allocator) whollyFree(d *desc, states unsafe.Pointer) bool {
	for i := uint32(0); i < d.fresh; i++ {
		if atomic.LoadUint32(stateAt(states, i))&1 != 0 {
			return false
		}
	}
	return true
}

// rebuildBinsLocked rebuilds class c's bins from the descriptors, after the
// class lock was taken from a dead holder who may have left a list half
// changed. Its members are the small superblocks of class c that nobody
// owns. It takes the pool lock too (the one nesting in this package: a
// class lock, then the pool lock; never the other way), because a member
// is defined by two fields: with both locks held no superblock can enter or
// leave the set (entering and leaving the bins needs the class lock, and
// going to or from the pool the pool lock), so no descriptor it reads can
// change under it. Superblocks that heaps own are not touched.
// REQUIRES: class lock held.
func (a *Allocator) rebuildBinsLocked(c int) {
	if a.st.Lock(&a.g.poolLock) {
		a.rebuildPoolLocked()
	}
	defer a.st.Unlock(&a.g.poolLock)
	ch := &a.g.classes[c]
	ch.head = [numBins]sbID{}
	ch.n = [numBins]uint32{}
	a.eachDesc(func(id sbID, d *desc, _ unsafe.Pointer) {
		kc := d.kc.Load()
		if kc&0xff != kindSmall || int(kc>>8&0xff) != c || d.owner.Load() != 0 {
			return
		}
		d.binPrev, d.binNext = 0, 0
		a.binInsertLocked(c, id, d, binFor(d))
	})
}

// rebuildPoolLocked recomputes every region's bitmap and free count from
// the descriptors, after the pool lock was taken from a dead holder. A
// holder that died while making or undoing a run may have left tails whose
// head does not cover them (findRun writes the tails before the head;
// returning a run frees the head first): those are free. REQUIRES: pool
// lock held.
func (a *Allocator) rebuildPoolLocked() {
	total := int64(0)
	a.eachRegion(nil, func(_ uint16, base unsafe.Pointer) {
		for k := a.geo.metaSBs; k < a.geo.nsb; k++ {
			if d := a.descAt(base, k); d.kind() == kindLargeTail && !a.tailCovered(base, k, d.runLen) {
				// The dead holder may have raised the head's floor already
				// (returns go head first): the tail's must not be lower.
				if back := d.runLen; back > 0 && back <= k-a.geo.metaSBs {
					d.genFloor = max(d.genFloor, a.descAt(base, k-back).genFloor)
				}
				d.runLen = 0
				d.kc.Store(mkKC(kindFree, 0, 0))
				d.owner.Store(0)
			}
		}
		bm := a.bitmap(base)
		for i := range bm {
			bm[i] = 0
		}
		free := uint32(0)
		for k := uint32(0); k < a.geo.nsb; k++ {
			if k < a.geo.metaSBs || a.descAt(base, k).kind() != kindFree {
				bm[k/64] |= 1 << (k % 64)
			} else {
				free++
			}
		}
		m := a.meta(base)
		m.free = free
		m.magic = regionMagic
		total += int64(free)
	})
	a.g.poolFree.Store(total)
}

// tailCovered reports whether the superblock back places before tail k is
// a head whose run or span reaches k.
func (a *Allocator) tailCovered(base unsafe.Pointer, k, back uint32) bool {
	if back == 0 || back > k-a.geo.metaSBs {
		return false
	}
	hd := a.descAt(base, k-back)
	kc := hd.kc.Load() // once: toPool turns Small(c) into Transit without the pool lock
	switch kc & 0xff {
	case kindLargeHead, kindTransit:
		return back < hd.runLen
	case kindSmall:
		c := kc >> 8 & 0xff
		return c >= 1 && c <= NumClasses && back < Classes[c].Span
	}
	return false
}

// eachDesc calls f for every non-metadata superblock of every region
// whose file is intact (a damaged one is reported by Check, not touched).
func (a *Allocator) eachDesc(f func(id sbID, d *desc, base unsafe.Pointer)) {
	a.eachRegion(nil, func(r uint16, base unsafe.Pointer) {
		for k := a.geo.metaSBs; k < a.geo.nsb; k++ {
			f(mkSB(r, k), a.descAt(base, k), base)
		}
	})
}
