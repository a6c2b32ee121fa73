//go:build linux && (amd64 || arm64)

package objects

// This file owns the Dict type and its API as one transaction sees it:
// Lookup/Get (and the typed getters), Set, Delete, Len, Range, Keys and
// the nested containers (Dict, GetDict). Each combines the transaction's
// own buffered writes (dict_overlay.go) with the committed Dict as of the
// snapshot (dict_read.go); what a commit does to the shared tables is in
// dict_commit.go, and the layout of stripes, tables and entries is drawn
// in layout.go.

import (
	"fmt"
	"unsafe"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/txn"
)

// Dict is a shared hash table, as seen by one transaction. Keys are
// String, Bytes, Int, Bool or None; writers of different keys conflict
// only when one of them inserts or deletes a key of the other's stripe
// (one of 64): overwrites of existing keys never do.
type Dict struct {
	tx  *Tx
	h   handle.Handle
	p   unsafe.Pointer
	err error // set when the Dict could not be resolved
}

// dictAt resolves a Dict for tx.
func (tx *Tx) dictAt(h handle.Handle) (*Dict, error) {
	p, err := tx.s.object(h, KindDict)
	if err != nil {
		return nil, tx.doom(fmt.Errorf("objects: dict %v: %w", h, err))
	}
	d := tx.newDict()
	*d = Dict{tx: tx, h: h, p: p}
	return d, nil
}

// maxDictSlab is how many resolved Dicts a transaction keeps for its next
// attempts.
const maxDictSlab = 64

// newDict is a Dict of tx's slab, for this attempt.
func (tx *Tx) newDict() *Dict {
	if tx.dictUsed == len(tx.dictSlab) {
		tx.dictSlab = append(tx.dictSlab, new(Dict))
	}
	d := tx.dictSlab[tx.dictUsed]
	tx.dictUsed++
	return d
}

// Handle is the Dict's handle.
func (d *Dict) Handle() handle.Handle { return d.h }

// Value is the Dict as a value (to store it in another container).
func (d *Dict) Value() Value { return DictValue(d.h) }

// DictValue is the Value of the Dict at h (for a layer above that keeps
// the handle of a Dict it handed out).
func DictValue(h handle.Handle) Value { return Value{kind: KindDict, n: uint64(h)} }

func stripeOf(hash uint64) int { return int(hash % Stripes) }

func (d *Dict) stripeAddr(s int) txn.Addr { return addr(d.h, uintptr(stripeOffset+s*stripeSize)) }

// lookup finds k as this transaction sees it (its own writes first).
func (d *Dict) lookup(k Value) (Value, bool, error) {
	if d.err != nil {
		return None, false, d.err
	}
	if o := d.tx.dictOverlay(d, false); o != nil {
		if p, ok := o.find(k); ok {
			return p.val, !p.del, nil
		}
	}
	var f found
	err := d.lookupCommitted(k, Hash(k), &f)
	if err == nil && !d.tx.t.ReadOnly() {
		d.tx.remember(d.h, k, f) // only an Update may look the key up again (Set)
	}
	return f.val, f.ok, err
}

// Lookup returns the value under key and whether there is one.
func (d *Dict) Lookup(key any) (Value, bool, error) {
	k, err := KeyOf(key)
	if err != nil {
		return None, false, err
	}
	return d.lookup(k)
}

// LookupKey is Lookup for a key that is a Value already.
func (d *Dict) LookupKey(k Value) (Value, bool, error) {
	if err := checkKey(k); err != nil {
		return None, false, err
	}
	return d.lookup(k)
}

// Get returns the value under key, or an error wrapping ErrNotFound.
func (d *Dict) Get(key any) (Value, error) {
	k, err := KeyOf(key)
	if err != nil {
		return None, err
	}
	v, ok, err := d.lookup(k)
	if err == nil && !ok {
		err = errNoKey(k)
	}
	return v, err
}

// errNoKey is the error of a read of the key k that its Dict has not.
func errNoKey(k Value) error { return fmt.Errorf("objects: key %v: %w", k, ErrNotFound) }

// AtKey names the key under which a value was found in err, an error of
// what was done with the value (one of another kind than asked for).
func AtKey(key any, err error) error {
	if err == nil {
		return nil
	}
	k, kerr := KeyOf(key)
	if kerr != nil {
		return err
	}
	return fmt.Errorf("objects: key %v: %w", k, err)
}

