//go:build linux && (amd64 || arm64)

package txn

// This file owns a transaction's reads: the read window over a lock word
// (ReadBegin waits for a locked word and extends the snapshot past a newer
// one; ReadEnd checks and records the read), the read set (readEntry),
// its validation (validate, at extension and at commit), and the word a
// conflict was found on (conflictAt).

import "fmt"

type readEntry struct {
	lw   *LockWord
	addr Addr
	w    uint64
}

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
	if !sameWord(lw.Load(), w) {
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
		if sameWord(cur, r.w) {
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
