//go:build linux && (amd64 || arm64)

package objects

// # Optimistic reads: a single read without a transaction
//
// A read of one scalar at a path of Dicts (the root package's Get,
// GetInt...) needs no snapshot, no slot and no epoch: it is a seqlock
// read of the stripes on the path. For each key, PeekPath loads the
// stripe's lock word (an unlocked one), probes the stripe's table and
// reads the entry, exactly as a transaction's read does; once every key
// is read, it loads each of those lock words again and keeps what it
// read only if none changed.
//
// Why that is consistent. A commit that changes what a stripe guards
// (its table, an entry's value) holds the stripe's lock meanwhile and
// releases it with a larger version, so a word loaded equal before and
// after a read means that no such commit overlapped it. Every window
// [first load, second load] contains the instant of the first second
// load, since all the first loads come before all the second ones: at
// that instant, every stripe on the path held what was read. That is
// the read's linearization point.
//
// Why nothing read was freed, without an epoch. reclaim frees only what
// a commit unlinked (and retired). While a stripe's word is unchanged,
// nothing it links was unlinked: the table it names, the entries in it,
// the blob of a String value, and the Dict a value names (its reference
// count is at least the one link) are all live through the window, and
// the next Dict's stripes are read only through that link. A read whose
// window fails may have followed a block freed meanwhile, and read
// garbage: every handle is resolved with bounds checks (peek), every
// length bounded, so it reads mapped memory only, and what it read is
// thrown away. The regions stay mapped: txn's BeginPeek makes Close
// refuse while an optimistic read runs.
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
// The key bytes are compared with plain loads, the words with atomic
// ones; on amd64 loads are not reordered with each other, on arm64 a
// load barrier (loadFence) keeps them all before the second loads.

import (
	"strings"

	"github.com/shmstore/shmstore/txn"
)

// peekDepth is the most keys a path PeekPath reads may have.
const peekDepth = 8

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
	var wins [peekDepth]peekWindow
	n := 0
	dp := s.rootP
	for {
		key, rest, more := strings.Cut(path, "/")
		if key == "" || len(key) > MaxKeyLen || n == peekDepth {
			return None, false
		}
		k := String(key)
		hash := Hash(k)
		st := stripeAt(dp, stripeOf(hash))
		w, unlocked := txn.PeekWord(&st.lock)
		if !unlocked {
			return None, false
		}
		wins[n] = peekWindow{&st.lock, w}
		n++
		var f found
		if err := s.probe(st, k, hash, true, &f); err != nil || !f.ok {
			return None, false
		}
		if !more {
			v = f.val
			break
		}
		if f.val.kind != KindDict {
			return None, false
		}
		// Resolved strictly, as a transaction does (dictAt): on a
		// damaged store (a Dict freed while still linked) the
		// transaction reports it, so this must not read it.
		p, err := s.object(f.val.hd(), KindDict)
		if err != nil {
			return None, false
		}
		dp, path = p, rest
	}
	switch {
	case v.kind.IsContainer():
		return None, false
	case v.kind == KindString || v.kind == KindBytes:
		if s.fill(&v) != nil {
			return None, false
		}
	}
	loadFence()
	for _, win := range wins[:n] {
		if !txn.Unchanged(win.lw, win.w) {
			return None, false
		}
	}
	return v, true
}