// GetKey is Get for a key that is a Value already (no conversion, and no
// allocation for the key).
func (d *Dict) GetKey(k Value) (Value, error) {
	if err := checkKey(k); err != nil {
		return None, err
	}
	v, ok, err := d.lookup(k)
	if err == nil && !ok {
		err = errNoKey(k)
	}
	return v, err
}

// Has reports whether key is present.
func (d *Dict) Has(key any) (bool, error) {
	_, ok, err := d.Lookup(key)
	return ok, err
}

// GetInt returns the Int under key, or the value of the Counter under it.
func (d *Dict) GetInt(key any) (int64, error) {
	v, err := d.Get(key)
	if err != nil {
		return 0, err
	}
	x, err := d.tx.IntOf(v)
	return x, AtKey(key, err)
}

// GetFloat returns the Float (or Int) under key.
func (d *Dict) GetFloat(key any) (float64, error) {
	v, err := d.Get(key)
	if err != nil {
		return 0, err
	}
	x, err := v.AsFloat()
	return x, AtKey(key, err)
}

// GetString returns the String under key.
func (d *Dict) GetString(key any) (string, error) {
	v, err := d.Get(key)
	if err != nil {
		return "", err
	}
	x, err := v.AsString()
	return x, AtKey(key, err)
}

// GetBytes returns the Bytes under key.
func (d *Dict) GetBytes(key any) ([]byte, error) {
	v, err := d.Get(key)
	if err != nil {
		return nil, err
	}
	x, err := v.AsBytes()
	return x, AtKey(key, err)
}

// GetBool returns the Bool under key.
func (d *Dict) GetBool(key any) (bool, error) {
	v, err := d.Get(key)
	if err != nil {
		return false, err
	}
	x, err := v.AsBool()
	return x, AtKey(key, err)
}

// put buffers key := v (or a delete) and reports whether the key was
// there before.
func (d *Dict) put(k Value, v Value, del bool) (bool, error) {
	if d.err != nil {
		return false, d.err
	}
	tx := d.tx
	if err := tx.write(); err != nil {
		return false, err
	}
	o := tx.dictOverlay(d, true)
	hash := Hash(k)
	pend, inOverlay := o.find(k)
	var f found
	if inOverlay {
		f.val, f.ok = pend.val, !pend.del
	} else if !tx.recall(d.h, k, &f) {
		if err := d.lookupCommitted(k, hash, &f); err != nil {
			return false, err
		}
	}
	had := f.ok
	if del && !had {
		return false, nil
	}
	if err := tx.refSwap(f.val, had, v, !del); err != nil {
		return false, err
	}
	if inOverlay {
		pend.val, pend.del = v, del
	} else {
		// Filled in place: a pending entry is ~100 bytes, copied twice
		// if built first.
		o.pend = append(o.pend, pending{})
		pend = &o.pend[len(o.pend)-1]
		pend.key, pend.hash, pend.val, pend.del, pend.existed, pend.ent, pend.slot = k, hash, v, del, f.ok, f.ent, f.slot
		o.indexLast()
	}
	if !tx.created[d.h] {
		if err := d.lockFor(pend, f.ep); err != nil {
			return false, err
		}
	}
	return had, nil
}

// lockFor asks for the lock that the write p needs at commit (see the
// entry layout in layout.go): an overwrite of a key the committed Dict
// has takes the key's entry's lock, so that writers of different keys of
// one stripe do not conflict; an insert or a delete takes the stripe's.
// A key written twice by an attempt (a delete, then a set) may take both:
// each write takes what its own change needs. ep is p.ent's block when
// the caller has it from the read (nil: resolved here).
func (d *Dict) lockFor(p *pending, ep unsafe.Pointer) error {
	if p.existed && !p.del {
		if ep == nil {
			var err error
			if ep, _, err = d.tx.s.peek(p.ent); err != nil { // found by the read: an entry
				return d.tx.doom(fmt.Errorf("objects: dict %v: entry %v: %w", d.h, p.ent, err))
			}
		}
		return d.tx.t.Lock(entryLock(ep), addr(p.ent, offEntryLock), false)
	}
	s := stripeOf(p.hash)
	return d.tx.t.Lock(&stripeAt(d.p, s).lock, d.stripeAddr(s), false)
}

