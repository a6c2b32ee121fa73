package reclaim

import (
	"errors"
	"fmt"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
)

// NewBatch allocates, through h, a batch block listing entries (at most
// MaxBatch). The allocation is in h's allocation log like any other: the
// caller hands it over (ForgetLog) with the rest of its commit, and an
// abort or a crash before that frees it. The batch is immutable once
// built; Retire gives it to the ring.
func (r *Reclaimer) NewBatch(h alloc.Heap, entries []Entry) (handle.Handle, error) {
	if h.Slot() < 0 {
		return handle.Null, fmt.Errorf("reclaim: new batch: %w", ErrNoHeap)
	}
	if len(entries) > MaxBatch {
		return handle.Null, fmt.Errorf("reclaim: new batch of %d entries, at most %d: %w", len(entries), MaxBatch, alloc.ErrBadSize)
	}
	if err := r.writable("new batch"); err != nil {
		return handle.Null, err
	}
	hd, b, err := h.Alloc(batchSize(len(entries)))
	if err != nil {
		return handle.Null, fmt.Errorf("reclaim: new batch of %d entries: %w", len(entries), err)
	}
	writeBatch(b, func(i int) Entry { return entries[i] }, len(entries))
	return hd, nil
}

// writable refuses operations that write through a closed, forked or
// read-only store.
func (r *Reclaimer) writable(what string) error {
	if err := r.st.Guard(); err != nil {
		return fmt.Errorf("reclaim: %s: %w", what, err)
	}
	if r.ro {
		return fmt.Errorf("reclaim: %s: store %q opened read-only: %w", what, r.st.Name(), shm.ErrBadOption)
	}
	return nil
}

// checkBatch validates a handle passed as a batch. done is true when it no
// longer resolves: it was retired and wholly freed already (a repeated
// call by recovery), so there is nothing to do.
func (r *Reclaimer) checkBatch(batch handle.Handle) (done bool, err error) {
	_, _, err = r.batchHeaderOf(batch)
	if errors.Is(err, handle.ErrStaleHandle) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("reclaim: retire: %w", err)
	}
	return false, nil
}

// Retire appends (batch, epoch) to the retire ring of h's slot: the batch
// and everything it lists will be freed once no active slot has published
// an rv below epoch. Call it after the commit's unlinking stores are
// applied, with the commit's version (the contract in the essay).
//
// Idempotent: a batch the ring lists already is not added again (txn's
// recovery may repeat the call), and a batch that no longer resolves was
// retired and freed already: Retire returns nil and does nothing.
//
// When the ring is full, Retire first collects it; if it is still full
// (a long transaction holds it) all its batches are merged into one new
// batch, allocated through h, that carries the largest of their epochs.
// So Retire fails only when the store is out of memory (or on a bad
// batch, or a closed store); a finalizer that fails during that
// collection does not make Retire fail (the next Collect reports it).
func (r *Reclaimer) Retire(h alloc.Heap, batch handle.Handle, epoch uint64) error {
	slot := h.Slot()
	if slot < 0 {
		return fmt.Errorf("reclaim: retire %v: %w", batch, ErrNoHeap)
	}
	return r.retire(slot, h, batch, epoch, true)
}

// RetireFor is Retire into the ring of another slot, without a lease on
// it: txn's recovery of a dead slot, which retires what the dead commit
// unlinked. Idempotent like Retire.
//
// When the ring is full, RetireFor first frees what it can of it without
// running finalizers (plain blocks and batches of plain blocks whose epoch
// has passed: RetireFor runs inside recovery, where a finalizer's
// transaction could wait for the very recovery that runs it). If the ring
// is still full it merges it using h, the caller's own heap (the merge
// batch is allocated through h and taken out of h's log before RetireFor
// returns). With the zero Heap (txn's recovery has none) it cannot
// allocate a merge batch; it appends to the store's overflow ring instead
// (RingCap entries in the global part, adopted by every Collect). Only if
// that is full too does it fail, with ErrRingFull, having changed
// nothing: the caller's batch is still recorded where it came from (txn's
// redo record), and a retry with a heap, or later, succeeds. Dropping an
// entry or overwriting one would leak or free early; waiting would stall
// recovery behind a long transaction.
func (r *Reclaimer) RetireFor(slot int, h alloc.Heap, batch handle.Handle, epoch uint64) error {
	if !r.validSlot(slot) {
		return fmt.Errorf("reclaim: retire %v for slot %d: %w", batch, slot, ErrBadSlot)
	}
	if h.Slot() == slot {
		return r.retire(slot, h, batch, epoch, true)
	}
	return r.retire(slot, h, batch, epoch, false)
}

