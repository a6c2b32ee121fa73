//go:build linux && (amd64 || arm64)

package txn

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/reclaim"
)

// Writer is the part of a transaction that a layer above buffers: objects
// keep their overlays in one and register it with AddWriter at the first
// write.
type Writer interface {
	// Prepare runs at commit, after every lock the transaction asked for
	// is held and its reads are validated. It reads what it needs (what
	// it locked is stable), allocates privately, and turns its overlay
	// into word stores (Tx.Store) and retirements (Tx.Retire). It must
	// not wait for anything.
	Prepare(tx *Tx) error
}

// Tx is one transaction, bound to a leased slot. It belongs to one
// goroutine.
type Tx struct {
	e    *Engine
	heap alloc.Heap
	slot int
	sp   *slotPart

	readOnly bool
	rv       uint64
	wv       uint64
	reads    []readEntry
	locks    []lockReq
	lockIdx  map[Addr]int
	writers  []Writer
	stores   []*uint64 // where each logged store goes, in log order
	nstores  int
	retire   []reclaim.Entry
	chunk    [maxChunks]unsafe.Pointer // where the slot's log chunks are mapped here

	// doomed is the first failed read of this attempt (a conflict, or a
	// handle that did not resolve): the attempt never commits and never
	// reports success, whatever the user's function returns (see run).
	doomed error

	// The word a conflict was found on, to wait for after the abort.
	conflictLW   *LockWord
	conflictAddr Addr
	conflictWord uint64

	// collecting is set while a collection runs on this slot: the small
	// transactions of finalizers do not start another.
	collecting bool
	committing bool   // the write set is being locked: no more Lock calls
	ends       uint64 // attempts ended here (process-local): every 256th collects
	collectAt  int    // after a collection that freed nothing: the ring size to try again at

	// A read-only transaction's reads of its last aborted attempt, and
	// the locks it took on them (prelock).
	prev []readEntry
	pre  []lockReq

	// User is free for the layer above (objects keeps its per-transaction
	// state here across attempts).
	User any
}

type readEntry struct {
	lw   *LockWord
	addr Addr
	w    uint64
}

type lockReq struct {
	addr   Addr
	lw     *LockWord
	rcOnly bool
	held   bool
	old    uint64 // version before we locked it
}

func newTx(e *Engine, h alloc.Heap) *Tx {
	tx := &Tx{e: e, heap: h, slot: h.Slot(), sp: e.slotPart(h.Slot()), lockIdx: map[Addr]int{}}
	for ci, hd := range tx.sp.Chunks {
		if hd == handle.Null {
			continue
		}
		if b, err := e.a.Resolve(hd); err == nil {
			tx.chunk[ci] = unsafe.Pointer(&b[0])
		} else {
			tx.sp.Chunks[ci] = handle.Null
		}
	}
	return tx
}

// Engine is the transaction's engine.
func (tx *Tx) Engine() *Engine { return tx.e }

// Heap is the slot's heap: allocations through it are freed if the
// transaction aborts, and handed over when it commits.
func (tx *Tx) Heap() alloc.Heap { return tx.heap }

// Slot is the transaction's slot.
func (tx *Tx) Slot() int { return tx.slot }

// ReadOnly reports whether this is a read-only transaction.
func (tx *Tx) ReadOnly() bool { return tx.readOnly }

