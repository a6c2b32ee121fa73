// Package txn runs serializable transactions over shared memory: TL2 with
// TinySTM's snapshot extension, commit-time locking in address order, and
// a redo log in the slot for crash atomicity.
//
// The walk through a transaction (Engine.Run):
//
//  1. get: a Tx with a leased slot (alloc heap, reclaim ring, txn part),
//     reused between transactions; at most SlotsPerProc per process.
//  2. begin: rv = the global version clock; published to reclaim (Enter)
//     before any shared read, so nothing the snapshot reaches is freed.
//  3. reads (ReadBegin/ReadEnd, called by objects): the versioned lock word
//     of what is read is loaded before and after; a locked word is waited
//     for (spin, then park on ipc's bucket, with liveness checks that
//     recover a dead holder); a word newer than rv is accepted if every
//     earlier read still holds (the snapshot moves to the clock if the
//     clock has reached the word's version), else the attempt aborts.
//     Reads are recorded; nothing is locked.
//  4. writes are buffered by the layer above (objects' overlays, a Writer),
//     which names the lock words it needs (Lock).
//  5. commit: lock the words in address order (waiting as in 3: a waiter
//     holds only lower addresses, so no cycle); wv = the larger of the
//     clock+1 (loaded, not written) and each locked word's version+1;
//     validate the reads; the Writers turn
//     their overlays into word stores in the redo log (Prepare), allocating
//     privately; room in the retire ring is made (reclaim.Reserve); the
//     clock is moved to wv if memory is retired (see commit.go's "The
//     version clock"); the slot turns COMMITTING (the commit point); the
//     stores are applied,
//     the unlinked blocks retired with wv, the slot turns RELEASING, the
//     allocations are handed over, the locks released (new version, or
//     the old one for reference-count-only locks), the slot turns IDLE.
//  6. abort: locks released unchanged, allocations freed (the allocation
//     log), then a wait for the word the conflict was found on to change,
//     and another attempt. A read-only transaction that aborted
//     lockedViewAfter times locks what it read (prelock) so that it ends.
//     An attempt that ran out of memory aborts too, then, holding
//     nothing, makes freed memory reusable and runs again, or gives up
//     with an error that names what holds memory back (relieve.go). What
//     the commit itself allocates (retire batch, ring merge, redo-log
//     chunks) comes from alloc's reserve when the store is full.
//
// Crash recovery (Engine.Recover, run by shm for a dead process before
// reclaim's and alloc's) continues a slot from its state: COMMITTING is
// applied again and released with wv, RELEASING released, ACTIVE rolled
// back (its locks released unchanged; alloc then frees its allocations).
// Every step is idempotent, and locks are released only by CAS from "held
// by this slot", so a recoverer that dies is followed by another. The
// tests stop a commit at each distinct point and recover it. recover.go
// opens with the essay on recovery across the layers: liveness, who runs
// it and when, the order txn -> reclaim -> alloc, and why every step can
// run again.
//
// It owns the txn parts of the control segment (shm.PartTxn: the clock and
// the root word) and of each slot (state, counters, redo log). It composes
// alloc, reclaim and ipc below it.
//
// It must never import objects or the root package, never let a
// transaction observe a state that did not exist at one moment, never
// allocate or run a finalizer after the commit point, and never hold a
// lock while running user code, with the one documented exception of a
// starved read-only transaction (prelock), which never waits while it
// holds them.
package txn
