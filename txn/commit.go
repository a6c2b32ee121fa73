//go:build linux && (amd64 || arm64)

package txn

// This file owns a transaction's writes and their end: the write set
// (Lock, lockReq), the Writers (AddWriter) and what they do in Prepare
// (Alloc, Store, Retire), the slot's redo log (logWord, growLog, readLog),
// the commit (lock in address order, validate, prepare, COMMITTING, apply,
// retire, RELEASING, release), the abort, and the crash points the tests
// stop a commit at. Recovery of a commit whose process died is in
// recover.go.

// # Which of a commit's stores are ordered, and why
//
// A commit writes its slot (State, NLocks, the log words, NStores,
// Batch, WV) for one reader only: recovery, run by another process after
// this one died (inspectors read them too, but need no guarantee). A dead
// process's executed stores are all in memory; what recovery needs is
// that it never sees a step without the steps before it. So every slot
// store is a release store (internal/release: a plain MOV on amd64, STLR
// on arm64), and these stay fully fenced because they must also order
// what comes after them, or because they are read-modify-writes anyway:
//
//   - each lock's CompareAndSwap: it is the lock. Taken after State is
//     ACTIVE and every lock is logged (NLocks): recovery releases the
//     logged words this slot holds, and a lock it does not know of would
//     stay held forever.
//   - the version clock's Add: wv must be unique and later than every
//     version a validating reader could have seen; validation's loads
//     come after it.
//   - each applied store (sync/atomic, seq-cst): a concurrent reader
//     reads the word between two loads of its lock word.
//   - each lock release (Swap): it publishes the new values and version,
//     and returns the waiters bit so that sleepers are woken.
//
// The order recovery relies on: log words and NLocks before the first
// lock; redo words, NStores, Batch and WV before State = COMMITTING (the
// commit point: a release store orders them before it); COMMITTING
// before the first applied store (store-store order: TSO on amd64, and
// on arm64 the applied stores are themselves STLR, ordered after every
// earlier access); RELEASING before the first lock release (the Swap is
// a full barrier). Recovery of a COMMITTING slot re-applies the redo
// log, and of a RELEASING slot only releases: once a lock is released,
// another commit may write its words, and re-applying would undo that.
// Before this scheme each of those steps was a sync/atomic Store (an
// XCHG on amd64); TestCrashAtEveryCommitPoint stops a commit at each
// point between them and recovers it.

// # What a single-key Set costs, and why the clock stays one word
//
// A Set of a scalar under an existing key (an Update that writes one
// entry of one stripe) executes, in shared memory, these fully fenced
// operations and no others: the stripe lock's CompareAndSwap, the
// clock's Add, one applied store (two when the value's kind changes: the
// entry's meta word too), and the lock's release Swap. Everything else
// it writes is its own slot's (release stores, see above), and the
// stripe's count word is not logged at all when it stands (an existing
// key overwritten). A blind write, one that skips the read of the old
// entry, would save the lookup but not a fence: the entry must be found
// under the lock anyway, and an old value that is a container or a blob
// needs its reference dropped or its block retired, which only the read
// tells. What the layer above does before the commit is its own: a
// single-operation Set or Delete keeps no write overlay (objects'
// Dict.SetLast, DeleteLast), only the one write. The Set allocates
// nothing on the Go heap (the root package's
// TestSingleOpsAllocateNothing checks), nor in the store for a key it
// overwrites.
//
// The clock's Add is the one line every commit of every process writes.
// TL2's GV5 (wv = clock+1 without writing it; a reader that meets a
// version past its snapshot moves the clock) would take it off the
// commit, but not off the operation: a process that sets its own keys
// reads, at its next transaction, the version its last commit wrote,
// which is past the clock, and so writes the clock there instead. A
// variant that writes the clock on neither side was built and measured:
// wv = max(clock+1, each written word's version+1), loaded (not added)
// once every lock is held; a read past the snapshot is accepted by
// validating the reads so far, with rv left alone, and the clock moved
// only by a commit that retires memory (reclaim waits for snapshots to
// reach its wv) or by a reader after four such reads. It is sound (a
// snapshot that reaches wv still began after the commit held its locks)
// but it was not faster: every commit validates (ties of wv forbid the
// wv = rv+1 shortcut) and every Set of a key its process wrote last
// validates at the read too. Alternating runs: one process, Set 937 ->
// 993 ns and transfer 1578 -> 1643 ns (medians of 5, on the slower host
// below); two processes on disjoint keys, 1.11 -> 1.21 M ops/s (medians
// of 7 and 3, within the noise of single runs: 1.08-1.27 against
// 1.16-1.25). The clock's Add is one line among the dozens a commit
// touches; a CPU profile of a Set is flat (commit's own code, the Add
// included, 7.5%). Ranges of versions reserved per process would break
// the snapshot: a commit stamped from an old range looks older than
// readers that started before it. So the clock stays one word,
// incremented once per commit.
//
// Disjoint scaling, then, is bounded by the lines two processes both
// write: the clock and, in one Dict, the stripes' lock words. What that
// costs depends on the host. On the 2-core AMD EPYC VM of earlier
// rounds, two processes setting their own keys reached 0.93-1.16x of one
// in one Dict and 0.96-1.27x in separate Dicts, and a CPU profile of the
// two-process run (perf, cpu-clock) put 61% of commit's own time on the
// clock's LOCK XADD and 21% on the stripe lock's CMPXCHG; on another
// host of the same kind (slower: its RWMutex map Get takes 35 ns, not
// 17-23) the same benchmark gives 1.62-1.95x (median of 7: 1.77x).
// Taking the clock off the commit entirely means another scheme for
// snapshots and for reclaim's "rv >= wv" (Silo-style epochs, with
// commit-time validation of every read instead of TL2's per-read version
// check): a different transaction protocol, not a change to this one.

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/internal/release"
	"github.com/shmstore/shmstore/reclaim"
)

