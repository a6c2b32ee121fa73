//go:build linux && (amd64 || arm64)

package txn

import (
	"sync/atomic"
	"unsafe"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
)

// Versioned lock words. Every object, and every stripe of a Dict, has one:
// a 64-bit word in shared memory that says which commit last changed what it
// guards and, while a committer holds it, which slot that is.
//
//		63                          18 17            2   1        0
//		+------------------------------+---------------+--------+--------+
//		| version (46 bits)            | slot (16 bits)| waiters| locked |
//		+------------------------------+---------------+--------+--------+
//
//	  - unlocked: version is the commit version (the clock value) of the last
//	    commit that changed what the word guards; slot and waiters are 0.
//	  - locked: version still holds the version before the lock, so that a
//	    lock can be released unchanged (a lock taken only for a reference
//	    count, an abort, or recovery of a dead committer) without any other
//	    record; slot is the committer's slot.
//	  - waiters: someone is parked in ipc on this word's bucket; the releaser
//	    (who Swaps the word) wakes the bucket. It is set on a locked word
//	    by a waiter for the lock, and on an unlocked one by a transaction
//	    in Retry, which waits for the word's next commit; locking keeps it
//	    (so that the release wakes that waiter), and version comparisons
//	    ignore it (sameWord).
//
// Writers: a committer CASes unlocked -> locked (keeping waiters) and
// Swaps locked -> unlocked; a waiter CASes w -> w|waiters; a recoverer
// CASes a dead slot's locked word -> unlocked. Readers: every transaction, before
// and after reading what the word guards (TL2), and at validation. The
// Swap that releases publishes the committer's stores to whoever loads the
// new version.
const (
	lockedBit  = 1
	waitersBit = 2
	slotShift  = 2
	slotMask   = 0xffff
	verShift   = 18
	// MaxVersion is the largest commit version a lock word can hold.
	MaxVersion = 1<<(64-verShift) - 1
)

// LockWord is a versioned lock word in shared memory.
type LockWord = atomic.Uint64

func isLocked(w uint64) bool       { return w&lockedBit != 0 }
func versionOf(w uint64) uint64    { return w >> verShift }
func ownerOf(w uint64) int         { return int(w >> slotShift & slotMask) }
func unlockedWord(v uint64) uint64 { return v << verShift }
func lockedWord(v uint64, slot int) uint64 {
	return v<<verShift | uint64(slot)<<slotShift | lockedBit
}

// lockOf is the locked word that replaces w (unlocked) for slot: same
// version, and a waiter announced on w stays announced.
func lockOf(w uint64, slot int) uint64 { return lockedWord(versionOf(w), slot) | w&waitersBit }

// sameWord reports whether a and b are the same state of a lock word: the
// waiters bit, which only says that someone sleeps, does not count.
func sameWord(a, b uint64) bool { return a&^waitersBit == b&^waitersBit }

// PeekWord loads lw for an optimistic read (see Engine.BeginPeek): the
// word to check with Unchanged once the fields it guards are read, and
// whether it is unlocked (what a locked word guards is not read so).
func PeekWord(lw *LockWord) (uint64, bool) {
	w := lw.Load()
	return w, !isLocked(w)
}

// Unchanged reports whether lw still holds w: nothing it guards changed
// since PeekWord returned w (no commit took it in between: versions only
// grow, and a lock held is seen as a change). A reference-count-only
// commit releases its word unchanged, but changes nothing else it
// guards.
func Unchanged(lw *LockWord, w uint64) bool { return sameWord(lw.Load(), w) }

// Addr is the store-wide address of an 8-byte word: a handle without its
// generation (region:16 | granule:32), the same in every process. Lock
// words are parked on, logged and sorted by Addr.
type Addr uint64

// AddrOf is the address of the word off bytes into the block h names (off
// a multiple of 8).
func AddrOf(h handle.Handle, off uintptr) Addr {
	return Addr(uint64(h)>>16 + uint64(off/handle.Granule))
}

func (a Addr) region() uint16  { return uint16(a >> 32) }
func (a Addr) granule() uint32 { return uint32(a) }

// Slot states (slotPart.State).
const (
	// StateIdle: no transaction, or one that holds nothing yet.
	StateIdle uint32 = iota
	// StateActive: running or locking; an abort (or recovery) releases
	// the logged locks with their old versions and frees the allocation
	// log.
	StateActive
	// StateCommitting: the redo record is complete; recovery re-applies
	// it (the stores are absolute, so applying twice is harmless) and
	// retires what it unlinked.
	StateCommitting
	// StateReleasing: the stores are applied and the unlinked memory
	// retired; what is left is releasing the locks and handing over the
	// allocations. Nothing is applied again.
	StateReleasing
)

// StateName names a slot state for inspection.
func StateName(s uint32) string {
	switch s {
	case StateIdle:
		return "idle"
	case StateActive:
		return "active"
	case StateCommitting:
		return "committing"
	case StateReleasing:
		return "releasing"
	}
	return "unknown"
}

