//go:build linux && (amd64 || arm64)

package txn

// # Recovery: finishing what a process that died at any instruction left
//
// (This is the one account of recovery across the layers; shm/proc.go,
// reclaim/recover.go and alloc/recover.go point here, and each layer's
// Recover says what it does in detail. reclaim/reclaim.go's essay is the
// companion on why freeing is safe.)
//
// A process may die between any two instructions: SIGKILL, the OOM
// killer, a crash in code that has nothing to do with the store. What it
// had in shared memory stays as that instruction left it: lock words
// locked by its slots, a commit half applied, blocks allocated and linked
// from nowhere, a retire ring's or an allocator's lock held, a published
// snapshot that holds reclamation back. Recovery turns that into a state
// the store could have reached without the death: a commit that passed
// its commit point is whole, any other attempt left nothing behind, every
// lock the process held is free, and every block it held is linked,
// retired or free again (the one exception: a retire that finds no room
// even in the overflow ring leaves its blocks allocated, a leak counted
// in retireFailures, never a double free).
//
// # Liveness
//
// An attached process holds an OFD write lock on its own byte of the
// store's lock file (byte 1+i for process-table entry i). attach takes the
// byte first and stores ProcAlive last; the kernel drops the lock when the
// last descriptor of the open file goes, that is when the process dies,
// however it dies. shm's ProcAlive and TokenAlive ask the kernel
// (F_OFD_GETLK) whether another open file holds the byte; if the question
// itself fails the answer is "alive": a live process is never repaired.
// A lock token (the holder in a shm.Mutex word, a reclaim ring's
// collector mark, the deadToken a Layer's Recover is given) names an
// entry and the low bits of its incarnation (ProcEntry.Seq), so a process
// that reuses a dead one's entry does not pass for it. A slot is alive
// when its Owner names a live entry (txn's and alloc's slotAlive). The
// entry also records the pid and its start time (from /proc/pid/stat),
// but no liveness check reads them: liveness rests on the lock byte, which
// a reused pid cannot fake.
//
// # Who recovers, and when
//
// Recovering a dead process is shm.Store.RecoverDead. Under the store's
// recovery lock it lists the dead entries (ProcAlive with a free lock
// byte, or ProcRecovering: a recovery that did not finish), and for each
// it marks the entry ProcRecovering, lists the slots the entry owns, runs
// every registered layer's Recover (shm.Layer) on them from the highest
// rank down, and only then gives the slots back (Owner 0) and frees the
// entry (State ProcFree last). It runs:
//
//   - in a waiter: a transaction waiting for a locked word (waitUnlock,
//     for a read, a commit or prelock) checks after each park (woken, or
//     timed out after 10 ms) that the slot in the word, if it still holds
//     it, has a live owner, and if not calls TryRecoverDead (which returns
//     at once when a live process is recovering already; the waiter waits
//     on, and the recoverer's release wakes it);
//   - at Open: shmstore.Open (unless read-only) recovers every dead
//     process before it opens the root Dict, and Store.Recover does the
//     same on demand; shmctl check does both before it walks the store,
//     and shmctl bench recovers the workers it ran (and reports how
//     many were dead);
//   - in the allocator: once this process took any shm.Mutex from a dead
//     holder (shm.Store.Lock then sets the flag NeedsRecovery reads), a
//     heap calls TryRecoverDead at its next point that holds no lock (a
//     refill, a failed large allocation), and an allocation about to fail
//     with ErrOutOfMemory calls RecoverDead first, since a dead process's
//     heaps and logs hold memory.
//
// Some repairs do not wait for RecoverDead. Whoever takes a shm.Mutex
// from a dead holder repairs what it guards before using it (alloc
// rebuilds a class's bins or the pool bitmap from the descriptors;
// reclaim's lockRing frees a merge batch in flight that the ring does not
// list), and each layer's Recover does the same for every Mutex the dead
// process still holds. A live process finishes its own slot as recovery
// would (recoverSlot) when a transaction panics past its commit point
// (Tx.run), and when a slot it gives back at Close is not IDLE (Release).
//
// # The order: txn, then reclaim, then alloc
//
// shm runs the layers by their Rank, highest first: txn (30), reclaim
// (20), alloc (10). A layer's recovery calls only layers below it, and
// those work before their own recovery has run (a lock a dead process
// holds is taken over on the spot, a freed handle is refused): txn's
// resolves and frees its log chunks and hands allocations over through
// alloc, and retires through reclaim; reclaim's frees a merge batch
// through alloc. The order that matters is txn before alloc: a commit past
// its commit point links blocks it allocated, and they stay in the slot's
// allocation log until the commit hands them over (ForgetLog, after
// RELEASING). txn's recovery hands them over (ForgetLogOf) for a
// COMMITTING or RELEASING slot; alloc's recovery then frees whatever is
// still logged, which is exactly what attempts that never reached their
// commit point allocated. The other way round, alloc would free blocks a
// committed transaction links. reclaim's steps are safe on either side of
// alloc's (a merge batch both would free is freed once: the second free is
// refused by generation). And shm gives the slots back only after every
// layer is done: until then no collector adopts their rings (Collect
// leaves a dead, unrecovered process's rings alone, so that the RetireFor
// below sees the ring as the dead process left it), no process leases
// them, and so a lock word that names one of them can only be held by the
// dead transaction.
//
// # What each layer does to a dead slot
//
// txn (Recover, below), by the slot's state:
//
//	IDLE        no locks: locks are taken only after the slot turns
//	            ACTIVE (by commit, or by prelock). What the attempt
//	            allocated is in the allocation log; alloc frees it.
//	ACTIVE      locking, validating or preparing (or a prelocked View
//	            running its function); nothing stored into shared data
//	            yet. Every lock was logged before the first was taken
//	            (NLocks zeroed before the state store, so an earlier
//	            transaction's entries never count): each logged word this
//	            slot still holds is released with the version it carries,
//	            its version before the lock. Rolled back; alloc frees the
//	            allocations.
//	COMMITTING  the redo record is complete (NStores, Batch and WV were
//	            stored before the state): its stores are applied again,
//	            its batch of unlinked blocks retired with wv (RetireFor,
//	            into the dead slot's ring, with no heap), the slot turns
//	            RELEASING, and goes on as below.
//	RELEASING   the stores are applied and the batch retired: the
//	            allocations are handed over (ForgetLogOf), and each
//	            logged word this slot still holds is released with wv
//	            (a reference-count-only lock with its old version).
//
// Then the counts and Batch are zeroed, the slot turns IDLE, and its redo
// log chunks are freed.
//
// reclaim (Reclaimer.Recover) publishes "quiescent" in each dead slot's
// epoch word, so that its snapshot no longer holds reclamation back,
// takes over and repairs every ring lock the dead process held, and
// clears its collector marks. The rings stay where they are, and are
// adopted once shm gives the slots back.
//
// alloc (Allocator.Recover) takes over and rebuilds the locks the dead
// process held, rebuilds the free list of each superblock its slots owned
// from the state words and hands it to the global heap (one in transit
// goes to the pool, and so does a large run whose block is free: never
// allocated, or freed by a process that died before returning it), and
// frees every block still in the slots' allocation logs, then the logs'
// chunks.
//
// # Why every step can run again
//
// A recoverer is a process too, and can die mid-recovery; the next
// RecoverDead takes the recovery lock from it (stolen or not, it goes on:
// nothing depends on where the last one stopped), finds the entry still
// ProcRecovering, and runs every layer again from the top (and recovers
// the dead recoverer's own entry too). So every step is idempotent, or
// moves the state forward only once it is done:
//
//   - the redo stores are absolute (address, value), and the words they
//     write are guarded by locks the dead slot still holds, so nobody
//     else wrote them in between: applying twice writes the same values;
//   - the slot's state moves forward only after the step it names is
//     done (RELEASING after the stores and the retire; IDLE after the
//     releases), so no step is repeated after a later one; a RELEASING
//     slot is never re-applied, since its released words may have been
//     taken and changed by others;
//   - locks are released only by CAS from "locked by this slot": a word
//     released already, and perhaps locked by another slot since, is left
//     alone (slot numbers are not reused until shm gives the slot back);
//   - RetireFor ignores a batch the ring (or the overflow ring) lists
//     already, and one that no longer resolves (retired and freed);
//   - frees go through the block's state word with its generation: a
//     block freed already (a log chunk, a logged allocation, a merge batch)
//     is refused, harmlessly; ForgetLogOf and the stores of 0 into an epoch
//     word and the counts are absolute;
//   - a Mutex is taken over only by CAS from the dead holder's token, and
//     what it guards is rebuilt from the truth (the state words and the
//     descriptors for alloc, the ring's one-store publication for reclaim),
//     not patched from where the dead holder stopped.
//
// A recoverer never allocates (txn's recovery has no heap: a full ring
// spills into the overflow ring) and never runs a finalizer (a
// finalizer's transaction could wait for the very recovery that runs
// it). The tests stop a commit at each point that
// leaves a distinct state (crashPoint) and recover it, and kill worker
// processes at random and require that Check then finds nothing.

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
