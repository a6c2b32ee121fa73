package alloc

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/shmstore/shmstore/handle"
)

// Check walks all allocator metadata and returns every problem it finds,
// one sentence each; none means the allocator is consistent:
//
//   - every region published has its metadata and a bitmap that agrees with
//     the descriptors; free counts agree;
//   - descriptors are well formed: known kind and class, large runs whose
//     tails point at their head;
//   - a superblock is owned by a live slot, or sits in exactly one bin of
//     its class, or is free in the pool; a superblock or log owned by a slot
//     whose process is dead is reported (recovery has not run);
//   - for each superblock no live process is working in: the local free
//     list holds only free blocks, none twice, and its length is the count;
//     no free block is missing from it (a leak);
//   - a freed large block not returned to the pool.
//
// Superblocks owned by live slots of other processes are only checked for
// form: their owner may be halfway through an allocation. The caller's own
// slots must be idle. Check only reads.
func (a *Allocator) Check() []string {
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
		return true, int(p-1) == a.st.ProcIndex()
	}
	inBins := map[sbID]int{}
	for c := 1; c <= NumClasses; c++ {
		ch := &a.g.classes[c]
		if h := ch.lock.Holder(); h != 0 && !a.st.TokenAlive(h) {
			report("class %d lock held by dead process %d", c, h&0x3ff-1)
		}
		for bin := 0; bin < numBins; bin++ {
			id := ch.head[bin]
			for k := uint32(0); id != 0; k++ {
				if k > ch.n[bin] {
					report("class %d bin %d: list longer than its count %d (cycle?)", c, bin, ch.n[bin])
					break
				}
				d, _, err := a.descOf(id)
				if err != nil {
					report("class %d bin %d: superblock %#x: %v", c, bin, uint32(id), err)
					break
				}
				inBins[id]++
				if d.kind() != kindSmall || int(d.class()) != c || int(d.bin()) != bin+1 || d.owner.Load() != 0 {
					report("superblock %s in class %d bin %d has kind %d class %d bin %d owner %d",
						sbName(id), c, bin, d.kind(), d.class(), int(d.bin())-1, d.owner.Load())
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
	if h := a.g.poolLock.Holder(); h != 0 && !a.st.TokenAlive(h) {
		report("pool lock held by dead process %d", h&0x3ff-1)
	}
	for r := uint16(1); uint32(r) <= a.st.Regions(); r++ {
		base, err := a.st.Region(r)
		if err != nil {
			report("region %d: %v", r, err)
			continue
		}
		m := a.meta(base)
		if m.magic != regionMagic {
			// Never carved from: must be all free.
			for k := a.geo.metaSBs; k < a.geo.nsb; k++ {
				if a.descAt(base, k).kind() != kindFree {
					report("region %d never initialised but superblock %d is in use", r, k)
					break
				}
			}
			continue
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
			id := mkSB(r, k)
			d := a.descAt(base, k)
			kind := d.kind()
			if (kind == kindFree) == used {
				report("superblock %s: kind %d but bitmap says used=%v", sbName(id), kind, used)
			}
			if !used {
				free++
			}
			switch kind {
			case kindFree:
			case kindSmall:
				a.checkSmall(id, d, base, inBins[id], ownerOK, report)
			case kindLargeHead:
				if d.runLen == 0 || k+d.runLen > a.geo.nsb {
					report("large block at %s: run of %d superblocks out of range", sbName(id), d.runLen)
					break
				}
				for j := uint32(1); j < d.runLen; j++ {
					t := a.descAt(base, k+j)
					if t.kind() != kindLargeTail || t.runLen != j {
						report("large block at %s: superblock %d of its run has kind %d back %d", sbName(id), j, t.kind(), t.runLen)
					}
				}
				st := d.large.Load()
				o := d.owner.Load()
				if live, _ := ownerOK(o); st&1 == 0 && !live {
					report("large block at %s is free (state %d) but not returned to the pool", sbName(id), st)
				} else if o != 0 && !live {
					report("large block at %s in transit by slot %d of a dead process", sbName(id), o-1)
				}
			case kindLargeTail:
				hk := k - d.runLen
				if d.runLen == 0 || d.runLen > k {
					report("superblock %s: run tail without a head", sbName(id))
					break
				}
				hd := a.descAt(base, hk)
				switch hd.kind() {
				case kindLargeHead, kindTransit:
					if d.runLen >= hd.runLen {
						report("superblock %s: tail %d of a run of %d", sbName(id), d.runLen, hd.runLen)
					}
				case kindSmall:
					if c := hd.class(); c == 0 || c > NumClasses || d.runLen >= Classes[c].Span {
						report("superblock %s: tail %d of a span of class %d", sbName(id), d.runLen, c)
					}
				default:
					report("superblock %s: run tail whose head has kind %d", sbName(id), hd.kind())
				}
			case kindTransit:
				if live, _ := ownerOK(d.owner.Load()); !live {
					report("superblock %s in transit by slot %d of a dead process", sbName(id), int(d.owner.Load())-1)
				}
			default:
				report("superblock %s: unknown kind %d", sbName(id), kind)
			}
		}
		if free != m.free {
			report("region %d: %d superblocks free, its count says %d", r, free, m.free)
		}
	}
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
	return probs
}

func (a *Allocator) checkSmall(id sbID, d *desc, base unsafe.Pointer, bins int, ownerOK func(uint32) (bool, bool), report func(string, ...any)) {
	c := int(d.class())
	if c == 0 || c > NumClasses {
		report("superblock %s: class %d out of range", sbName(id), c)
		return
	}
	cl := &Classes[c]
	o := d.owner.Load()
	live, idleHere := ownerOK(o)
	switch {
	case o == 0 && bins != 1:
		report("superblock %s of class %d belongs to the global heap but is in %d bins", sbName(id), c, bins)
	case o != 0 && bins != 0:
		report("superblock %s owned by slot %d is also in a bin", sbName(id), o-1)
	case o != 0 && !live:
		report("superblock %s owned by slot %d of a dead or departed process", sbName(id), o-1)
	}
	if d.nblocks != cl.Blocks || d.fresh > d.nblocks || d.localFree > d.fresh {
		report("superblock %s: counts out of range (blocks %d/%d, fresh %d, local free %d)",
			sbName(id), d.nblocks, cl.Blocks, d.fresh, d.localFree)
		return
	}
	if live && !idleHere {
		return // another live process may be mid-operation on it
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