type lockReq struct {
	addr   Addr
	lw     *LockWord
	rcOnly bool
	held   bool
	old    uint64 // version before we locked it
}

// crashHook, set only by tests, is called at every point of a commit
// where a crash leaves a distinct state; a test stops the goroutine there
// and recovers the slot as if its process had died.
var crashHook func(point string)

func crashPoint(point string) {
	if crashHook != nil {
		crashHook(point)
	}
}

// Lock asks for lw (at addr) to be locked at commit. rcOnly: only a
// reference count behind it changes, so it is released with its old
// version (readers of what it guards are not disturbed). Asking twice
// merges (a full lock wins).
func (tx *Tx) Lock(lw *LockWord, addr Addr, rcOnly bool) error {
	if tx.committing {
		return fmt.Errorf("txn: lock %#x during commit: %w", uint64(addr), ErrConflict)
	}
	if tx.readOnly {
		return fmt.Errorf("txn: lock %#x: %w", uint64(addr), ErrReadOnly)
	}
	if i := tx.lockIndex(addr); i >= 0 {
		tx.locks[i].rcOnly = tx.locks[i].rcOnly && rcOnly
		return nil
	}
	tx.locks = append(tx.locks, lockReq{addr: addr, lw: lw, rcOnly: rcOnly})
	switch n := len(tx.locks); {
	case n == lockIndexFrom:
		for i, l := range tx.locks {
			tx.lockIdx[l.addr] = i
		}
	case n > lockIndexFrom:
		tx.lockIdx[addr] = n - 1
	}
	return nil
}

// lockIndexFrom is the number of lock requests from which they are
// indexed by a map (fewer are searched: cheaper to search than to clear).
const lockIndexFrom = 16

// lockIndex finds the request for addr (-1: none).
func (tx *Tx) lockIndex(addr Addr) int {
	if len(tx.locks) >= lockIndexFrom {
		if i, ok := tx.lockIdx[addr]; ok {
			return i
		}
		return -1
	}
	for i := range tx.locks {
		if tx.locks[i].addr == addr {
			return i
		}
	}
	return -1
}

// AddWriter registers w to run at commit (once per transaction attempt).
func (tx *Tx) AddWriter(w Writer) error {
	if tx.readOnly {
		return fmt.Errorf("txn: %w", ErrReadOnly)
	}
	tx.writers = append(tx.writers, w)
	return nil
}

// Alloc allocates n bytes for this transaction: freed if it aborts,
// handed over when it commits. Too many allocations for the allocation
// log, or a block larger than a region, fail with ErrTooLarge.
func (tx *Tx) Alloc(n int) (handle.Handle, []byte, error) {
	h, b, err := tx.heap.Alloc(n)
	switch {
	case errors.Is(err, alloc.ErrLogFull):
		err = fmt.Errorf("txn: %w: %w", ErrTxTooLarge, err)
	case errors.Is(err, alloc.ErrTooLarge):
		err = fmt.Errorf("txn: block of %d bytes %w: %w", n, ErrTooLarge, err)
	}
	return h, b, err
}