// Redo log geometry: the first inlineWords words of the log live in the
// slot, then chunks of chunkWords words, allocated on demand and kept with
// the slot across transactions.
const (
	inlineWords = 640
	chunkWords  = 8192 // 64 KiB
	maxChunks   = 64
	// MaxLogWords bounds one transaction's redo log (locks, plus two
	// words per store).
	MaxLogWords = inlineWords + maxChunks*chunkWords
)

// slotPart is txn's part of a slot (shm.PartTxn).
//
//	+---------------------------+ 0
//	| State       (atomic u32)  |  owner; recoverer of a dead owner
//	| Attempts    (atomic u32)  |  owner; read by inspectors
//	| Started     (atomic i64)  |  owner: unix nanos of the first attempt
//	| Waiting, WV (atomic u64)  |  owner: words it sleeps on in Retry (0: not
//	|                           |  in Retry), read by inspectors only, never
//	|                           |  by recovery; WV: the commit's version
//	| WaitOn      (atomic u64)  |  owner: Addr+1 of the word it waits on
//	|                           |  (a lock, or the first of a Retry's words)
//	| NLocks      (atomic u32)  |  owner: lock entries logged (log words 0..); stale when idle
//	| NStores     (atomic u32)  |  owner: store pairs logged after the locks
//	| Batch       (atomic u64)  |  owner: retire batch of this commit
//	| Commits, Aborts (u64)     |  owner: statistics
//	+---------------------------+ 64
//	| Chunks [maxChunks]handle  |  owner: redo log chunks (kept)
//	+---------------------------+ 576
//	| Inline [inlineWords]u64   |  owner: the first log words
//	+---------------------------+
//
// Only the owner writes a live slot; after its process died only the
// recoverer (under shm's recovery lock) does. Inspectors (shmctl txns) read
// with atomics and may see a slot mid-change; nothing they show is used to
// decide anything. The log is written with plain stores before the count
// that covers them (NLocks, NStores) and before State moves on: a
// recoverer only reads it after the writer died.
type slotPart struct {
	State    atomic.Uint32
	Attempts atomic.Uint32
	Started  atomic.Int64
	Waiting  atomic.Uint64 // owner writes, inspectors read: words a Retry sleeps on (0: none); WaitOn is the first
	WV       atomic.Uint64
	WaitOn   atomic.Uint64
	NLocks   atomic.Uint32
	NStores  atomic.Uint32
	Batch    atomic.Uint64
	Commits  atomic.Uint64
	Aborts   atomic.Uint64
	_        [shm.CacheLine - 64]byte
	Chunks   [maxChunks]handle.Handle
	Inline   [inlineWords]uint64
}

// Log entry flags, in the low bits of a lock entry (Addrs are word
// addresses, so their top bits are free).
const (
	lockRCOnly = 1 << 63 // taken only to change a reference count: released with its old version
)

// global is txn's part of the control segment (shm.PartTxn).
//
//	+---------------------------+ 0
//	| Clock      (atomic u64)   |  every transaction and commit loads; moved
//	|                           |  (CAS) by commits that retire or drift
//	+---------------------------+ 64
//	| Root       (atomic u64)   |  handle of the root Dict; CAS from 0 once
//	+---------------------------+ 128
//	| Privileged (atomic u64)   |  slot+1 of the privileged transaction, 0
//	|                           |  for none (fair.go)
//	+---------------------------+ 192
//
// The clock sits alone on its line: every transaction loads it, and the
// commits and readers that move it (commit.go's "The version clock")
// would otherwise disturb the root's and the privileged slot's readers.
type global struct {
	Clock atomic.Uint64
	_     [shm.CacheLine - 8]byte
	Root  atomic.Uint64
	_     [shm.CacheLine - 8]byte
	// Privileged: written by the transaction that takes or gives back the
	// token (CAS 0 -> slot+1, Swap -> 0) and by a waiter that finds its
	// holder dead (CAS slot+1 -> 0); read by every committer before it
	// locks. Alone on its line: it changes rarely, so every committer's
	// load hits a shared, clean line.
	Privileged atomic.Uint64
	_          [shm.CacheLine - 8]byte
}

// Compile-time pins against shm's part sizes (6 KiB - 64 for the slot part,
// 4 KiB for the global part).
const (
	_ = uint(6<<10-64) - uint(unsafe.Sizeof(slotPart{}))
	_ = uint(4<<10) - uint(unsafe.Sizeof(global{}))
)

func init() {
	if unsafe.Sizeof(slotPart{}) > shm.SlotPartSize[shm.PartTxn] || unsafe.Sizeof(global{}) > shm.GlobalPartSize[shm.PartTxn] {
		panic("txn: layout does not fit shm's parts")
	}
}
