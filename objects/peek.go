//go:build linux && (amd64 || arm64)

package objects

// # Optimistic reads: a single read without a transaction
//
// A read of one scalar at a path of Dicts (the root package's Get,
// GetInt...) needs no snapshot, no slot and no epoch: it is a seqlock
// read of the lock words on the path. For each key, PeekPath loads the
// stripe's lock word (an unlocked one), probes the stripe's table, loads
// the lock word of the entry it found (an unlocked one) and reads the
// entry's value, exactly as a transaction's read does; once every key is
// read, it loads each of those lock words again and keeps what it read
// only if none changed.
//
// Why that is consistent. A commit that changes what a stripe guards
// (its table: which entry holds a key) holds the stripe's lock
// meanwhile, and one that changes an entry's value holds the entry's;
// each releases its word with a larger version, so a word loaded equal
// before and after a read means that no such commit overlapped it. Every
// window [first load, second load] contains the instant of the first
// second load, since all the first loads come before all the second
// ones: at that instant, every stripe and entry on the path held what
// was read. That is the read's linearization point.
//
// Why nothing read was freed, without an epoch. reclaim frees only what
// a commit unlinked (and retired). While a stripe's word is unchanged,
// nothing it links was unlinked: the table it names and the entries in
// it are live through the window; while an entry's word is unchanged, so
// are the blob of its String value and the Dict its value names (whose
// reference count is at least the one link), and the next Dict's
// stripes are read only through that link. An entry's word is loaded,
// both times, inside its stripe's window (the windows close in the
// reverse of the order they opened: unchangedAll), so it is that entry's
// word at both loads: a block freed and made again in between could hold
// an equal word (a new entry's is 0). A read whose window fails may have
// followed a block freed meanwhile, and read garbage: every handle is
// resolved with bounds checks (peek), every length bounded, so it reads
// mapped memory only, and what it read is thrown away. The regions stay
// mapped: txn's BeginPeek makes Close refuse while an optimistic read
// runs.
//
// PeekPath gives up (ok false) rather than wait or retry: on a locked
// or changed word, on a missing key (whose error the transaction words),
// on a container or a Counter, on anything damaged (a Dict on the path
// is resolved strictly, through the allocator, as a transaction resolves
// it). The caller then runs
// the same read in a transaction, which waits, recovers a dead holder
// and reports errors. So an optimistic read changes no answer, only what
// the common one costs: no slot taken from the pool, no snapshot
// published, nothing written to shared memory at all.
//
// PeekDict reads a key of a Dict named by its handle (the C library's
// one-shot get), not reached from the root: no parent's lock word
// vouches for the Dict itself. After the key's windows close, its
// reference count must still be above 0 (what an unchanged window
// links is freed only by the Dict's finalizer, after an unlink stored
// the 0, which is final), and its block, resolved pinned, still
// allocated with the handle's generation (so the count read was the
// Dict's). See PeekDict.
//
// The key bytes are compared with plain loads, the words with atomic
// ones; on amd64 loads are not reordered with each other, on arm64 a
// load barrier (loadFence) keeps them all before the second loads.

import (
	"strings"
	"unsafe"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/txn"
)

// peekDepth is the most keys a path PeekPath reads may have.
const peekDepth = 8

// A key's read opens two windows: its stripe's and its entry's.
const windowsPerKey = 2

type peekWindow struct {
	lw *txn.LockWord
	w  uint64
}

// PeekPath reads the scalar at path ("a/b/c": key c of the Dict under b
// of the Dict under a of the root; String keys, no empty one) without a
// transaction (see above). ok is false when it could not: then the
// caller reads in a transaction, which gives the answer or the error.
// A String or Bytes value is copied out.
func (s *Space) PeekPath(path string) (v Value, ok bool) {
	if s.rootP == nil || !s.e.BeginPeek() {
		return None, false
	}
	defer s.e.EndPeek()
	var wins [peekDepth * windowsPerKey]peekWindow
	n := 0 // keys read
	dp := s.rootP
	for {
		// strings.Cut's split, through IndexByte (Cut goes through Index,
		// which costs a Get 4%).
		key, rest, more := path, "", false
		if i := strings.IndexByte(path, '/'); i >= 0 {
			key, rest, more = path[:i], path[i+1:], true
		}
		if key == "" || len(key) > MaxKeyLen || n == peekDepth {
			return None, false
		}
		var found bool
		if v, found, ok = s.peekKey(dp, String(key), (*[windowsPerKey]peekWindow)(wins[n*windowsPerKey:])); !ok || !found {
			return None, false // a missing key's error is the transaction's
		}
		n++
		if !more {
			break
		}
		if v.kind != KindDict {
			return None, false
		}
		// Resolved strictly, as a transaction does (dictAt): on a
		// damaged store (a Dict freed while still linked) the
		// transaction reports it, so this must not read it.
		p, err := s.object(v.hd(), KindDict)
		if err != nil {
			return None, false
		}
		dp, path = p, rest
	}
	if peekPathRead != nil {
		peekPathRead()
	}
	if !s.peekValue(&v) {
		return None, false
	}
	loadFence()
	return v, unchangedAll(wins[:n*windowsPerKey])
}

