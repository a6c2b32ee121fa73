//go:build linux && (amd64 || arm64)

package objects

// This file owns reads of a committed Dict, inside txn's read window
// (ReadBegin/ReadEnd on a stripe's lock word): a key's lookup
// (lookupCommitted, probe, probeTable, entryMatch) and an entry's value
// (readEntry, in the entry's own window), a whole stripe
// (readStripe, eachEntry), the bounds every table and entry walk checks
// (table, checkTable, entryKeyBytes), the table as readers and the
// committer probe it (tableView, get), and the attempt's cache of
// committed lookups that a Set of a key just read reuses (readCache).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"github.com/shmstore/shmstore/handle"
)

// found is what a committed lookup found.
type found struct {
	ok   bool
	val  Value
	ent  handle.Handle
	ep   unsafe.Pointer // ent's block, as the read resolved it
	slot uint64
}

// lookupCommitted finds k in the committed Dict (as of the snapshot),
// recording the stripe, and the entry found, in the read set.
// f is filled in place (found is big enough for copies to show).
func (d *Dict) lookupCommitted(k Value, hash uint64, f *found) error {
	s := stripeOf(hash)
	st := stripeAt(d.p, s)
	a := d.stripeAddr(s)
	for {
		w, err := d.tx.t.ReadBegin(&st.lock, a)
		if err != nil {
			return err
		}
		ferr := d.tx.s.probe(st, k, hash, f)
		if d.tx.t.ReadEnd(&st.lock, a, w) {
			if ferr == nil && f.ok {
				ferr = d.readEntry(f.ent, f.ep, &f.val)
			}
			return d.tx.doom(ferr) // found in a consistent read: not the caller's doing
		}
	}
}

// readEntry reads the value of entry e (block p) in the entry's own read
// window: the value changes under the entry's lock word, not the
// stripe's. e was found by a stripe read that ReadEnd vouched for, so it
// is an entry (linked then, and kept by reclaim while the attempt runs);
// if a delete unlinked it since, the stripe, in the read set, no longer
// validates.
func (d *Dict) readEntry(e handle.Handle, p unsafe.Pointer, v *Value) error {
	lw, a := entryLock(p), addr(e, offEntryLock)
	for {
		w, err := d.tx.t.ReadBegin(lw, a)
		if err != nil {
			return err
		}
		kind, raw := load(p, 8)&0xff, load(p, offEntryVal)
		if d.tx.t.ReadEnd(lw, a, w) {
			if *v, err = d.tx.s.decode(kind, raw); err == nil {
				err = d.tx.s.fill(v)
			}
			return err
		}
	}
}

// probe looks k up in a stripe's table (slot: where it is, or where it
// would go). Reads may be torn unless the stripe is locked or the caller
// validates afterwards; probe never follows more than cap slots and
// resolves every handle.
func (s *Space) probe(st *stripe, k Value, hash uint64, f *found) error {
	t := tableView{h: handle.Handle(st.table.Load()), capa: st.cap.Load()}
	if t.h == handle.Null {
		*f = found{slot: ^uint64(0)}
		return nil
	}
	var err error
	if t.p, err = s.table(t.h, t.capa); err != nil {
		return err
	}
	return probeTable(s, &t, k, hash, f)
}

// table resolves a table block that should hold capa slots.
func (s *Space) table(h handle.Handle, capa uint64) (unsafe.Pointer, error) {
	p, n, err := s.peek(h)
	if err != nil {
		return nil, err
	}
	return p, checkTable(h, capa, n)
}

// checkTable reports whether a table block of n bytes can hold capa
// slots, capa a power of two (the one bound every table walk uses).
func checkTable(h handle.Handle, capa uint64, n int) error {
	if capa == 0 || capa&(capa-1) != 0 || capa > uint64(n)/8 {
		return fmt.Errorf("objects: table %v: cap %d in %d bytes: %w", h, capa, n, ErrCorrupt)
	}
	return nil
}

// entryMatch reports whether entry e (block p) holds key k.
func (s *Space) entryMatch(e handle.Handle, k Value, hash uint64) (unsafe.Pointer, bool, error) {
	p, n, err := s.peek(e)
	if err != nil {
		return nil, false, err
	}
	if n < entryHeader {
		return nil, false, fmt.Errorf("objects: entry %v of %d bytes: %w", e, n, ErrCorrupt)
	}
	if load(p, 0) != hash {
		return p, false, nil
	}
	kk, kb, err := entryKeyBytes(p, n)
	if err != nil {
		return nil, false, fmt.Errorf("objects: entry %v: %w", e, err)
	}
	if kk != k.kind {
		return p, false, nil
	}
	switch kk {
	case KindString, KindBytes:
		if string(kb) != k.s { // compared in place: no copy
			return p, false, nil
		}
	case KindInt, KindBool:
		if binary.LittleEndian.Uint64(kb) != k.n {
			return p, false, nil
		}
	}
	return p, true, nil
}

// entryKeyBytes checks an entry block's key (of n bytes at most) and
// returns its kind and bytes, in place (the one place that bounds them: a
// torn read copies nothing before this check).
func entryKeyBytes(p unsafe.Pointer, n int) (Kind, []byte, error) {
	meta := load(p, 8)
	kk, klen := Kind(meta>>8&0xff), int(meta>>32)
	if klen > n-entryHeader || klen > MaxKeyLen {
		return kk, nil, fmt.Errorf("key of %d bytes in a %d-byte entry: %w", klen, n, ErrCorrupt)
	}
	switch kk {
	case KindString, KindBytes, KindNone:
	case KindInt, KindBool:
		if klen != 8 {
			return kk, nil, fmt.Errorf("%v key of %d bytes: %w", kk, klen, ErrCorrupt)
		}
	default:
		return kk, nil, fmt.Errorf("key of kind %d: %w", kk, ErrCorrupt)
	}
	return kk, unsafe.Slice((*byte)(unsafe.Add(p, entryHeader)), klen), nil
}