// Store logs the store of v into the word p points at (store-wide
// address a). Only Prepare calls it; the word must be guarded by a lock
// the transaction holds (or lie in memory it allocated).
func (tx *Tx) Store(p *uint64, a Addr, v uint64) error {
	base := len(tx.locks)
	if err := tx.logWord(base+2*tx.nstores, uint64(a)); err != nil {
		return err
	}
	if err := tx.logWord(base+2*tx.nstores+1, v); err != nil {
		return err
	}
	tx.stores = append(tx.stores, p)
	tx.nstores++
	return nil
}

// Retire hands a block unlinked by this commit to reclaim: it is freed
// once no transaction that could see it is running.
func (tx *Tx) Retire(h handle.Handle, kind uint8) {
	tx.retire = append(tx.retire, reclaim.Entry{H: h, Kind: kind})
}

// retireBatch builds the batch of what this commit retires and makes room
// for it in the slot's retire ring now, before the commit point: after it
// nothing may allocate or run a finalizer (see reclaim's Reserve). Both
// are retirement metadata, which the store's reserve serves when it is
// full (alloc.UseMetadata): a commit that only frees needs nothing else.
func (tx *Tx) retireBatch() (handle.Handle, error) {
	defer tx.heap.Using(tx.heap.Using(alloc.UseMetadata))
	batch, err := tx.e.r.NewBatch(tx.heap, tx.retire)
	if err != nil {
		return handle.Null, err
	}
	return batch, tx.e.r.Reserve(tx.heap)
}

// logWord writes word i of the slot's redo log.
func (tx *Tx) logWord(i int, v uint64) error {
	if i < inlineWords {
		tx.sp.Inline[i] = v
		return nil
	}
	k := i - inlineWords
	ci := k / chunkWords
	if ci >= maxChunks {
		return fmt.Errorf("txn: redo log of %d words, at most %d: %w; split it into smaller ones", i, MaxLogWords, ErrTxTooLarge)
	}
	if tx.chunk[ci] == nil {
		if err := tx.growLog(ci); err != nil {
			return err
		}
	}
	*(*uint64)(unsafe.Add(tx.chunk[ci], (k%chunkWords)*8)) = v
	return nil
}

// growLog allocates log chunk ci. The chunk belongs to the slot (not to
// the transaction): it is moved out of the allocation log at once, and
// freed when the slot is released or recovered, or when memory is short
// (freeLogChunks). It is commit metadata: the store's reserve serves it
// when the store is full (alloc.UseMetadata).
func (tx *Tx) growLog(ci int) error {
	defer tx.heap.Using(tx.heap.Using(alloc.UseMetadata))
	n := tx.heap.LogLen()
	hd, b, err := tx.heap.Alloc(chunkWords * 8)
	if err != nil {
		return fmt.Errorf("txn: grow redo log: %w", err)
	}
	tx.sp.Chunks[ci] = hd
	tx.heap.TruncateLog(n) // a crash in between: both free it; the second is refused by generation
	tx.chunk[ci] = unsafe.Pointer(&b[0])
	return nil
}

// readLog reads word i of slot sp's redo log (for recovery, through
// handles: the recoverer has no cached chunk addresses).
func (e *Engine) readLog(sp *slotPart, i int) (uint64, error) {
	if i < inlineWords {
		return sp.Inline[i], nil
	}
	k := i - inlineWords
	ci := k / chunkWords
	if ci >= maxChunks {
		return 0, fmt.Errorf("txn: log word %d: %w", i, ErrBadAddr)
	}
	b, err := e.a.Resolve(sp.Chunks[ci])
	if err != nil || len(b) < chunkWords*8 {
		return 0, fmt.Errorf("txn: log chunk %d: %w", ci, ErrBadAddr)
	}
	return *(*uint64)(unsafe.Pointer(&b[(k%chunkWords)*8])), nil
}