// PeekDict reads the scalar under key in the Dict h without a
// transaction, as PeekPath does for a path. The Dict is named by its
// handle, not reached through a link that a window watches, so two
// checks after the stripe's window closed vouch for what the read went
// through:
//
//   - the Dict is still linked: its reference count, loaded again, is
//     above 0. What the read went through (the stripe's table, the
//     entry, the value's blob) is freed either after a commit to that
//     stripe, which the window sees, or by the Dict's finalizer, which
//     runs after the commit that stored the Dict's count 0; and a count
//     of 0 is final (nothing links an unlinked object again). So a count
//     above 0 loaded after the read means the finalizer had not run when
//     it was read: its frees (and whatever reused the blocks) come after
//     the store of the 0, which this load would have seen.
//     An unlinked Dict, or one an uncommitted transaction made (its
//     count is 0 until that commits), is left to the transaction, which
//     reports it stale.
//   - the count loaded was the Dict's: its block, resolved pinned
//     (alloc.ResolvePinned), is still allocated with the handle's
//     generation after that load (Pin.Held). A free moves the block's
//     state word on before the block can be reused.
//
// The stripe held what was read at its window's second load, and the
// Dict was linked then (the count was above 0 later): that instant is
// the read's linearization point. Changes to the count alone release
// the header's lock word unchanged, so the count is checked by value,
// not through that word.
//
// ok false: the caller reads in a transaction, which answers (so also
// for a key that is no key, or a handle that names no Dict: their
// errors come from there). ok true: v is the value, or err is the
// ErrNotFound a transaction's GetKey gives for a key the Dict has not.
func (s *Space) PeekDict(h handle.Handle, key Value) (v Value, ok bool, err error) {
	if checkKey(key) != nil || !s.e.BeginPeek() {
		return None, false, nil
	}
	defer s.e.EndPeek()
	b, pin, err := s.a.ResolvePinned(h)
	if err != nil || len(b) < dictSize {
		return None, false, nil
	}
	dp := unsafe.Pointer(&b[0])
	hd := hdrAt(dp)
	if Kind(hd.kind) != KindDict || hd.rc.Load() == 0 {
		return None, false, nil // the count's 0 is final: the transaction's error
	}
	if peekDictLinked != nil {
		peekDictLinked(h)
	}
	var wins [windowsPerKey]peekWindow
	v, found, ok := s.peekKey(dp, key, &wins)
	if !ok || found && !s.peekValue(&v) {
		return None, false, nil
	}
	if peekDictRead != nil {
		peekDictRead(h)
	}
	loadFence()
	// In this order: the window, then the count, then the pin (see
	// above). The count's load is atomic: on arm64 it is ordered before
	// the pin's loads.
	if !unchangedAll(wins[:]) || hd.rc.Load() == 0 || !pin.Held() {
		return None, false, nil
	}
	if !found {
		return None, true, errNoKey(key)
	}
	return v, true, nil
}

// peekKey probes key in the Dict at dp, opening the window of its stripe
// in wins[0] and, if the key is there, of its entry in wins[1] (a window
// that stays unchanged otherwise): the value if found; ok false if a word
// is locked or the table unreadable.
func (s *Space) peekKey(dp unsafe.Pointer, key Value, wins *[windowsPerKey]peekWindow) (v Value, present, ok bool) {
	hash := Hash(key)
	st := stripeAt(dp, stripeOf(hash))
	w, unlocked := txn.PeekWord(&st.lock)
	if !unlocked {
		return None, false, false
	}
	wins[0] = peekWindow{&st.lock, w}
	var f found
	if err := s.probe(st, key, hash, &f); err != nil {
		return None, false, false
	}
	if !f.ok {
		wins[1] = wins[0]
		return None, false, true
	}
	lw := entryLock(f.ep) // resolved, bounds checked, by the probe
	if w, unlocked = txn.PeekWord(lw); !unlocked {
		return None, false, false
	}
	wins[1] = peekWindow{lw, w} // an atomic load: the value's loads come after it
	v, err := s.decode(load(f.ep, 8)&0xff, load(f.ep, offEntryVal))
	if err != nil {
		return None, false, false
	}
	return v, true, true
}

// peekDictLinked and peekDictRead, set by tests only, run in PeekDict
// after its first check of the reference count, and between the read and
// the checks that keep it: what they do there overlaps the read.
// peekPathRead runs in PeekPath between the keys' reads and the checks;
// peekClose before each window's close.
var (
	peekDictLinked, peekDictRead func(h handle.Handle)
	peekPathRead, peekClose      func()
)

// peekValue makes v, read in a window, what the read returns: a String
// or Bytes copied out of its blob; false for a container (or a Counter),
// which a transaction opens, and for a kind that is none (damage, or a
// torn read), which a transaction reports.
func (s *Space) peekValue(v *Value) bool {
	switch {
	case v.kind >= KindDict:
		return false
	case v.kind == KindString || v.kind == KindBytes:
		return s.fill(v) == nil
	}
	return true
}

// unchanged closes the window: true if the lock word still holds what it
// held when the window opened.
func (w peekWindow) unchanged() bool { return txn.Unchanged(w.lw, w.w) }

// unchangedAll closes every window, the last opened first: each window
// is then closed inside the one it was opened in (an entry's inside its
// stripe's, a Dict's stripe inside the entry that links the Dict), and
// an inner window's block is still what it was when its word is loaded
// again. Closed the other way, a stripe's window could close, the entry
// be deleted, freed and made again in the same block with the same word
// (a new entry's is 0), and the entry's window then close "unchanged"
// over an overwrite it read torn.
func unchangedAll(wins []peekWindow) bool {
	for i := len(wins) - 1; i >= 0; i-- {
		if peekClose != nil {
			peekClose()
		}
		if !wins[i].unchanged() {
			return false
		}
	}
	return true
}