// retire is Retire and RetireFor. own says the caller leases slot (and h
// is its heap): then a full ring is collected with finalizers.
func (r *Reclaimer) retire(slot int, h alloc.Heap, batch handle.Handle, epoch uint64, own bool) error {
	if err := r.writable("retire"); err != nil {
		return err
	}
	if done, err := r.checkBatch(batch); done || err != nil {
		return err
	}
	if !own && r.listedIn(&r.g.overflow, batch) {
		return nil // an earlier call for the same commit put it there
	}
	rp := &r.part(slot).ring
	if r.tryAppend(rp, batch, epoch) {
		return nil
	}
	// Full: collect, unless this is a finalizer retiring from inside the
	// slot's own collection (then merge at once). What stops the
	// collection (a finalizer's error, a missing finalizer) is for
	// Collect to report; Retire makes room by merging all the same.
	switch {
	case own && r.collecting[slot].CompareAndSwap(false, true):
		_, _ = r.collectOwn(slot, h)
		r.collecting[slot].Store(false)
	case !own:
		_, _ = r.collectOwn(slot, alloc.Heap{})
	}
	if r.tryAppend(rp, batch, epoch) {
		return nil
	}
	if h.Slot() < 0 {
		if r.tryAppend(&r.g.overflow, batch, epoch) {
			return nil
		}
		return fmt.Errorf("reclaim: retire %v for slot %d: %d batches held back since epoch %d, the overflow ring full too, and no heap to merge them: %w",
			batch, slot, RingCap, r.oldest(slot), ErrRingFull)
	}
	return r.mergeAndAppend(rp, slot, h, batch, epoch)
}

func (r *Reclaimer) oldest(slot int) uint64 { _, o := r.Held(slot); return o }

// listedIn reports whether the ring lists batch.
func (r *Reclaimer) listedIn(rp *ring, batch handle.Handle) bool {
	r.lockRing(rp)
	defer r.st.Unlock(&rp.mu)
	return rp.containsLocked(batch)
}

// tryAppend appends unless the ring lists batch already (then it is done
// too) and reports whether it is done; false means the ring is full.
func (r *Reclaimer) tryAppend(rp *ring, batch handle.Handle, epoch uint64) bool {
	r.lockRing(rp)
	defer r.st.Unlock(&rp.mu)
	if rp.containsLocked(batch) {
		return true
	}
	if _, n := rp.loadHN(); n < RingCap {
		rp.appendLocked(batch, epoch)
		return true
	}
	return false
}

// Reserve makes room for one more batch in the ring of h's slot, merging
// a full ring into one batch (allocated through h) without collecting:
// no finalizer runs. txn calls it before its commit point, so that the
// Retire after it (RetireReserved) neither allocates nor runs anything: a
// merge batch allocated after the commit point would be handed over by
// the recovery of a crash there (leaked), and a finalizer would run a
// transaction on the committing slot itself. Only the slot's owner
// appends to its ring, so the room stays until it uses it.
func (r *Reclaimer) Reserve(h alloc.Heap) error {
	slot := h.Slot()
	if slot < 0 {
		return fmt.Errorf("reclaim: reserve: %w", ErrNoHeap)
	}
	if err := r.writable("reserve"); err != nil {
		return err
	}
	rp := &r.part(slot).ring
	if _, n := rp.loadHN(); n < RingCap {
		return nil
	}
	return r.mergeAndAppend(rp, slot, h, handle.Null, 0)
}

