//go:build linux && (amd64 || arm64)

package txn

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
)

var _ shm.Layer = (*Engine)(nil)

// Recover repairs the slots of a dead process (shm.Layer), each by its
// state:
//
//   - COMMITTING: the redo record is complete. Re-apply it (the stores are
//     absolute, and the locks the dead committer holds kept everyone else
//     out, so applying twice is harmless), retire its batch (reclaim
//     ignores a batch it already has), and go on as RELEASING.
//   - RELEASING: the stores are applied. Hand the allocations over (so
//     that alloc's recovery, which runs next, does not free them) and
//     release each logged lock the slot still holds: with the write
//     version, or the old version for a reference-count-only lock.
//   - ACTIVE: nothing was applied. Release the logged locks with their old
//     versions; alloc's recovery frees the allocations.
//
// Then the slot is IDLE and its log chunks are freed. A recoverer that
// dies midway leaves the state it reached; the next one continues from
// it: every step is idempotent, and locks are released only by CAS from
// "held by this slot".
func (e *Engine) Recover(deadToken uint32, slots []int) error {
	var errs []error
	for _, s := range slots {
		if err := e.recoverSlot(s); err != nil {
			errs = append(errs, fmt.Errorf("txn: recover slot %d: %w", s, err))
		}
	}
	return errors.Join(errs...)
}

func (e *Engine) recoverSlot(s int) error {
	sp := e.slotPart(s)
	nl := int(sp.NLocks.Load())
	wv := sp.WV.Load()
	switch sp.State.Load() {
	case StateCommitting:
		ns := int(sp.NStores.Load())
		for k := 0; k < ns; k++ {
			a, err := e.readLog(sp, nl+2*k)
			if err != nil {
				return err
			}
			v, err := e.readLog(sp, nl+2*k+1)
			if err != nil {
				return err
			}
			p, err := e.Ptr(Addr(a))
			if err != nil {
				return err
			}
			atomic.StoreUint64((*uint64)(p), v)
		}
		if b := handle.Handle(sp.Batch.Load()); b != handle.Null {
			if err := e.r.RetireFor(s, alloc.Heap{}, b, wv); err != nil {
				e.retireFailures.Add(1) // kept allocated: a leak, never a double free
			}
		}
		sp.State.Store(StateReleasing)
		fallthrough
	case StateReleasing:
		e.a.ForgetLogOf(s)
		if err := e.releaseLogged(sp, s, nl, wv, true); err != nil {
			return err
		}
	case StateActive:
		if err := e.releaseLogged(sp, s, nl, 0, false); err != nil {
			return err
		}
	}
	sp.NLocks.Store(0)
	sp.NStores.Store(0)
	sp.Batch.Store(0)
	sp.State.Store(StateIdle)
	sp.WaitOn.Store(0)
	e.freeChunks(sp)
	return nil
}

// releaseLogged releases the first n logged locks of slot s that s still
// holds: committed ones with wv (rc-only ones, and all of an aborted
// attempt, with the version they had).
func (e *Engine) releaseLogged(sp *slotPart, s, n int, wv uint64, committed bool) error {
	for i := 0; i < n; i++ {
		ent, err := e.readLog(sp, i)
		if err != nil {
			return err
		}
		a := Addr(ent &^ lockRCOnly)
		p, err := e.Ptr(a)
		if err != nil {
			return err
		}
		lw := (*LockWord)(p)
		for {
			cur := lw.Load()
			if !isLocked(cur) || ownerOf(cur) != s {
				break // never taken, or released already
			}
			v := versionOf(cur)
			if committed && ent&lockRCOnly == 0 {
				v = wv
			}
			if lw.CompareAndSwap(cur, unlockedWord(v)) {
				if cur&waitersBit != 0 {
					e.park.Wake(uint64(a))
				}
				break
			}
		}
	}
	return nil
}

// freeChunks frees a slot's redo log chunks.
func (e *Engine) freeChunks(sp *slotPart) {
	for ci, hd := range sp.Chunks {
		if hd != handle.Null {
			_ = e.a.FreeAny(hd)
			sp.Chunks[ci] = handle.Null
		}
	}
}

// Release tidies a live process's slot at Close (shm.Layer): the slot is
// idle (Close refuses while slots are leased); its log chunks are freed.
func (e *Engine) Release(slot int) error {
	sp := e.slotPart(slot)
	if st := sp.State.Load(); st != StateIdle {
		return e.recoverSlot(slot) // cannot happen unless a transaction panicked mid-commit
	}
	e.freeChunks(sp)
	e.mu.Lock()
	delete(e.bySlot, slot)
	e.mu.Unlock()
	return nil
}
