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
//   - the version clock's load, once every lock is held (seq-cst): wv
//     must be past every snapshot that began before the commit held its
//     locks (see "The version clock" below); validation's loads come
//     after it. A commit that retires memory also moves the clock to wv
//     (a CAS) before it publishes the batch.
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

// # What a single-key Set costs
//
// A Set of a scalar under an existing key (an Update that writes one
// entry of one stripe) executes, in shared memory, these fully fenced
// operations and no others: the entry lock's CompareAndSwap, one
// applied store (two when the value's kind changes: the entry's meta
// word too), and the lock's release Swap; the clock is only loaded.
// Everything else it writes is its own slot's (release stores, see
// above), and the stripe's count word is not logged at all when it
// stands (an existing key overwritten). A blind write, one that skips
// the read of the old entry, would save the lookup but not a fence: the
// entry must be found under the lock anyway, and an old value that is a
// container or a blob needs its reference dropped or its block retired,
// which only the read tells. What the layer above does before the commit
// is its own: a single-operation Set or Delete keeps no write overlay
// (objects' Dict.SetLast, DeleteLast), only the one write. The Set
// allocates nothing on the Go heap (the root package's
// TestSingleOpsAllocateNothing checks), nor in the store for a key it
// overwrites.
//
// # The version clock
//
// TL2 stamps each commit with wv = the clock's Add(1): one line that
// every commit of every process writes, so two processes that set
// disjoint keys still pass that line between their cores on every
// commit. Here the clock is written only when it must be (TL2's GV5,
// with the reader's side changed as below):
//
//   - wv = max(clock + 1, each written word's version + 1), the clock
//     loaded once every lock is held. Each word's version still grows at
//     every commit that writes it (readers and optimistic reads compare
//     lock words, so an unchanged word must mean an unchanged value),
//     but two commits may share a wv, so the commit always validates its
//     reads (TL2 skips that when wv = rv + 1, which ties would make
//     unsound).
//   - Why a reader stays consistent: a commit W loaded the clock, below
//     its wv, while it held all its locks. A transaction whose rv >= wv
//     loaded the clock after the clock reached wv, which is after W's
//     load, so after W held every lock: each word W writes is, when the
//     transaction reads it, either locked (it waits) or W's. So a word of
//     version <= rv is read as TL2 reads it. A word past rv (written by
//     a commit that did not move the clock) is accepted only after every
//     read so far is validated again (extend in read.go): the reads are
//     then a snapshot of that validation's moment, and rv moves to the
//     clock if the clock has reached the word's version.
//   - Who moves the clock (a CAS, never backwards; any value is safe,
//     since a commit that loads the clock afterwards stamps past it):
//     a commit that retires memory, to its wv, before it publishes the
//     batch (reclaim frees a batch only when every running snapshot is
//     at least its wv, so new snapshots must reach it: reclaim's case 2
//     holds by the argument above; the move precedes the commit point,
//     so recovery has nothing to add); a commit whose wv would be more
//     than maxDrift past the clock, to wv, before any word gets it, so
//     that no version is ever more than maxDrift past the clock; and a
//     reader that has accepted freshBeforeAdvance words past rv in one
//     attempt, to the clock + maxDrift, past every version there is, so
//     that the rest of its reads need no validation (each acceptance
//     costs a validation of the whole read set: without the bound, a
//     reader of words whose versions rise in the order it reads them
//     would validate at each, TestReaderOfManyFreshWordsValidatesAFewTimes).
//   - Stores written this way must not be opened by a build that expects
//     every version to be at most the clock (it would wait for the clock
//     forever): shm's LayoutVersion is 2 since.
//
// What it buys and costs, measured with alternating runs of both
// builds on the 2-core VM of the README's second table: two processes
// setting disjoint keys of one Dict went from 1.38-1.45 to 1.50-1.53 M
// ops/s, and four from 1.36-1.38 to 1.44-1.45 M; the ratio to one
// process from 1.54-1.65x to 1.76-1.80x, and with each process in a
// Dict of its own (nothing written in common but the clock, before)
// from 1.74-1.77x to 1.93-1.96x, the 2x of separate stores. One process
// pays for the validations: 884-900k -> 850-855k ops/s, a Set 576 ->
// 612-631 ns, a transfer 1423-1447 -> 1501-1578 ns. An earlier round
// measured the same scheme as no faster: the commit then cost a third
// more, and the clock's share of it was too small to see. A multi-process
// store is for several processes, so the clock gives way.
//
// What two processes overwriting disjoint keys write in common on a
// Set's path is nothing, in one Dict or in two: a Set of an existing key
// locks and writes that key's entry alone (objects' entry lock), reads
// the stripe's lock word only, and the clock only loads. (Before entries
// had lock words of their own, both wrote the stripes' lock words: 64
// stripes of 32 bytes, every stripe's line written by both as keys hash
// over them.) Inserts and deletes still lock their stripe. Entries are
// packed (40-48 bytes for a short key) in the superblocks of the process
// that inserted them, so two keys inserted one after the other may sit
// in one cache line: writers of those two share it (padding every entry
// to a line would cost up to 60% more memory per short entry). Ranges of
// versions reserved per process would not do instead of the clock: a
// commit stamped from an old range would look older than snapshots that
// began before it.

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
	// The write version: past the clock, loaded now that every lock is
	// held, and past each written word's version (see "The version
	// clock"). The clock is written only to keep every version within
	// maxDrift of it.
	clock := tx.e.g.Clock.Load()
	wv := clock + 1
	for i := range tx.locks {
		if l := &tx.locks[i]; !l.rcOnly && l.old >= wv {
			wv = l.old + 1
		}
	}
	tx.wv = wv
	if wv > MaxVersion {
		return fmt.Errorf("txn: version clock exhausted: version %w", ErrTooLarge)
	}
	if wv > clock+maxDrift {
		tx.e.advanceClock(wv) // before any word gets wv: see maxDrift
	}
	if !tx.validate() {
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
	if batch != handle.Null {
		// Reclaim frees the batch once every running snapshot is at
		// least wv: new ones must reach it.
		tx.e.advanceClock(tx.wv)
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
