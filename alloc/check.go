package alloc

import (
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
)

// Check walks all allocator metadata and returns every problem it finds,
// one sentence each; none means the allocator is consistent:
//
//   - every region published has its metadata and a bitmap that agrees with
//     the descriptors; free counts agree;
//   - descriptors are well formed: known kind and class, runs and spans
//     whose tails point at their head;
//   - a superblock is owned by a live slot, or sits in exactly one bin of
//     its class, or is free in the pool; a superblock or log owned by a slot
//     whose process is dead is reported (recovery has not run);
//   - for each superblock no live process is working in: the local free
//     list holds only free blocks, none twice, and its length is the count;
//     no free block is missing from it (a leak);
//   - a freed large block not returned to the pool.
//
// Check may run while other processes work: it reads each class's bins
// under that class's lock and the pool under the pool lock (one at a time),
// skips the insides of superblocks that live processes own, and looks again
// under the lock before it reports something a live process could be in
// the middle of. The caller's own slots must be idle (see CheckUnleased
// for a process whose other goroutines keep slots leased and busy). Check
// takes locks but writes no allocator state (unless it takes a lock from a
// dead holder: then it rebuilds what the lock guards, as any taker must);
// on a read-only store it takes none and is exact only when the store is
// quiet.
func (a *Allocator) Check() []string { return a.check(false) }

// CheckUnleased is Check that also leaves alone the insides of the
// superblocks of this process's slots that are leased right now: other
// goroutines may be working in them (txn keeps its slots leased between
// transactions).
func (a *Allocator) CheckUnleased() []string { return a.check(true) }