// RetireReserved is Retire after Reserve: it appends, and if the ring is
// full after all (it cannot be, unless Reserve was skipped) it uses the
// store's overflow ring; it never allocates, collects or runs a
// finalizer. Idempotent like Retire.
func (r *Reclaimer) RetireReserved(h alloc.Heap, batch handle.Handle, epoch uint64) error {
	slot := h.Slot()
	if slot < 0 {
		return fmt.Errorf("reclaim: retire %v: %w", batch, ErrNoHeap)
	}
	if err := r.writable("retire"); err != nil {
		return err
	}
	if r.tryAppend(&r.part(slot).ring, batch, epoch) || r.tryAppend(&r.g.overflow, batch, epoch) {
		return nil
	}
	return fmt.Errorf("reclaim: retire %v in slot %d: ring and overflow ring full: %w", batch, slot, ErrRingFull)
}

// mergeAndAppend merges the full ring into one batch and appends batch
// (none when batch is Null: Reserve).
//
// The merge batch is allocated before the ring's lock is taken (an
// allocation may call RecoverDead, which must not run under a lock), with
// room for a whole ring. From its allocation on it is always referenced
// by someone, so that no crash leaks it nor the batches it lists:
//
//	allocated            in h's log (a crash: alloc's recovery frees it;
//	                     the ring still lists its batches)
//	pending := B         in the log and in pending
//	TruncateLog          in pending only (a crash: the lock's next taker
//	                     frees it, since the ring does not list it)
//	slots[spare] := B    spare is the one physical slot never live
//	hn := (spare, 1)     the ring is [B]: one store swaps the ring
//	pending := 0         in the ring only
//
// REQUIRES: h leased by the caller, and B the last entry of its log
// between Alloc and TruncateLog (nothing else allocates through h
// meanwhile: h belongs to the calling goroutine).
func (r *Reclaimer) mergeAndAppend(rp *ring, slot int, h alloc.Heap, batch handle.Handle, epoch uint64) error {
	n0 := h.LogLen()
	mb, buf, err := h.Alloc(batchSize(RingCap))
	if err != nil {
		return fmt.Errorf("reclaim: retire %v: merge the full ring of slot %d: %w", batch, slot, err)
	}
	r.lockRing(rp)
	merged := false
	if batch == handle.Null || !rp.containsLocked(batch) {
		if _, n := rp.loadHN(); n >= RingCap {
			r.mergeLocked(rp, h, n0, mb, buf)
			merged = true
		}
		if batch != handle.Null {
			rp.appendLocked(batch, epoch)
		}
	}
	r.st.Unlock(&rp.mu)
	if !merged {
		// Room appeared (or the batch did) while we allocated.
		_ = h.Free(mb)
		h.TruncateLog(n0)
	}
	return nil
}

// mergeLocked replaces the full ring's entries by the one batch mb (see
// mergeAndAppend for the order of the stores). REQUIRES: rp.mu held, the
// ring full, mb the entry n0 of h's log.
func (r *Reclaimer) mergeLocked(rp *ring, h alloc.Heap, n0 int, mb handle.Handle, buf []byte) {
	head, n := rp.loadHN()
	var top uint64
	writeBatch(buf, func(i int) Entry {
		e := rp.at(head, uint32(i))
		top = max(top, e.epoch.Load())
		return Entry{H: handle.Handle(e.batch.Load()), Kind: KindBatch}
	}, int(n))
	rp.pending.Store(uint64(mb))
	h.TruncateLog(n0)
	spare := rp.at(head, n)
	spare.batch.Store(uint64(mb))
	spare.epoch.Store(top)
	rp.hn.Store(packHN((head+n)%ringSlots, 1))
	rp.pending.Store(0)
}
