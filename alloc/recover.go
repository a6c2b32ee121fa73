package alloc

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
)

var _ shm.Layer = (*Allocator)(nil)

// Recover repairs what a dead process left in the allocator (shm.Layer):
//
//  1. locks it held: taken over and what they guard rebuilt from the
//     descriptors (bins of a class, the pool bitmaps);
//  2. superblocks its slots owned: the local free list rebuilt from the
//     state array, then handed to the global heap (or the pool); a
//     superblock in transit goes to the pool; a large block whose state
//     never flipped goes to the pool;
//  3. large blocks freed by anyone who died before returning them: to the
//     pool;
//  4. each slot's allocation log: every logged block still allocated with
//     its logged generation is freed; then the log chunks; then the slot's
//     part is cleared.
//
// Every step is idempotent, so a recoverer that dies is simply followed by
// another. It runs last, after txn's and reclaim's: txn's recovery has
// by then handed over the allocations of a commit past its commit point,
// so what step 4 frees is exactly what unfinished attempts allocated (the
// essay that opens txn/recover.go tells the whole of recovery).
func (a *Allocator) Recover(deadToken uint32, slots []int) error {
	for c := 1; c <= NumClasses; c++ {
		if ch := &a.g.classes[c]; ch.lock.Holder() == deadToken && a.st.TakeOver(&ch.lock) {
			a.rebuildBinsLocked(c)
			a.st.Unlock(&ch.lock)
		}
	}
	if a.g.poolLock.Holder() == deadToken && a.st.TakeOver(&a.g.poolLock) {
		a.rebuildPoolLocked()
		a.st.Unlock(&a.g.poolLock)
	}
	dead := make(map[uint32]bool, len(slots))
	for _, s := range slots {
		dead[uint32(s+1)] = true
	}
	a.recoverSuperblocks(dead)
	for _, s := range slots {
		a.clearSlot(s)
	}
	return nil
}

// Release gives back a live process's slot at Close (shm.Layer): its
// unhanded allocations are freed (they were never linked anywhere) and its
// superblocks go to the global heap.
//
// A live slot is between operations, so its only superblocks are its
// current ones: no scan of the store, and nothing of anyone else touched.
func (a *Allocator) Release(slot int) error {
	sh := a.slotHeap(slot)
	mine := uint32(slot + 1)
	for c := 1; c <= NumClasses; c++ {
		id := sh.current[c]
		if id == 0 {
			continue
		}
		sh.current[c] = 0
		if !a.st.RegionFileOK(id.region()) {
			continue // cut short under us: touching it would fault
		}
		if d, _, err := a.descOf(id); err == nil && d.kind() == kindSmall && d.owner.Load() == mine {
			a.toGlobal(id, d, c)
		}
	}
	a.clearSlot(slot)
	a.heaps[slot].Store(nil)
	return nil
}

func (a *Allocator) recoverSuperblocks(dead map[uint32]bool) {
	type owned struct {
		id sbID
		d  *desc
		c  int
	}
	type freedRun struct {
		id sbID
		st uint32 // the freed state seen by the scan
	}
	var small []owned
	var transit []sbID
	var large []freedRun
	a.eachDesc(func(id sbID, d *desc, base unsafe.Pointer) {
		o := d.owner.Load()
		switch d.kind() {
		case kindSmall:
			if dead[o] {
				small = append(small, owned{id, d, int(d.class())})
			}
		case kindTransit:
			if dead[o] {
				transit = append(transit, id)
			}
		case kindLargeHead:
			st := d.large.Load()
			if st&1 == 0 && (o == 0 || dead[o] || !a.slotAlive(o)) {
				large = append(large, freedRun{id, st})
			} else if dead[o] {
				d.owner.Store(0) // allocated and logged: the log frees it
			}
		}
	})
	for _, s := range small {
		base := a.st.MappedRegion(s.id.region())
		states := statesOf(s.d, sbBase(base, s.id.index()), s.c)
		a.repairSmall(s.d, s.c, base, s.id, states)
		a.toGlobal(s.id, s.d, s.c)
	}
	for _, id := range transit {
		d, _, _ := a.descOf(id)
		a.poolReturn(id, d)
	}
	for _, r := range large {
		// Only if still the block we saw freed: meanwhile its freer may have
		// returned it and someone else allocated the run again.
		d, _, _ := a.descOf(r.id)
		a.returnLarge(r.id, d, r.st)
	}
}

// repairSmall rebuilds the owner-only fields of a superblock whose owner
// died at an unknown instruction: the bump index passes any block that
// was allocated before the index moved, and the local free list becomes
// exactly the free, not-pending blocks below it.
func (a *Allocator) repairSmall(d *desc, c int, base unsafe.Pointer, id sbID, states unsafe.Pointer) {
	cl := &Classes[c]
	for d.fresh < d.nblocks && atomic.LoadUint32(stateAt(states, d.fresh))&1 != 0 {
		d.fresh++
	}
	blocks := unsafe.Add(sbBase(base, id.index()), cl.BlockStart)
	head, n := uint32(0), uint32(0)
	for i := d.fresh; i > 0; i-- {
		st := atomic.LoadUint32(stateAt(states, i-1))
		if st&1 == 0 && st&statePending == 0 {
			*(*uint32)(unsafe.Add(blocks, uintptr(i-1)*uintptr(cl.Size))) = head
			head = i
			n++
		}
	}
	d.localHead, d.localFree = head, n
}

// clearSlot frees a slot's logged allocations and its log chunks, and
// clears its part.
func (a *Allocator) clearSlot(slot int) {
	sh := a.slotHeap(slot)
	a.freeLogged(sh, func(hd handle.Handle) { _ = a.FreeAny(hd) })
	for ci := range sh.chunks {
		if hd := sh.chunks[ci]; hd != handle.Null {
			_ = a.FreeAny(hd)
			sh.chunks[ci] = handle.Null
		}
	}
	sh.current = [NumClasses + 1]sbID{}
}

// FreeAny frees a block without a heap: always the remote path. For
// recovery, and for code that holds no slot.
func (a *Allocator) FreeAny(hd handle.Handle) error {
	if err := a.st.Guard(); err != nil {
		return err
	}
	if a.st.ReadOnly() {
		return fmt.Errorf("alloc: free %v: store %q opened read-only: %w", hd, a.st.Name(), shm.ErrBadOption)
	}
	b, err := a.locate(hd)
	if err != nil {
		return err
	}
	if b.large {
		return a.freeLarge(hd, b)
	}
	if poisonOn {
		poison(b.ptr, b.size)
	}
	if !atomic.CompareAndSwapUint32(b.sp, b.state, ((b.state+1)&stateCount)|statePending) {
		return staleErr(hd)
	}
	b.d.remote.Add(1)
	return nil
}

// slotAlive reports whether slot owner-1 belongs to a live process.
func (a *Allocator) slotAlive(owner uint32) bool {
	if owner == 0 || int(owner) > a.st.NumSlots() {
		return false
	}
	p := a.st.Slot(int(owner - 1)).Owner.Load()
	return p != 0 && a.st.ProcAlive(int(p-1))
}

// ForgetLogOf is ForgetLog for a slot nobody leases (a dead process's, by
// its recoverer): its logged allocations are handed over and recovery will
// not free them.
func (a *Allocator) ForgetLogOf(slot int) { a.slotHeap(slot).logN = 0 }