func (a *Allocator) check(skipLeased bool) []string {
	var probs []string
	report := func(format string, args ...any) {
		if len(probs) < 1000 {
			probs = append(probs, fmt.Sprintf(format, args...))
		}
	}
	ownerOK := func(o uint32) (live, idleHere bool) {
		if o == 0 || int(o) > a.st.NumSlots() {
			return false, false
		}
		p := a.st.Slot(int(o - 1)).Owner.Load()
		if p == 0 || !a.st.ProcAlive(int(p-1)) {
			return false, false
		}
		// Ours and not leased right now: nobody changes it under the
		// walk. A leased slot's heap (a running transaction's, or one
		// that txn keeps leased between transactions) is left alone.
		return true, int(p-1) == a.st.ProcIndex() && !(skipLeased && a.st.LeaseNumber(int(o-1)) != 0)
	}
	// withLock runs f holding m, unless the store is mapped read-only or m's
	// holder is dead (then recovery's business: reported, not taken).
	withLock := func(what string, m *shm.Mutex, repair func(), f func()) {
		if h := m.Holder(); h != 0 && !a.st.TokenAlive(h) {
			report("%s lock held by dead process %d", what, shm.TokenProc(h))
			f()
			return
		}
		if a.st.ReadOnly() {
			f()
			return
		}
		if a.st.Lock(m) {
			repair() // its holder died just now: the guarded data is rebuilt first
		}
		defer a.st.Unlock(m)
		f()
	}

	// 1. The bins, class by class: while the class lock is held no member
	// can leave, and nobody allocates from a member.
	inBins := map[sbID]bool{}
	for c := 1; c <= NumClasses; c++ {
		withLock(fmt.Sprintf("class %d", c), &a.g.classes[c].lock, func() { a.rebuildBinsLocked(c) }, func() {
			a.checkBinsLocked(c, inBins, report)
		})
	}
	// 2. The pool: bitmaps and free counts against the descriptors.
	withLock("pool", &a.g.poolLock, a.rebuildPoolLocked, func() { a.checkPoolLocked(report) })

	// 3. Everything else, without locks. kc and owner are read once; a
	// superblock another live process owns is only counted, never walked;
	// what looks wrong is looked at again before it is reported.
	type suspect struct {
		id  sbID
		kc  uint32
		o   uint32
		why string
	}
	var suspects []suspect
	type lost struct {
		id sbID
		kc uint32
	}
	var lostSmall []lost
	var freedLarge []sbID
	freedState := map[sbID]uint32{}
	a.eachRegion(report, func(r uint16, base unsafe.Pointer) {
		for k := a.geo.metaSBs; k < a.geo.nsb; k++ {
			id := mkSB(r, k)
			d := a.descAt(base, k)
			kc := d.kc.Load()
			o := d.owner.Load()
			live, idleHere := ownerOK(o)
			switch kc & 0xff {
			case kindSmall:
				switch {
				case inBins[id]:
				case o == 0:
					lostSmall = append(lostSmall, lost{id, kc})
				case !live:
					suspects = append(suspects, suspect{id, kc, o, "owned by slot %d of a dead or departed process"})
				case idleHere:
					a.checkSmall(id, d, base, kc, report)
				}
			case kindLargeHead:
				if o != 0 && !live {
					suspects = append(suspects, suspect{id, kc, o, "a large block in transit by slot %d of a dead process"})
				} else if st := d.large.Load(); st&1 == 0 && o == 0 {
					freedLarge = append(freedLarge, id)
					freedState[id] = st
				}
			case kindTransit:
				if !live {
					suspects = append(suspects, suspect{id, kc, o, "in transit by slot %d of a dead process"})
				}
			case kindFree, kindLargeTail: // checked under the pool lock
			default:
				suspects = append(suspects, suspect{id, kc, o, "of unknown kind (owner %d)"})
			}
		}
	})
	if len(suspects) > 0 {
		time.Sleep(20 * time.Millisecond)
		for _, sp := range suspects {
			d, _, _ := a.descOf(sp.id)
			if live, _ := ownerOK(sp.o); d.kc.Load() == sp.kc && d.owner.Load() == sp.o && !live {
				report("superblock %s (kind %d) is "+sp.why, sbName(sp.id), sp.kc&0xff, int(sp.o)-1)
			}
		}
	}
	for _, l := range lostSmall {
		// Unowned and in no bin: on its way into one (toGlobal clears the
		// owner and inserts under the class lock), or lost. Under that
		// lock, the same word and no owner means lost.
		d, _, _ := a.descOf(l.id)
		c := int(l.kc >> 8 & 0xff)
		if c == 0 || c > NumClasses {
			if d.kc.Load() == l.kc {
				report("superblock %s: class %d out of range", sbName(l.id), c)
			}
			continue
		}
		withLock(fmt.Sprintf("class %d", c), &a.g.classes[c].lock, func() { a.rebuildBinsLocked(c) }, func() {
			if d.kc.Load() == mkKC(kindSmall, uint32(c), 0) && d.owner.Load() == 0 {
				report("superblock %s of class %d belongs to the global heap but is in no bin", sbName(l.id), c)
			}
		})
	}
	// A live freer returns its run right after its CAS; only a freed state
	// that stays the same while we look three times is left behind.
	for wait := 20 * time.Millisecond; len(freedLarge) > 0 && wait <= 80*time.Millisecond; wait *= 2 {
		time.Sleep(wait)
		still := freedLarge[:0]
		for _, id := range freedLarge {
			d, _, _ := a.descOf(id)
			if st := d.large.Load(); d.kind() == kindLargeHead && st == freedState[id] && d.owner.Load() == 0 {
				still = append(still, id)
			}
		}
		freedLarge = still
	}
	for _, id := range freedLarge {
		report("large block at %s is free (state %d) but not returned to the pool", sbName(id), freedState[id])
	}
	a.checkSlots(report)
	return probs
}

// eachRegion calls f for every region whose file is intact (a file cut
// short under a live mapping would fault when touched) and, when report is
// not nil, reports the others.
func (a *Allocator) eachRegion(report func(string, ...any), f func(r uint16, base unsafe.Pointer)) {
	for r := uint16(1); uint32(r) <= a.st.Regions(); r++ {
		if !a.st.RegionFileOK(r) {
			if report != nil {
				report("region %d: file missing or not %d bytes: not walked", r, a.rsize)
			}
			continue
		}
		base, err := a.st.Region(r)
		if err != nil {
			if report != nil {
				report("region %d: %v", r, err)
			}
			continue
		}
		f(r, base)
	}
}

