//go:build linux && (amd64 || arm64)

package txn

// This file owns a transaction's life: the Tx and what a layer above
// buffers in it (Writer), the run loop of attempts (run), begin and end of
// an attempt (the snapshot published to reclaim, the collection of the
// slot's ring every so often), dooming an attempt whose read failed (Doom,
// settleDoomed), and the wait after an abort (waitConflict). Reads are in
// read.go, the commit and abort in commit.go, a starved View's locks in
// prelock.go, recovery of a dead process's slot in recover.go.

import (
	"context"
	"errors"
	"fmt"
	"unsafe"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/ipc"
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
	rv       uint64 // the snapshot: the clock's value at begin or at the last extension
	wv       uint64
	fresh    int // reads this attempt accepted by validation past rv (read.go)
	// validations counts the attempt's validations of its read set (for
	// the tests that bound them).
	validations int
	reads       []readEntry
	locks       []lockReq
	lockIdx     map[Addr]int
	writers     []Writer
	stores      []*uint64 // where each logged store goes, in log order
	nstores     int
	retire      []reclaim.Entry
	chunk       [maxChunks]unsafe.Pointer // where the slot's log chunks are mapped here

	// Blocking (retry.go). retrying: the function called Retry this
	// attempt. orElseN numbers this attempt's OrElse calls; branchRetry
	// (k+1) says OrElse number k's first alternative retried; skip lists
	// the OrElse calls whose first alternative the next attempt skips,
	// carry the reads it inherits. waits and tickets are a Retry's words
	// and their parking tickets.
	retrying    bool
	attempt     uint32 // attempts of this transaction so far (the running one included)
	next        int    // what comes after the last attempt (nextNone...)
	explicit    bool   // begun by Engine.Begin and not over: the caller runs the steps
	rl          relief // out-of-memory reliefs of this transaction (relieve.go)
	aborts      int    // conflicts of this read-write transaction so far (fair.go)
	privileged  bool   // holds the store's fairness token (fair.go)
	orElseN     int
	branchRetry int
	skip        []int
	carry       []readEntry
	waits       []waitEntry
	tickets     []ipc.Ticket

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
	trimSeen   uint32 // the last alloc.TrimAsked this slot answered (afterRun; the slot's goroutine only)

	// A read-only transaction's reads of its last aborted attempt, and
	// the locks it took on them (prelock).
	prev []readEntry
	pre  []lockReq

	// User is free for the layer above (objects keeps its per-transaction
	// state here across attempts).
	User any
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

// run is Engine.Run on this transaction: start, then the function and
// endAttempt until the transaction is over, restarting in between.
func (tx *Tx) run(ctx context.Context, readOnly bool, fn func(tx *Tx) error) (err error) {
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
			tx.next = nextNone
			tx.givePrivilege()
			panic(p) // shmstore's callers see their own panic, with the store intact
		}
	}()
	tx.start(readOnly)
	for {
		err = tx.endAttempt(fn(tx))
		if tx.next == nextNone {
			return err
		}
		if err := tx.Restart(ctx); err != nil {
			tx.Abandon()
			return err
		}
	}
}

// What a transaction does after an attempt that did not end it (next).
const (
	nextNone       = iota // over: committed, or failed with an error
	nextNow               // run the function again at once (an OrElse alternative retried)
	nextAfterLock         // run again once the word the conflict was found on is unlocked
	nextAfterRetry        // run again once a word the attempt read changes (Retry)
)

// start begins a transaction's first attempt.
func (tx *Tx) start(readOnly bool) {
	tx.readOnly = readOnly
	tx.prev = tx.prev[:0]
	tx.skip, tx.carry = tx.skip[:0], tx.carry[:0]
	tx.next = nextNone
	if tx.rl.rounds != 0 || !tx.rl.deadline.IsZero() {
		tx.rl = relief{}
	}
	tx.aborts = 0
	// For inspectors only. A fenced store costs as much as a third of a
	// read-only transaction: stored only when the (5 ms) clock moved.
	if now := tx.e.coarseNow(); tx.sp.Started.Load() != now {
		tx.sp.Started.Store(now)
	}
	tx.attempt = 0
	tx.beginAttempt()
}

// beginAttempt begins the next attempt; a read-write transaction that
// keeps losing takes the fairness token first (fair.go).
func (tx *Tx) beginAttempt() {
	if !tx.readOnly && !tx.privileged && tx.aborts >= privilegedAfter && !tx.collecting {
		tx.takePrivilege()
	}
	tx.attempt++
	if tx.sp.Attempts.Load() != tx.attempt { // for inspectors; mostly 1 already
		tx.sp.Attempts.Store(tx.attempt)
	}
	tx.begin(tx.attempt)
	if tx.readOnly && tx.attempt > lockedViewAfter && len(tx.prev) > 0 {
		tx.prelock()
	}
}