// directSet is the write that SetLast or DeleteLast made without an
// overlay (at most one an attempt: it is made only when nothing was
// written before) to the committed Dict h (block p), with no reference
// to count: a scalar set over a scalar or over no key, or the delete of
// a key that holds a scalar. pend is the write as an overlay would hold
// it, with where the read (which txn validates at commit) found the key.
// h is Null when there is none.
type directSet struct {
	h    handle.Handle
	p    unsafe.Pointer
	pend pending
}

// prepare turns the direct write into stores at commit (Tx.Prepare), as
// the stripe's commit does an overlay's writes: an existing key's value
// overwritten in place, or a new key or a delete (a table to grow,
// shrink or drop, counts to store).
func (ds *directSet) prepare(tx *Tx) error {
	d := Dict{tx: tx, h: ds.h, p: ds.p}
	pend := [1]*pending{&ds.pend}
	return d.prepareStripe(tx, stripeOf(ds.pend.hash), pend[:])
}

// SetLast is SetScalar as the last operation of the transaction's
// function, which is the root package's single-operation Set: when
// nothing else of the attempt has written, the key holds a scalar or is
// absent, and v is a scalar, it keeps no write overlay (no pending entry
// in a list, nothing to sort, find or clear again) but the one write,
// which the commit makes (directSet.prepare). Anything the attempt does
// with a Dict afterwards first turns it into an ordinary overlay write
// (undirect), so a later operation still sees it; only the speed depends
// on being last.
func (d *Dict) SetLast(k, v Value) error {
	if v.kind.IsContainer() {
		return d.SetKey(k, v)
	}
	return d.last(k, v, false)
}

// DeleteLast is DeleteKey as the last operation of the transaction's
// function (the root package's single-operation Delete), without an
// overlay as SetLast is, when the key holds a scalar.
func (d *Dict) DeleteLast(k Value) error {
	return d.last(k, None, true)
}

// last is SetLast (del false) or DeleteLast (del true) of a scalar v.
func (d *Dict) last(k, v Value, del bool) error {
	tx := d.tx
	// A Dict this attempt made is written too (tx.writer): its writes go
	// to its overlay, never direct.
	if d.err != nil || tx.writer || checkKey(k) != nil {
		return d.overlaid(k, v, del)
	}
	hash := Hash(k)
	var f found
	if !tx.recall(d.h, k, &f) {
		if err := d.lookupCommitted(k, hash, &f); err != nil {
			return err
		}
	}
	if f.ok && f.val.kind.IsContainer() || del && !f.ok {
		tx.remember(d.h, k, f)       // not looked up again
		return d.overlaid(k, v, del) // a reference to drop, or no key to delete: the overlay's work, or error
	}
	if err := tx.write(); err != nil {
		return err
	}
	tx.direct = directSet{h: d.h, p: d.p, pend: pending{key: k, hash: hash, val: v, del: del, existed: f.ok, ent: f.ent, slot: f.slot}}
	return d.lockFor(&tx.direct.pend, f.ep)
}

// overlaid is last's write through the overlay.
func (d *Dict) overlaid(k, v Value, del bool) error {
	if del {
		return d.DeleteKey(k)
	}
	return d.SetScalar(k, v)
}

// undirect turns the attempt's direct write into an overlay write,
// before anything reads or writes a Dict through the overlays. The write
// is moved as it is: its read is in the read set, its lock asked for and
// no reference is to be counted, so nothing is read again (which could
// fail, and leave a read after it without the attempt's own write).
func (tx *Tx) undirect() {
	ds := tx.direct
	tx.direct = directSet{} // dictOverlay below does not come back here
	// Nothing else was written (last's condition), so the overlay is new.
	o := tx.dictOverlay(&Dict{tx: tx, h: ds.h, p: ds.p}, true)
	o.pend = append(o.pend, ds.pend)
	o.indexLast()
}

// Set stores val under key. val may be a Value, a container of this
// transaction (stored by reference: one object under two keys is one
// object), a Go scalar, or a Go map, slice or struct (converted into new
// containers through msgpack).
func (d *Dict) Set(key, val any) error {
	k, err := KeyOf(key)
	if err != nil {
		return err
	}
	return d.SetKey(k, val)
}

// SetKey is Set for a key that is a Value already.
func (d *Dict) SetKey(k Value, val any) error {
	if err := checkKey(k); err != nil {
		return err
	}
	v, err := d.tx.valueOf(val)
	if err != nil {
		return err
	}
	_, err = d.put(k, v, false)
	return err
}