// checkBinsLocked walks class c's bins and checks each member in full.
// REQUIRES: class lock held (or the store quiet).
func (a *Allocator) checkBinsLocked(c int, inBins map[sbID]bool, report func(string, ...any)) {
	ch := &a.g.classes[c]
	for bin := 0; bin < numBins; bin++ {
		id := ch.head[bin]
		for k := uint32(0); id != 0; k++ {
			if k > ch.n[bin] {
				report("class %d bin %d: list longer than its count %d (cycle?)", c, bin, ch.n[bin])
				break
			}
			d, base, err := a.descOf(id)
			if err == nil && !a.st.RegionFileOK(id.region()) {
				err = fmt.Errorf("region %d's file is missing or cut short", id.region())
			}
			if err != nil {
				report("class %d bin %d: superblock %#x: unreachable: %v", c, bin, uint32(id), err)
				break
			}
			if inBins[id] {
				report("superblock %s is in two bins", sbName(id))
				break
			}
			inBins[id] = true
			if d.kind() != kindSmall || int(d.class()) != c || int(d.bin()) != bin+1 || d.owner.Load() != 0 {
				report("superblock %s in class %d bin %d has kind %d class %d bin %d owner %d",
					sbName(id), c, bin, d.kind(), d.class(), int(d.bin())-1, d.owner.Load())
			} else {
				a.checkSmall(id, d, base, d.kc.Load(), report)
			}
			next := sbID(d.binNext)
			if nd, _, err := a.descOf(next); err != nil || sbID(nd.binPrev) != id {
				report("superblock %s in class %d bin %d: broken links", sbName(id), c, bin)
				break
			}
			if next == ch.head[bin] {
				if k+1 != ch.n[bin] {
					report("class %d bin %d holds %d superblocks, count says %d", c, bin, k+1, ch.n[bin])
				}
				break
			}
			id = next
		}
	}
}

// checkPoolLocked compares each region's bitmap and free count with the
// descriptors' kinds, and checks runs and spans head to tail. REQUIRES:
// pool lock held (or the store quiet).
func (a *Allocator) checkPoolLocked(report func(string, ...any)) {
	a.eachRegion(nil, func(r uint16, base unsafe.Pointer) {
		m := a.meta(base)
		if m.magic != regionMagic {
			// Never carved from: must be all free.
			for k := a.geo.metaSBs; k < a.geo.nsb; k++ {
				if a.descAt(base, k).kind() != kindFree {
					report("region %d never initialised but superblock %d is in use", r, k)
					return
				}
			}
			return
		}
		bm := a.bitmap(base)
		free := uint32(0)
		for k := uint32(0); k < a.geo.nsb; k++ {
			used := bm[k/64]&(1<<(k%64)) != 0
			if k < a.geo.metaSBs {
				if !used {
					report("region %d: metadata superblock %d marked free", r, k)
				}
				continue
			}
			d := a.descAt(base, k)
			kind := d.kind()
			if (kind == kindFree) == used {
				report("superblock %s: kind %d but bitmap says used=%v", sbName(mkSB(r, k)), kind, used)
			}
			// Runs and spans are made and undone under the pool lock.
			switch kind {
			case kindLargeHead:
				a.checkRun(mkSB(r, k), d, base, report)
			case kindLargeTail:
				a.checkTail(mkSB(r, k), d, base, report)
			}
			if !used {
				free++
			}
		}
		if free != m.free {
			report("region %d: %d superblocks free, its count says %d", r, free, m.free)
		}
	})
}

// checkRun checks that a large block's tails point back at it.
func (a *Allocator) checkRun(id sbID, d *desc, base unsafe.Pointer, report func(string, ...any)) {
	k := id.index()
	if d.runLen == 0 || k+d.runLen > a.geo.nsb {
		report("large block at %s: run of %d superblocks out of range", sbName(id), d.runLen)
		return
	}
	for j := uint32(1); j < d.runLen; j++ {
		t := a.descAt(base, k+j)
		if t.kind() != kindLargeTail || t.runLen != j {
			report("large block at %s: superblock %d of its run has kind %d back %d", sbName(id), j, t.kind(), t.runLen)
		}
	}
}