// run is Engine.Run on this transaction.
func (tx *Tx) run(readOnly bool, fn func(tx *Tx) error) (err error) {
	tx.readOnly = readOnly
	tx.prev = tx.prev[:0]
	// For inspectors only. A fenced store costs as much as a third of a
	// read-only transaction: stored only when the (5 ms) clock moved.
	if now := tx.e.coarseNow(); tx.sp.Started.Load() != now {
		tx.sp.Started.Store(now)
	}
	defer func() {
		if p := recover(); p != nil {
			tx.collecting = false
			if tx.sp.State.Load() >= StateCommitting {
				// Past the commit point: the commit stands. Finish it as
				// recovery would (re-apply, release with the new version).
				_ = tx.e.recoverSlot(tx.slot)
				tx.chunk = [maxChunks]unsafe.Pointer{} // recovery freed the slot's log chunks
				tx.reset()
				tx.e.r.Exit(tx.slot)
			} else {
				tx.abort()
				tx.e.r.Exit(tx.slot)
			}
			panic(p) // shmstore's callers see their own panic, with the store intact
		}
	}()
	for attempt := uint32(1); ; attempt++ {
		if tx.sp.Attempts.Load() != attempt { // for inspectors; mostly 1 already
			tx.sp.Attempts.Store(attempt)
		}
		tx.begin(attempt)
		if readOnly && attempt > lockedViewAfter && len(tx.prev) > 0 {
			tx.prelock()
		}
		err = fn(tx)
		if tx.doomed != nil {
			err = tx.settleDoomed(err)
		}
		if err == nil {
			err = tx.commit()
		}
		if err == nil {
			tx.end()
			return nil
		}
		tx.abort()
		if !errors.Is(err, ErrConflict) {
			tx.e.r.Exit(tx.slot)
			return err
		}
		tx.waitConflict()
	}
}

// begin starts an attempt: the snapshot is the clock's value, published to
// reclaim before any read (see reclaim's essay). A read-only transaction
// keeps its first attempt's value published across its attempts (a lower
// value than its snapshot: safe), so that what its earlier attempts read,
// and prelock may lock, is not freed meanwhile.
func (tx *Tx) begin(attempt uint32) {
	tx.conflictLW = nil // a conflict an earlier function swallowed is not this attempt's
	tx.doomed = nil
	tx.rv = tx.e.g.Clock.Load()
	if attempt == 1 || !tx.readOnly {
		tx.e.r.Enter(tx.slot, tx.rv)
	}
}

// Doom marks the attempt failed by err (nil: no-op), as a failed read
// does: it will not commit or report success. The layer above calls it
// when a read fails for a reason other than the user's input (a handle
// that does not resolve, memory that does not hold what it should); txn
// itself dooms the attempt on every read conflict. It returns err.
func (tx *Tx) Doom(err error) error {
	if err != nil && tx.doomed == nil {
		tx.doomed = err
	}
	return err
}

// settleDoomed decides what a doomed attempt returns, given what the
// user's function returned (err). A conflict re-runs the function. Any
// other failure re-runs it too if the snapshot no longer holds (it may
// have come from a state that never existed); if the snapshot holds, the
// failure is real and is returned. Never nil.
func (tx *Tx) settleDoomed(err error) error {
	d := tx.doomed
	if errors.Is(d, ErrConflict) {
		return d
	}
	if !tx.validate() {
		return fmt.Errorf("txn: a read failed (%v) on a snapshot that changed: %w", d, ErrConflict)
	}
	if err == nil {
		return d
	}
	return err
}

// lockedViewAfter is how many attempts a read-only transaction makes
// before it locks what its attempts read so far: under a steady stream of
// writes to what it reads, a View could otherwise abort forever. Each
// attempt after that adds at most one word it had not read before (the
// one it found locked), so a View that reads n words commits within
// lockedViewAfter + n attempts, and usually at lockedViewAfter + 1.
const lockedViewAfter = 8

// prelock locks, in address order, every word the previous attempt of
// this read-only transaction read, as reference-count-only locks (released
// with their versions unchanged). While the transaction runs with them it
// never waits for another lock (ReadBegin fails instead), so holding
// locks while user code runs cannot close a cycle: everyone else who
// waits, waits for an ordered acquirer or for a holder that does not wait.
func (tx *Tx) prelock() {
	slices.SortFunc(tx.prev, func(a, b readEntry) int { return cmp.Compare(a.addr, b.addr) })
	tx.prev = slices.CompactFunc(tx.prev, func(a, b readEntry) bool { return a.addr == b.addr })
	tx.sp.NLocks.Store(0) // stale while IDLE: zeroed before ACTIVE
	tx.sp.State.Store(StateActive)
	for i, r := range tx.prev {
		if err := tx.logWord(i, uint64(r.addr)|lockRCOnly); err != nil {
			break // too many to lock: run unlocked
		}
		tx.sp.NLocks.Store(uint32(i + 1))
		for {
			w := r.lw.Load()
			if isLocked(w) {
				tx.e.waitUnlock(r.lw, r.addr, w, tx.sp)
				continue
			}
			if r.lw.CompareAndSwap(w, lockedWord(versionOf(w), tx.slot)) {
				tx.pre = append(tx.pre, lockReq{addr: r.addr, lw: r.lw, rcOnly: true, held: true, old: versionOf(w)})
				break
			}
		}
	}
}

