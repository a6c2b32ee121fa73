//go:build linux && (amd64 || arm64)

package txn

// This file owns what a transaction does when the store is out of memory
// (relieve): before the error reaches the caller, memory that was freed
// but is not yet reusable is made reusable, and the transaction runs
// again; and what gives memory back at the end of transactions and in
// idle slots while memory is short (freeLogChunks, trimIdle, the
// ticker's part).
//
// # Where it runs, and why there
//
// Not inside the allocation that failed. That allocation runs inside an
// attempt, which has its snapshot published (reclaim keeps everything
// retired after it began: a collection would free nothing newer), and,
// at commit, holds its locks (a finalizer run by a collection may wait
// for one of them: a deadlock; waiting for a snapshot to end could wait
// for a reader that waits for the same lock). So the attempt fails with
// ErrOutOfMemory like any other error: abort releases its locks, frees
// what it allocated and withdraws its snapshot. Then, holding nothing,
// the run loop relieves and runs the function again:
//
//  1. Collect: the slot's own retire ring, and by adoption every ring
//     no one is collecting (idle slots of any process, slots no process
//     owns, the overflow ring), with finalizers.
//  2. The heaps hand back what is wholly free: this slot's, those of the
//     slots this process keeps idle, and, by a request in shared memory
//     (alloc's AskTrim), those other processes keep idle (their engines'
//     tickers answer within a few milliseconds; an engine whose ticker
//     stopped (it runs only while transactions start often) handed back
//     what its idle slots held when it stopped, and a slot that goes
//     idle while it does not run hands back its own). The slots here also give
//     up their redo-log chunks.
//  3. If that gave something back, run again at once. Else sleep a
//     little (two ticks of the engines' tickers, doubling to 50 ms) and
//     try again, as long as memory may still come back: for up to
//     reliefWait while retired batches wait in some ring (a snapshot
//     holds them, or a collection has not come yet), and for trimWait
//     while other slots may answer AskTrim (a slot in a transaction does
//     when it ends, afterRun; another process's idle slots when its
//     ticker sees the request). Else the store is full of live data: the
//     error is returned.
//
// The error names the transaction that holds the most memory back, when
// one does: the active slot with the oldest snapshot, as shmctl txns
// shows it (slot, pid, age).
//
// Finalizers' own transactions (run from inside a collection) do not
// relieve: they fail, the collection stops, and the batch stays for the
// next one.

import (
	"errors"
	"fmt"
	"time"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
)

// reliefWait bounds how long a transaction that found the store full
// waits for memory to come back before it reports ErrOutOfMemory.
const reliefWait = 1500 * time.Millisecond

// trimWait is how long a transaction that found the store full gives the
// other attached processes to answer its AskTrim (their tickers run every
// tickPeriod; a loaded machine delays them).
const trimWait = 100 * time.Millisecond

// relief is a transaction's relief across its attempts (one Run).
type relief struct {
	start    time.Time     // the first relief
	deadline time.Time     // start + reliefWait
	rounds   int           // reliefs so far
	pool     int64         // free superblocks after the last relief
	nap      time.Duration // the last sleep
}

// relieve makes freed memory reusable after an attempt that ran out of
// memory aborted (see the file comment), and reports whether to run the
// attempt again: if it gave something back (a collection freed batches,
// or, from the second relief on, the pool holds more free superblocks
// than after the last one: what the failed attempt itself took and gave
// back is no progress), or, after a nap, if memory may still come back
// and reliefWait has not passed. REQUIRES: the attempt aborted; a
// read-write transaction, not a finalizer's.
func (tx *Tx) relieve(rl *relief) bool {
	e := tx.e
	now := time.Now()
	if rl.deadline.IsZero() {
		rl.start, rl.deadline = now, now.Add(reliefWait)
	} else if now.After(rl.deadline) {
		return false
	}
	tx.collecting = true
	freed, _ := e.r.Collect(tx.heap) // a failure stops only that collection; the next one retries
	tx.collecting = false
	tx.freeLogChunks()
	tx.heap.Trim(false)
	e.trimIdle()
	e.a.AskTrim()
	pool := e.a.FreeSuperblocks()
	first := rl.rounds == 0
	more := pool > rl.pool
	rl.rounds++
	rl.pool = pool
	if freed > 0 || (more && !first) {
		rl.nap = 0
		return true
	}
	asking := now.Sub(rl.start) < trimWait && (e.othersBusy(tx.slot) || e.othersAttached())
	if !asking && !e.retiredWaiting() {
		// Nothing retired waits anywhere, and the other slots, if any,
		// had their time to answer AskTrim.
		return false
	}
	// The first nap gives the other processes' tickers two periods to
	// answer AskTrim; later ones double, up to 50 ms.
	rl.nap = min(max(2*rl.nap, 2*tickPeriod), 50*time.Millisecond)
	time.Sleep(min(rl.nap, time.Until(rl.deadline)))
	return true
}

