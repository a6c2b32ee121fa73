package reclaim

import (
	"fmt"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
)

// Recover repairs reclaim's state after the process whose lock token was
// deadToken died (shm.Layer):
//
//  1. each of its slots publishes "quiescent": its transactions read
//     nothing any more, and must not hold reclamation back;
//  2. every ring lock it held (its own rings', an adopted ring's, or the
//     ring of a slot it was recovering) is taken over and repaired: a
//     merge batch in flight is freed unless the ring lists it; and every
//     ring it was collecting loses its collector mark, so that adopters
//     may take its batches (the frees it did are repeated, harmlessly).
//
// The rings stay where they are: once shm gives the slots back (Owner 0)
// the next Collect anywhere adopts them, or the slot's next owner
// collects its ring itself. Recover is idempotent. It runs after txn's
// Recover and before alloc's (the essay that opens txn/recover.go tells
// the whole of recovery and why in that order).
func (r *Reclaimer) Recover(deadToken uint32, slots []int) error {
	if err := r.writable("recover"); err != nil {
		return err
	}
	for _, s := range slots {
		if r.validSlot(s) {
			r.part(s).epoch.Store(0)
		}
	}
	if deadToken == 0 {
		return nil
	}
	for _, rp := range r.rings() {
		if rp.mu.Holder() == deadToken && r.st.TakeOver(&rp.mu) {
			r.repairLocked(rp)
			r.st.Unlock(&rp.mu)
		}
		if rp.collector.Load() == deadToken {
			r.lockRing(rp)
			rp.collector.CompareAndSwap(deadToken, 0)
			r.st.Unlock(&rp.mu)
		}
	}
	return nil
}

// Release tidies the slot of a process that closes the store (shm.Layer):
// it publishes quiescent and frees what it can of the slot's ring without
// a heap: plain blocks and batches of plain blocks whose epoch has
// passed. A batch that lists objects needs a finalizer and a heap, which
// a closing process no longer has: it stays in the ring (its blocks freed
// already), and so do the batches after it; shm then gives the slot back,
// and the next Collect anywhere adopts its batches once they may go.
func (r *Reclaimer) Release(slot int) error {
	if err := r.writable("release"); err != nil {
		return err
	}
	if !r.validSlot(slot) {
		return fmt.Errorf("reclaim: release slot %d: %w", slot, ErrBadSlot)
	}
	r.part(slot).epoch.Store(0)
	_, err := r.collectOwn(slot, alloc.Heap{})
	if isHard(err) {
		return err
	}
	return nil
}

// Each calls f for every handle reclaim holds: for every batch of every
// slot's ring and of the overflow ring, and every batch nested in one, f(batch, KindBlock) for the
// batch block itself, and f(h, kind) for each other entry it lists
// (KindBlock or an object kind). A merge batch in flight is reported as a
// block. Each handle is reported once, and only if it still resolves.
//
// It is for Store.Check, to account for every allocated block, and reads
// without locks: exact on a quiet store, a snapshot otherwise; damaged
// rings and batches are skipped, never trusted.
func (r *Reclaimer) Each(f func(h handle.Handle, kind uint8)) {
	if r.st.Guard() != nil {
		return
	}
	seen := make(map[handle.Handle]bool)
	var stack []handle.Handle
	visit := func(root handle.Handle) {
		stack = append(stack[:0], root)
		for len(stack) > 0 {
			hd := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if seen[hd] {
				continue
			}
			es, err := r.readBatch(hd)
			if err != nil {
				continue
			}
			seen[hd] = true
			f(hd, KindBlock)
			for _, e := range es {
				if e.Kind == KindBatch {
					stack = append(stack, e.H)
					continue
				}
				if seen[e.H] {
					continue
				}
				if _, err := r.a.Resolve(e.H); err == nil {
					seen[e.H] = true
					f(e.H, e.Kind)
				}
			}
		}
	}
	for _, rp := range r.rings() {
		head, k := rp.loadHN()
		for j := uint32(0); j < k; j++ {
			visit(handle.Handle(rp.at(head, j).batch.Load()))
		}
		if p := handle.Handle(rp.pending.Load()); p != handle.Null && !seen[p] {
			if _, err := r.a.Resolve(p); err == nil {
				seen[p] = true
				f(p, KindBlock)
			}
		}
	}
}

// rings lists every ring: each slot's, then the overflow ring.
func (r *Reclaimer) rings() []*ring {
	out := make([]*ring, 0, r.st.NumSlots()+1)
	for i, n := 0, r.st.NumSlots(); i < n; i++ {
		out = append(out, &r.part(i).ring)
	}
	return append(out, &r.g.overflow)
}