// endAttempt ends the attempt whose function returned fnErr: it commits,
// or aborts and says what comes next (tx.next). It returns nil when the
// transaction committed; an error wrapping ErrConflict or ErrRetry when
// it must run again (after Restart); any other error when it is over.
func (tx *Tx) endAttempt(fnErr error) error {
	err := fnErr
	switch {
	case tx.doomed != nil:
		err = tx.settleDoomed(err)
	case tx.branchRetry > 0:
		// A first alternative of OrElse retried: run again at once,
		// skipping it (see retry.go).
		tx.giveUpBranch()
		tx.abort()
		tx.next = nextNow
		return fmt.Errorf("txn: an alternative retried, run again: %w", ErrConflict)
	case tx.retrying:
		ok, rerr := tx.prepareRetry()
		tx.abort()
		tx.givePrivilege() // a waiter must not stop every committer
		tx.skip = tx.skip[:0]
		if rerr != nil {
			tx.e.r.Exit(tx.slot)
			tx.next = nextNone
			return rerr
		}
		tx.next = nextAfterRetry
		if !ok {
			tx.next = nextNow // what it waits for changed already
			tx.e.r.Exit(tx.slot)
			tx.attempt = 0 // a new transaction: a View publishes a new epoch
			tx.prev = tx.prev[:0]
		}
		return fmt.Errorf("txn: %w", ErrRetry)
	}
	if err == nil {
		err = tx.commit()
	}
	if err == nil {
		tx.end()
		tx.givePrivilege()
		tx.next = nextNone
		return nil
	}
	tx.abort()
	tx.skip = tx.skip[:0]
	if !errors.Is(err, ErrConflict) {
		tx.givePrivilege()
		if isOOM(err) && !tx.readOnly && !tx.collecting {
			// Aborted: no lock, no snapshot, nothing allocated. Make
			// freed memory reusable and run again, or say who holds it.
			if tx.relieve(&tx.rl) {
				tx.next = nextNow
				return fmt.Errorf("txn: out of memory, freed memory made reusable, run again (%v): %w", err, ErrConflict)
			}
			err = tx.e.explainOOM(err)
		}
		tx.e.r.Exit(tx.slot)
		tx.next = nextNone
		return err
	}
	tx.aborts++
	tx.next = nextAfterLock
	return err
}

// Restart waits for what the last attempt's end asked for (the word a
// conflict was found on to be unlocked, a change to what a Retry read)
// and begins the next attempt. ctx bounds the wait for a Retry's change
// (waitRetry): when it ends before the change, Restart returns ctx.Err()
// and the transaction may still be restarted (or abandoned). A change
// already made, or a conflict's wait (for a commit under way, bounded),
// is not refused for a ctx that ended: a short timeout (the C ABI's 0 ms
// is 1 ms) may end before the call.
func (tx *Tx) Restart(ctx context.Context) error {
	switch tx.next {
	case nextNone:
		return fmt.Errorf("txn: restart of a transaction that is over: %w", ErrDone)
	case nextAfterLock:
		tx.waitConflict()
	case nextAfterRetry:
		if err := tx.waitRetry(ctx); err != nil {
			return err
		}
		tx.e.r.Exit(tx.slot)
		tx.attempt = 0 // a new transaction: a View publishes a new epoch
		tx.prev = tx.prev[:0]
	}
	tx.next = nextNone
	tx.beginAttempt()
	return nil
}

// Abandon ends a transaction that is between attempts (after an
// endAttempt that asked for a restart, or a Restart that ctx ended):
// nothing is held afterwards.
func (tx *Tx) Abandon() {
	tx.givePrivilege()
	tx.next = nextNone
	tx.skip, tx.carry = tx.skip[:0], tx.carry[:0]
	tx.e.r.Exit(tx.slot)
}

// begin starts an attempt: the snapshot is the clock's value, published to
// reclaim before any read (see reclaim's essay). A read-only transaction
// keeps its first attempt's value published across its attempts (a lower
// value than its snapshot: safe), so that what its earlier attempts read,
// and prelock may lock, is not freed meanwhile.
func (tx *Tx) begin(attempt uint32) {
	tx.conflictLW = nil // a conflict an earlier function swallowed is not this attempt's
	tx.doomed = nil
	tx.retrying, tx.branchRetry, tx.orElseN = false, 0, 0
	tx.rv = tx.e.g.Clock.Load()
	tx.fresh, tx.validations = 0, 0
	if attempt == 1 || !tx.readOnly {
		tx.e.r.Enter(tx.slot, tx.rv)
	}
	tx.carryReads()
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
	if (retired && (held >= max(collectBatch, tx.collectAt) || tx.e.a.Short())) || (held > 0 && tx.ends%256 == 0) {
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
	// Truncated, not cleared: the stores point into the mapped regions
	// (not Go's heap), and the writers are the layer above's state of
	// this same transaction, which lives as long as it does.
	tx.writers = tx.writers[:0]
	tx.stores = tx.stores[:0]
	tx.nstores = 0
	tx.retire = tx.retire[:0]
}

// collectBatch is how many retired batches a slot gathers before a
// commit collects: a collection scans every slot's published epoch, so it
// is paid for once per batch, not once per commit. While memory is short
// (alloc's Short) every commit that retired something collects: what it
// freed is wanted now.
const collectBatch = 64

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