// retiredWaiting reports whether some retire ring holds batches: memory
// that a collection will free, once the snapshots that see it end.
func (e *Engine) retiredWaiting() bool {
	if n, _ := e.r.HeldOverflow(); n > 0 {
		return true
	}
	for i := 0; i < e.st.NumSlots(); i++ {
		if e.r.Pending(i) > 0 {
			return true
		}
	}
	return false
}

// othersBusy reports whether a slot other than mine is in a transaction.
func (e *Engine) othersBusy(mine int) bool {
	for i := 0; i < e.st.NumSlots(); i++ {
		if _, ok := e.r.Active(i); ok && i != mine {
			return true
		}
	}
	return false
}

// othersAttached reports whether another live process is attached.
func (e *Engine) othersAttached() bool {
	for i := 0; i < e.st.NumProcs(); i++ {
		if i != e.st.ProcIndex() && e.st.ProcAlive(i) {
			return true
		}
	}
	return false
}

// explainOOM adds to an out-of-memory error what holds memory back: the
// active transaction with the oldest snapshot, if retired batches wait
// for it.
func (e *Engine) explainOOM(err error) error {
	var oldest *SlotInfo
	slots := e.Slots()
	for i := range slots {
		if s := &slots[i]; s.Active && (oldest == nil || s.RV < oldest.RV) {
			oldest = s
		}
	}
	held := 0 // batches of rings whose oldest batch is newer than the oldest snapshot
	if oldest != nil {
		for _, s := range slots {
			if s.Retired > 0 && s.Oldest > oldest.RV {
				held += s.Retired
			}
		}
		if n, o := e.r.HeldOverflow(); n > 0 && o > oldest.RV {
			held += n
		}
	}
	if held == 0 {
		return fmt.Errorf("txn: the store is full of live data (nothing retired waits to be freed): %w", err)
	}
	return fmt.Errorf("txn: %d retired batches wait for the transaction in slot %d (pid %d, running for %v, snapshot at version %d; see shmctl txns): end it, or the memory it holds back stays: %w",
		held, oldest.Slot, oldest.PID, oldest.Age.Round(time.Millisecond), oldest.RV, err)
}

// freeLogChunks frees the slot's redo-log chunks (they are allocated
// again when a commit needs them). The slot is idle: nothing reads its
// log. Each chunk is freed before its handle is cleared: a crash in
// between leaves a stale handle, which recovery's free refuses.
func (tx *Tx) freeLogChunks() {
	for ci, hd := range tx.sp.Chunks {
		if hd == handle.Null {
			continue
		}
		_ = tx.heap.Free(hd)
		tx.sp.Chunks[ci] = handle.Null
		tx.chunk[ci] = nil
	}
}

// trimIdle makes every slot this process keeps idle hand back its redo-log
// chunks and its current superblocks (the wholly free ones to the pool,
// the others to the global heap, where the heap that ran out can take
// their free blocks), and returns how many superblocks went to the pool.
// Each idle slot is taken out of the pool while it trims.
func (e *Engine) trimIdle() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.trimIdleLocked()
}

// trimIdleLocked is trimIdle. REQUIRES: e.mu held. Each idle transaction
// is taken out of the pool while it trims, so no goroutine runs it
// meanwhile, and left again (the pool cannot close: Close needs mu).
func (e *Engine) trimIdleLocked() int {
	n := 0
	for i := range e.pool.cells {
		tx := e.pool.cells[i].Swap(nil)
		if tx == nil {
			continue
		}
		tx.freeLogChunks()
		n += tx.heap.Trim(true)
		e.pool.leave(tx)
	}
	if e.pool.waiting.Load() > 0 {
		e.freed.Broadcast()
	}
	return n
}

// afterRun is the end of a Run on tx: while memory is short, the slot
// gives its redo-log chunks back (a commit that needs them allocates them
// again); asked to (AskTrim, by a transaction of any process that found
// the store full), its heap hands back its current superblocks too.
func (tx *Tx) afterRun() {
	if a := tx.e.a.TrimAsked(); a != tx.trimSeen {
		tx.trimSeen = a
		tx.freeLogChunks()
		tx.heap.Trim(true)
	} else if tx.e.a.Short() {
		tx.freeLogChunks()
	}
}

// isOOM reports whether err says the store is out of memory.
func isOOM(err error) bool { return errors.Is(err, alloc.ErrOutOfMemory) }