// entryKey reads (copies) the key of an entry block of n bytes.
func entryKey(p unsafe.Pointer, n int) (Value, error) {
	kk, kb, err := entryKeyBytes(p, n)
	switch {
	case err != nil:
		return None, err
	case kk == KindString || kk == KindBytes:
		return Value{kind: kk, s: string(kb)}, nil
	case kk == KindInt || kk == KindBool:
		return Value{kind: kk, n: binary.LittleEndian.Uint64(kb)}, nil
	}
	return None, nil
}

// readCache keeps the last committed lookups of an attempt, so that a Set
// of a key just read (read, then write: a transfer) does not look it up
// again. What it holds was read consistently and is in the read set.
type readCache struct {
	d handle.Handle
	k Value
	f found
}

const readCacheSize = 8

func (tx *Tx) remember(d handle.Handle, k Value, f found) {
	tx.cache[tx.cacheNext%readCacheSize] = readCache{d, k, f}
	tx.cacheNext++
}

// recall fills *f with the cached lookup of k in d, if there is one.
func (tx *Tx) recall(d handle.Handle, k Value, f *found) bool {
	for i := range min(tx.cacheNext, readCacheSize) {
		if c := &tx.cache[i]; c.d == d && c.k == k {
			*f = c.f
			return true
		}
	}
	return false
}

// readStripe reads every committed key and value of stripe s: the keys
// and entries in the stripe's window, then each value in its entry's.
func (d *Dict) readStripe(s int, keys []Value, items []found) ([]Value, []found, error) {
	st := stripeAt(d.p, s)
	a := d.stripeAddr(s)
	for {
		keys, items = keys[:0], items[:0]
		w, err := d.tx.t.ReadBegin(&st.lock, a)
		if err != nil {
			return nil, nil, err
		}
		ferr := d.tx.s.eachEntry(st, peekMode, func(e handle.Handle, p unsafe.Pointer, n int) error {
			k, err := entryKey(p, n)
			if err != nil {
				return err
			}
			keys = append(keys, k)
			items = append(items, found{ok: true, ent: e, ep: p})
			return nil
		})
		if d.tx.t.ReadEnd(&st.lock, a, w) {
			for i := 0; ferr == nil && i < len(items); i++ {
				ferr = d.readEntry(items[i].ent, items[i].ep, &items[i].val)
			}
			return keys, items, d.tx.doom(ferr)
		}
	}
}

// How eachEntry and ownedBy resolve handles.
type resolveMode int

const (
	peekMode   resolveMode = iota // readers: bounds only (see peek)
	strictMode                    // Check: every handle fully, reporting what is wrong
	// freeingMode is strictMode for a finalizer's free phase, which may
	// run again after a crash: a stale block was freed by the earlier run
	// (with everything it owns, listed before it) and is skipped.
	freeingMode
)

// eachEntry calls f for every live entry of a stripe's table.
func (s *Space) eachEntry(st *stripe, mode resolveMode, f func(e handle.Handle, p unsafe.Pointer, n int) error) error {
	th := handle.Handle(st.table.Load())
	if th == handle.Null {
		return nil
	}
	resolve := s.peek
	if mode != peekMode {
		resolve = s.block
	}
	skip := func(err error) bool { return mode == freeingMode && errors.Is(err, handle.ErrStaleHandle) }
	capa := st.cap.Load()
	tp, n, err := resolve(th)
	if skip(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := checkTable(th, capa, n); err != nil {
		return err
	}
	for i := range capa {
		e := load(tp, uintptr(i*8))
		if e == 0 || e == tombstone {
			continue
		}
		p, n, err := resolve(handle.Handle(e))
		if skip(err) {
			continue
		}
		if err != nil {
			return err
		}
		if n < entryHeader {
			return fmt.Errorf("objects: entry %v of %d bytes: %w", handle.Handle(e), n, ErrCorrupt)
		}
		if err := f(handle.Handle(e), p, n); err != nil {
			return err
		}
	}
	return nil
}

// tableView is a stripe's table, as a reader or a committer sees it.
type tableView struct {
	h       handle.Handle
	p       unsafe.Pointer
	capa    uint64
	private bool           // allocated by this commit: written directly
	over    []slotStore    // slots this commit logged stores for (a shared table)
	overIdx map[uint64]int // index into over, once it is long
}

type slotStore struct{ slot, val uint64 }

// get reads slot i, as this commit has changed it so far.
func (t *tableView) get(i uint64) uint64 {
	if t.overIdx != nil {
		if k, ok := t.overIdx[i]; ok {
			return t.over[k].val
		}
	} else {
		for k := len(t.over) - 1; k >= 0; k-- {
			if t.over[k].slot == i {
				return t.over[k].val
			}
		}
	}
	return load(t.p, uintptr(i*8))
}

// probeTable looks k up in table t.
func probeTable(s *Space, t *tableView, k Value, hash uint64, f *found) error {
	free := ^uint64(0)
	i := (hash / Stripes) & (t.capa - 1)
	for range t.capa {
		e := t.get(i)
		if e == 0 {
			if free == ^uint64(0) {
				free = i
			}
			*f = found{slot: free}
			return nil
		}
		if e == tombstone {
			if free == ^uint64(0) {
				free = i
			}
		} else if p, ok, err := s.entryMatch(handle.Handle(e), k, hash); err != nil {
			return err
		} else if ok {
			f.ok, f.ent, f.ep, f.slot = true, handle.Handle(e), p, i
			return nil
		}
		i = (i + 1) & (t.capa - 1)
	}
	*f = found{slot: free}
	return nil
}
