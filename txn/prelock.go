//go:build linux && (amd64 || arm64)

package txn

// This file owns the one fairness measure beyond the lock queues: a
// read-only transaction that aborted lockedViewAfter times locks what its
// attempts read (prelock), as reference-count-only locks released with
// their versions unchanged (unprelock), so that it commits.

import (
	"cmp"
	"slices"
)

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
			if r.lw.CompareAndSwap(w, lockOf(w, tx.slot)) {
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