// SetScalar is Set of a scalar Value under a key that is a Value already:
// no conversion, and nothing of the caller's boxed. Containers go through
// Set, which checks that they are of this store.
func (d *Dict) SetScalar(k, v Value) error {
	if err := checkKey(k); err != nil {
		return err
	}
	if v.kind.IsContainer() {
		return fmt.Errorf("objects: SetScalar of a %v: %w", v.kind, ErrTypeMismatch)
	}
	_, err := d.put(k, v, false)
	return err
}

// Delete removes key; it fails with ErrNotFound if key is absent.
func (d *Dict) Delete(key any) error {
	k, err := KeyOf(key)
	if err != nil {
		return err
	}
	return d.DeleteKey(k)
}

// DeleteKey is Delete for a key that is a Value already.
func (d *Dict) DeleteKey(k Value) error {
	if err := checkKey(k); err != nil {
		return err
	}
	had, err := d.put(k, None, true)
	if err == nil && !had {
		err = fmt.Errorf("objects: delete key %v: %w", k, ErrNotFound)
	}
	return err
}

// Len is the number of keys (it reads every stripe).
func (d *Dict) Len() (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	n := 0
	for s := range Stripes {
		st := stripeAt(d.p, s)
		a := d.stripeAddr(s)
		for {
			w, err := d.tx.t.ReadBegin(&st.lock, a)
			if err != nil {
				return 0, err
			}
			c := int(uint32(st.sizes.Load()))
			if d.tx.t.ReadEnd(&st.lock, a, w) {
				n += c
				break
			}
		}
	}
	if o := d.tx.dictOverlay(d, false); o != nil {
		for _, p := range o.pend {
			switch {
			case p.del && p.existed:
				n--
			case !p.del && !p.existed:
				n++
			}
		}
	}
	return n, nil
}

// Range calls fn for every key and value, stripe by stripe, until fn
// returns false. The transaction's own writes are included.
func (d *Dict) Range(fn func(k, v Value) bool) error {
	if d.err != nil {
		return d.err
	}
	o := d.tx.dictOverlay(d, false)
	var items []found
	var keys []Value
	for s := range Stripes {
		var err error
		if keys, items, err = d.readStripe(s, keys[:0], items[:0]); err != nil {
			return err
		}
		for i, k := range keys {
			v := items[i].val
			if o != nil {
				if p, ok := o.find(k); ok {
					if p.del {
						continue
					}
					v = p.val
				}
			}
			if !fn(k, v) {
				return nil
			}
		}
		if o == nil {
			continue
		}
		for _, p := range o.pend {
			if !p.del && !p.existed && stripeOf(p.hash) == s {
				if !fn(p.key, p.val) {
					return nil
				}
			}
		}
	}
	return nil
}

// Keys returns every key.
func (d *Dict) Keys() ([]Value, error) {
	var ks []Value
	err := d.Range(func(k, _ Value) bool { ks = append(ks, k); return true })
	return ks, err
}

// container returns the container of kind k under key, creating an empty
// one if the key is absent.
func (d *Dict) container(key any, k Kind, create func() (Value, error)) (Value, error) {
	kv, err := KeyOf(key)
	if err != nil {
		return None, err
	}
	v, ok, err := d.lookup(kv)
	if err != nil {
		return None, err
	}
	if ok {
		if v.kind != k {
			return None, AtKey(kv, mismatch(v, k))
		}
		return v, nil
	}
	if v, err = create(); err != nil {
		return None, err
	}
	_, err = d.put(kv, v, false)
	return v, err
}

// Dict returns the Dict under key, creating an empty one if key is absent
// (ErrTypeMismatch if key holds something else).
func (d *Dict) Dict(key any) (*Dict, error) {
	v, err := d.container(key, KindDict, func() (Value, error) {
		n, err := d.tx.NewDict()
		if err != nil {
			return None, err
		}
		return n.Value(), nil
	})
	if err != nil {
		return nil, err
	}
	return d.tx.dictAt(v.hd())
}

// GetDict returns the Dict under key (ErrNotFound, ErrTypeMismatch).
func (d *Dict) GetDict(key any) (*Dict, error) {
	v, err := d.Get(key)
	if err != nil {
		return nil, err
	}
	if v.kind != KindDict {
		return nil, AtKey(key, mismatch(v, KindDict))
	}
	return d.tx.dictAt(v.hd())
}