// unprelock releases what prelock took, versions unchanged.
func (tx *Tx) unprelock() {
	if len(tx.pre) == 0 {
		return
	}
	for _, l := range tx.pre {
		tx.e.release(l.lw, l.addr, l.old)
	}
	tx.pre = tx.pre[:0]
	tx.sp.State.Store(StateIdle)
}

// end finishes a committed attempt.
func (tx *Tx) end() {
	tx.unprelock()
	tx.prev = tx.prev[:0]
	tx.e.r.Exit(tx.slot)
	retired := len(tx.retire) > 0
	tx.reset()
	tx.ends++
	if tx.collecting {
		return
	}
	if !retired && tx.ends%256 != 0 {
		return
	}
	held := tx.e.r.Pending(tx.slot)
	if (retired && held >= max(collectBatch, tx.collectAt)) || (held > 0 && tx.ends%256 == 0) {
		tx.collecting = true
		n, _ := tx.e.r.Collect(tx.heap)
		tx.collecting = false
		tx.collectAt = 0
		if n == 0 {
			// Held back by a long transaction: try again once as much
			// again has piled up, not at every commit.
			tx.collectAt = min(held+collectBatch, reclaim.RingCap) // a full ring still collects
		}
	}
}

func (tx *Tx) reset() {
	tx.reads = tx.reads[:0]
	if len(tx.locks) > 0 {
		if len(tx.locks) >= lockIndexFrom {
			if len(tx.lockIdx) > 256 {
				tx.lockIdx = map[Addr]int{} // a big transaction's: clearing would cost every later one
			} else {
				clear(tx.lockIdx)
			}
		}
		tx.locks = tx.locks[:0]
	}
	if len(tx.writers) > 0 {
		clear(tx.writers)
		tx.writers = tx.writers[:0]
	}
	if len(tx.stores) > 0 {
		clear(tx.stores)
		tx.stores = tx.stores[:0]
	}
	tx.nstores = 0
	tx.retire = tx.retire[:0]
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

// collectBatch is how many retired batches a slot gathers before a
// commit collects: a collection scans every slot's published epoch, so it
// is paid for once per batch, not once per commit.
const collectBatch = 64

// ReadBegin is the first half of a read of what lw guards (at addr): it
// returns the word to pass to ReadEnd once the fields are read. It waits
// while another transaction holds lw, and extends the snapshot when lw is
// newer than it (or fails with ErrConflict when the reads so far no
// longer hold).
//
// What is read between ReadBegin and a successful ReadEnd may be torn:
// callers must not act on it (beyond bounded, validated reads) until
// ReadEnd says it was consistent.
func (tx *Tx) ReadBegin(lw *LockWord, addr Addr) (uint64, error) {
	for {
		w := lw.Load()
		if isLocked(w) {
			if ownerOf(w) == tx.slot {
				return w, nil
			}
			if len(tx.pre) > 0 {
				// Holding locks while user code runs: never wait.
				tx.conflictAt(lw, addr, w)
				return 0, tx.Doom(fmt.Errorf("txn: read of a word locked by another: %w", ErrConflict))
			}
			tx.e.waitUnlock(lw, addr, w, tx.sp)
			continue
		}
		if versionOf(w) > tx.rv {
			if err := tx.extend(); err != nil {
				tx.conflictAt(lw, addr, w)
				return 0, tx.Doom(err)
			}
			continue
		}
		return w, nil
	}
}

// ReadEnd reports whether lw still holds w, and records the read if so.
// On false the caller reads again from ReadBegin.
func (tx *Tx) ReadEnd(lw *LockWord, addr Addr, w uint64) bool {
	if lw.Load() != w {
		return false
	}
	if n := len(tx.reads); n == 0 || tx.reads[n-1].lw != lw {
		tx.reads = append(tx.reads, readEntry{lw, addr, w})
	}
	return true
}

// extend moves the snapshot to the clock's present value if every read so
// far still holds.
func (tx *Tx) extend() error {
	now := tx.e.g.Clock.Load()
	if !tx.validate() {
		return fmt.Errorf("txn: snapshot extension: %w", ErrConflict)
	}
	tx.rv = now
	return nil
}

// validate reports whether every recorded read still holds: the word is
// unchanged, or locked by this transaction with the version it had.
func (tx *Tx) validate() bool {
	for _, r := range tx.reads {
		cur := r.lw.Load()
		if cur == r.w {
			continue
		}
		if isLocked(cur) && ownerOf(cur) == tx.slot && versionOf(cur) == versionOf(r.w) {
			continue
		}
		tx.conflictLW, tx.conflictAddr, tx.conflictWord = r.lw, r.addr, cur
		return false
	}
	return true
}

func (tx *Tx) conflictAt(lw *LockWord, addr Addr, w uint64) {
	if tx.conflictLW == nil {
		tx.conflictLW, tx.conflictAddr, tx.conflictWord = lw, addr, w
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
// handed over when it commits.
func (tx *Tx) Alloc(n int) (handle.Handle, []byte, error) {
	h, b, err := tx.heap.Alloc(n)
	if errors.Is(err, alloc.ErrLogFull) {
		err = fmt.Errorf("txn: %w: %w", ErrTooLarge, err)
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

// logWord writes word i of the slot's redo log.
func (tx *Tx) logWord(i int, v uint64) error {
	if i < inlineWords {
		tx.sp.Inline[i] = v
		return nil
	}
	k := i - inlineWords
	ci := k / chunkWords
	if ci >= maxChunks {
		return fmt.Errorf("txn: redo log of %d words: %w", i, ErrTooLarge)
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
// freed when the slot is released or recovered.
func (tx *Tx) growLog(ci int) error {
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
	sp := tx.sp
	tx.committing = true
	defer func() { tx.committing = false }()
	slices.SortFunc(tx.locks, func(a, b lockReq) int { return cmp.Compare(a.addr, b.addr) })
	// The count is zeroed before the slot turns ACTIVE (it is stale while
	// IDLE): recovery must never walk an earlier transaction's entries.
	sp.NLocks.Store(0)
	sp.State.Store(StateActive)
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
	sp.NLocks.Store(uint32(len(tx.locks)))
	for i := range tx.locks {
		l := &tx.locks[i]
		for {
			w := l.lw.Load()
			if isLocked(w) {
				tx.e.waitUnlock(l.lw, l.addr, w, sp)
				continue
			}
			if l.lw.CompareAndSwap(w, lockedWord(versionOf(w), tx.slot)) {
				l.held, l.old = true, versionOf(w)
				crashPoint("took lock")
				break
			}
		}
	}
	tx.wv = tx.e.g.Clock.Add(1)
	if tx.wv > MaxVersion {
		return fmt.Errorf("txn: version clock exhausted: %w", ErrTooLarge)
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
		if batch, err = tx.e.r.NewBatch(tx.heap, tx.retire); err != nil {
			return fmt.Errorf("txn: retire %d blocks: %w", len(tx.retire), err)
		}
		// Room in the retire ring now, before the commit point: after it
		// nothing may allocate or run a finalizer (see Reserve).
		if err := tx.e.r.Reserve(tx.heap); err != nil {
			return fmt.Errorf("txn: retire %d blocks: %w", len(tx.retire), err)
		}
	}
	sp.Batch.Store(uint64(batch))
	sp.NStores.Store(uint32(tx.nstores))
	sp.WV.Store(tx.wv)
	crashPoint("redo written")
	sp.State.Store(StateCommitting) // the commit point
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
	sp.State.Store(StateReleasing)
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
	sp.State.Store(StateIdle)
	sp.Commits.Add(1)
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

// waitConflict waits, after an abort, for the word the conflict was found
// on to change: no busy re-runs while its holder is still committing.
func (tx *Tx) waitConflict() {
	lw, addr, w := tx.conflictLW, tx.conflictAddr, tx.conflictWord
	tx.conflictLW = nil
	if lw == nil || !isLocked(w) || lw.Load()&^waitersBit != w&^waitersBit {
		yield() // changed already: run again at once, after letting others run
		return
	}
	tx.e.waitUnlock(lw, addr, w, tx.sp)
}