// commit locks the write set in address order, takes the write version,
// validates, lets the writers build the redo record, marks the slot
// COMMITTING, applies, retires, releases. A read-only transaction does
// nothing: each of its reads was consistent with its snapshot.
func (tx *Tx) commit() error {
	if len(tx.locks) == 0 && len(tx.writers) == 0 {
		return nil
	}
	tx.awaitPrivileged() // before any lock: see fair.go
	sp := tx.sp
	tx.committing = true
	defer func() { tx.committing = false }()
	if len(tx.locks) > 1 {
		slices.SortFunc(tx.locks, func(a, b lockReq) int { return cmp.Compare(a.addr, b.addr) })
	}
	// The count is zeroed before the slot turns ACTIVE (it is stale while
	// IDLE): recovery must never walk an earlier transaction's entries.
	release.Store32(&sp.NLocks, 0)
	release.Store32(&sp.State, StateActive)
	// Every lock is logged before the first is taken (one count store):
	// recovery releases those of the logged words that this slot holds.
	for i := range tx.locks {
		l := &tx.locks[i]
		ent := uint64(l.addr)
		if l.rcOnly {
			ent |= lockRCOnly
		}
		if err := tx.logWord(i, ent); err != nil {
			return err
		}
		crashPoint("logged lock")
	}
	release.Store32(&sp.NLocks, uint32(len(tx.locks)))
	for i := range tx.locks {
		l := &tx.locks[i]
		for {
			w := l.lw.Load()
			if isLocked(w) {
				tx.e.waitUnlock(l.lw, l.addr, w, sp)
				continue
			}
			if l.lw.CompareAndSwap(w, lockOf(w, tx.slot)) {
				l.held, l.old = true, versionOf(w)
				crashPoint("took lock")
				break
			}
		}
	}
	tx.wv = tx.e.g.Clock.Add(1)
	if tx.wv > MaxVersion {
		return fmt.Errorf("txn: version clock exhausted: version %w", ErrTooLarge)
	}
	if tx.wv != tx.rv+1 && !tx.validate() {
		return fmt.Errorf("txn: commit validation: %w", ErrConflict)
	}
	for _, w := range tx.writers {
		if err := w.Prepare(tx); err != nil {
			return err
		}
	}
	var batch handle.Handle
	if len(tx.retire) > 0 {
		var err error
		if batch, err = tx.retireBatch(); err != nil {
			return fmt.Errorf("txn: retire %d blocks: %w", len(tx.retire), err)
		}
	}
	release.Store64(&sp.Batch, uint64(batch))
	release.Store32(&sp.NStores, uint32(tx.nstores))
	release.Store64(&sp.WV, tx.wv)
	crashPoint("redo written")
	release.Store32(&sp.State, StateCommitting) // the commit point
	crashPoint("committing")
	tx.applyLogged()
	crashPoint("applied")
	if batch != handle.Null {
		if err := tx.e.r.RetireReserved(tx.heap, batch, tx.wv); err != nil {
			// Out of memory for the ring: the blocks stay allocated
			// (leaked, never freed twice). Recorded, not fatal.
			tx.e.retireFailures.Add(1)
		}
	}
	crashPoint("retired")
	release.Store32(&sp.State, StateReleasing)
	crashPoint("releasing")
	tx.heap.ForgetLog()
	crashPoint("handed over")
	for i := range tx.locks {
		l := &tx.locks[i]
		v := tx.wv
		if l.rcOnly {
			v = l.old
		}
		tx.e.release(l.lw, l.addr, v)
		l.held = false
		crashPoint("released lock")
	}
	// NLocks, NStores and Batch keep stale values: nothing reads them in
	// the IDLE state, and the next commit sets them before they count.
	release.Store32(&sp.State, StateIdle)
	release.Store64(&sp.Commits, sp.Commits.Load()+1) // only the owner writes it
	return nil
}

// applyLogged applies the transaction's stores through the pointers it
// kept (the log holds the same stores for recovery).
func (tx *Tx) applyLogged() {
	base := len(tx.locks)
	for k, p := range tx.stores {
		if k > 0 {
			crashPoint("applied store")
		}
		var v uint64
		i := base + 2*k + 1
		if i < inlineWords {
			v = tx.sp.Inline[i]
		} else {
			j := i - inlineWords
			v = *(*uint64)(unsafe.Add(tx.chunk[j/chunkWords], (j%chunkWords)*8))
		}
		atomic.StoreUint64(p, v)
	}
}

// abort releases what the attempt locked with the old versions, frees
// what it allocated, and leaves the slot idle.
func (tx *Tx) abort() {
	if tx.readOnly && len(tx.prev) < inlineWords {
		// What to lock if it comes to that: all attempts' reads, and the
		// word the conflict was found on (it never reached ReadEnd).
		tx.prev = append(tx.prev, tx.reads...)
		if tx.conflictLW != nil && tx.conflictAddr != 0 {
			tx.prev = append(tx.prev, readEntry{tx.conflictLW, tx.conflictAddr, 0})
		}
	}
	tx.unprelock()
	for i := range tx.locks {
		if l := &tx.locks[i]; l.held {
			tx.e.release(l.lw, l.addr, l.old)
			l.held = false
		}
	}
	tx.heap.FreeLog()
	tx.sp.State.Store(StateIdle)
	if !tx.readOnly {
		tx.e.r.Exit(tx.slot) // a read-only one stays published until run returns
	}
	tx.sp.Aborts.Add(1)
	tx.reset()
}