// checkTail checks that a run or span tail has a head that covers it.
func (a *Allocator) checkTail(id sbID, d *desc, base unsafe.Pointer, report func(string, ...any)) {
	if !a.tailCovered(base, id.index(), d.runLen) {
		report("superblock %s: run tail %d not covered by its head", sbName(id), d.runLen)
	}
}

// checkSlots reports allocator state kept by slots that no live process
// owns (recovery clears it).
func (a *Allocator) checkSlots(report func(string, ...any)) {
	for s := 0; s < a.st.NumSlots(); s++ {
		p := a.st.Slot(s).Owner.Load()
		sh := a.slotHeap(s)
		if p != 0 && a.st.ProcAlive(int(p-1)) {
			continue
		}
		if sh.logN != 0 {
			report("slot %d (no live owner) logs %d allocations", s, sh.logN)
		}
		for c, id := range sh.current {
			if id != 0 {
				report("slot %d (no live owner) keeps superblock %s of class %d", s, sbName(id), c)
			}
		}
		for ci, hd := range sh.chunks {
			if hd != handle.Null {
				report("slot %d (no live owner) keeps log chunk %d (%v)", s, ci, hd)
			}
		}
	}
}

// checkSmall checks a small superblock's counts and its free list against
// its state array. The caller makes sure nobody changes them meanwhile: the
// superblock is in a bin (class lock held) or one of this process's idle
// slots owns it. kc is its descriptor word as the caller read it.
func (a *Allocator) checkSmall(id sbID, d *desc, base unsafe.Pointer, kc uint32, report func(string, ...any)) {
	c := int(kc >> 8 & 0xff)
	if c == 0 || c > NumClasses {
		report("superblock %s: class %d out of range", sbName(id), c)
		return
	}
	cl := &Classes[c]
	if d.nblocks != cl.Blocks || d.fresh > d.nblocks || d.localFree > d.fresh {
		report("superblock %s: counts out of range (blocks %d/%d, fresh %d, local free %d)",
			sbName(id), d.nblocks, cl.Blocks, d.fresh, d.localFree)
		return
	}
	sb := sbBase(base, id.index())
	states := statesOf(d, sb, c)
	blocks := unsafe.Add(sb, cl.BlockStart)
	seen := make([]bool, d.nblocks)
	n := uint32(0)
	for i := d.localHead; i != 0; {
		if i > d.fresh {
			report("superblock %s: free list reaches block %d beyond the used ones (%d)", sbName(id), i-1, d.fresh)
			break
		}
		if seen[i-1] {
			report("superblock %s: block %d twice on the free list", sbName(id), i-1)
			break
		}
		seen[i-1] = true
		if st := atomic.LoadUint32(stateAt(states, i-1)); st&1 != 0 || st&statePending != 0 {
			report("superblock %s: block %d is on the free list and %s (state %#x)", sbName(id), i-1, stateName(st), st)
		}
		n++
		i = *(*uint32)(unsafe.Add(blocks, uintptr(i-1)*uintptr(cl.Size)))
	}
	if n != d.localFree {
		report("superblock %s: free list holds %d blocks, its count says %d", sbName(id), n, d.localFree)
	}
	for i := uint32(0); i < d.nblocks; i++ {
		st := atomic.LoadUint32(stateAt(states, i))
		switch {
		case i >= d.fresh && st&1 != 0:
			report("superblock %s: block %d beyond the used ones is allocated", sbName(id), i)
		case i < d.fresh && st&1 == 0 && st&statePending == 0 && !seen[i]:
			report("superblock %s: block %d is free but on no free list (leaked)", sbName(id), i)
		}
	}
}

func stateName(st uint32) string {
	switch {
	case st&1 != 0:
		return "allocated"
	case st&statePending != 0:
		return "pending a remote free"
	}
	return "free"
}

func sbName(id sbID) string { return fmt.Sprintf("r%d/sb%d", id.region(), id.index()) }
