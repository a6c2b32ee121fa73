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
		if v := versionOf(w); v > tx.rv {
			if err := tx.extend(v); err != nil {
				tx.conflictAt(lw, addr, w)
				return 0, tx.Doom(err)
			}
			// w was loaded before the validation: ReadEnd, which finds
			// it unchanged after the fields are read, vouches that it
			// held then too.
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

// freshBeforeAdvance is how many words past the clock an attempt accepts
// by validating its reads before it moves the clock past every version
// (to the clock + maxDrift): each such read validates the whole read set
// again, so a reader of many words written past the clock validates a
// few times, then reads them as TL2 does. An attempt that reads one or
// two such words (a Set of a key its process wrote last) writes nothing.
const freshBeforeAdvance = 4

// maxDrift bounds how far a version may run ahead of the clock: a commit
// whose wv would be more than maxDrift past the clock it loaded moves
// the clock to wv before it releases a word with it, so every word's
// version is at most the clock + maxDrift. A commit writes the clock
// then only after a word was written maxDrift times since the clock
// last moved; a reader that moves it by maxDrift costs that much of the
// version space (MaxVersion), no more.
const maxDrift = 16

// extend lets the attempt read a word of version v, past its snapshot, if
// every read so far still holds (see "The version clock" in commit.go).
// If the clock has reached v the snapshot moves to the clock (TinySTM's
// extension); if not (the commit that wrote v stamped it past the clock
// without moving it), the word is accepted by the validation alone, and
// rv stays: the reads are then a snapshot of the validation's moment.
func (tx *Tx) extend(v uint64) error {
	if tx.fresh >= freshBeforeAdvance {
		tx.e.advanceClock(max(v, tx.e.g.Clock.Load()+maxDrift)) // past every version (maxDrift)
	}
	now := tx.e.g.Clock.Load()
	if !tx.validate() {
		return fmt.Errorf("txn: snapshot extension: %w", ErrConflict)
	}
	if now >= v {
		tx.rv = now
	} else {
		tx.fresh++
	}
	return nil
}

// validate reports whether every recorded read still holds: the word is
// unchanged, or locked by this transaction with the version it had.
func (tx *Tx) validate() bool {
	tx.validations++
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
