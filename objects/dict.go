//go:build linux && (amd64 || arm64)

package objects

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"unsafe"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/reclaim"
	"github.com/shmstore/shmstore/txn"
)

// Dict is a shared hash table, as seen by one transaction. Keys are
// String, Bytes, Int, Bool or None; writers of keys in different stripes
// never conflict.
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
	return &Dict{tx: tx, h: h, p: p}, nil
}

// Handle is the Dict's handle.
func (d *Dict) Handle() handle.Handle { return d.h }

// Value is the Dict as a value (to store it in another container).
func (d *Dict) Value() Value { return Value{kind: KindDict, h: d.h} }

// pending is one buffered write of a key.
type pending struct {
	key     Value
	hash    uint64
	val     Value
	del     bool
	existed bool // the key was in the committed Dict when first written

	// Where the committed entry was found (ent Null: absent). The lookup
	// is in the read set, so at commit, with the stripe validated and
	// its table unchanged, it is still there.
	ent  handle.Handle
	slot uint64
}

// dictOverlay is a transaction's buffered writes to one Dict.
type dictOverlay struct {
	d     *Dict
	pend  []pending
	index map[string]int // keyID -> pend index, used once pend is long
}

// indexFrom is the length of pend from which index is kept.
const indexFrom = 9

func (o *dictOverlay) find(k Value) (*pending, bool) {
	if len(o.pend) >= indexFrom {
		if i, ok := o.index[keyID(k)]; ok {
			return &o.pend[i], true
		}
		return nil, false
	}
	for i := range o.pend {
		if o.pend[i].key == k {
			return &o.pend[i], true
		}
	}
	return nil, false
}

func (o *dictOverlay) add(p pending) {
	o.pend = append(o.pend, p)
	switch n := len(o.pend); {
	case n == indexFrom:
		if o.index == nil {
			o.index = make(map[string]int, 2*indexFrom)
		}
		for i := range o.pend {
			o.index[keyID(o.pend[i].key)] = i
		}
	case n > indexFrom:
		o.index[keyID(p.key)] = n - 1
	}
}

// overlayIndexFrom is the number of Dicts written from which their
// overlays are found through a map.
const overlayIndexFrom = 16

func (tx *Tx) dictOverlay(d *Dict, create bool) *dictOverlay {
	if len(tx.dictList) >= overlayIndexFrom {
		if o, ok := tx.dicts[d.h]; ok {
			return o
		}
	} else {
		for _, o := range tx.dictList { // few Dicts per transaction: searched, not hashed
			if o.d.h == d.h {
				return o
			}
		}
	}
	if !create {
		return nil
	}
	var o *dictOverlay
	if n := len(tx.freeDicts); n > 0 { // reuse an overlay (and its slices) of an earlier attempt
		o, tx.freeDicts = tx.freeDicts[n-1], tx.freeDicts[:n-1]
		o.d = d
	} else {
		o = &dictOverlay{d: d}
	}
	tx.dictList = append(tx.dictList, o)
	switch n := len(tx.dictList); {
	case n == overlayIndexFrom:
		tx.dicts = make(map[handle.Handle]*dictOverlay, 2*n)
		for _, o := range tx.dictList {
			tx.dicts[o.d.h] = o
		}
	case n > overlayIndexFrom:
		tx.dicts[d.h] = o
	}
	return o
}

func stripeOf(hash uint64) int { return int(hash % Stripes) }

func (d *Dict) stripeAddr(s int) txn.Addr { return addr(d.h, uintptr(stripeOffset+s*stripeSize)) }

// found is what a committed lookup found.
type found struct {
	ok   bool
	val  Value
	ent  handle.Handle
	slot uint64
}

// lookupCommitted finds k in the committed Dict (as of the snapshot),
// recording the stripe in the read set.
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
		ferr := d.tx.s.probe(st, k, hash, true, f)
		if d.tx.t.ReadEnd(&st.lock, a, w) {
			if ferr == nil && f.ok {
				ferr = d.tx.s.fill(&f.val)
			}
			return d.tx.doom(ferr) // found in a consistent read: not the caller's doing
		}
	}
}

// probe looks k up in a stripe's table (slot: where it is, or where it
// would go). Reads may be torn unless the stripe is locked or the caller
// validates afterwards; probe never follows more than cap slots and
// resolves every handle.
func (s *Space) probe(st *stripe, k Value, hash uint64, decode bool, f *found) error {
	t := tableView{h: handle.Handle(st.table.Load()), capa: st.cap.Load()}
	if t.h == handle.Null {
		*f = found{slot: ^uint64(0)}
		return nil
	}
	var err error
	if t.p, err = s.table(t.h, t.capa); err != nil {
		return err
	}
	return probeTable(s, &t, k, hash, decode, f)
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

// entryMatch reports whether entry e holds key k (and, with decode, puts
// its value in *v).
func (s *Space) entryMatch(e handle.Handle, k Value, hash uint64, decode bool, v *Value) (bool, error) {
	p, n, err := s.peek(e)
	if err != nil {
		return false, err
	}
	if n < entryHeader {
		return false, fmt.Errorf("objects: entry %v of %d bytes: %w", e, n, ErrCorrupt)
	}
	if load(p, 0) != hash {
		return false, nil
	}
	kk, kb, err := entryKeyBytes(p, n)
	if err != nil {
		return false, fmt.Errorf("objects: entry %v: %w", e, err)
	}
	if kk != k.kind {
		return false, nil
	}
	switch kk {
	case KindString, KindBytes:
		if string(kb) != k.s { // compared in place: no copy
			return false, nil
		}
	case KindInt, KindBool:
		if binary.LittleEndian.Uint64(kb) != k.n {
			return false, nil
		}
	}
	if !decode {
		return true, nil
	}
	*v, err = s.decode(load(p, 8)&0xff, load(p, offEntryVal))
	return true, err
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

func (tx *Tx) recall(d handle.Handle, k Value) (found, bool) {
	for i := range min(tx.cacheNext, readCacheSize) {
		if c := &tx.cache[i]; c.d == d && c.k == k {
			return c.f, true
		}
	}
	return found{}, false
}

// Lookup returns the value under key and whether there is one.
func (d *Dict) Lookup(key any) (Value, bool, error) {
	k, err := KeyOf(key)
	if err != nil {
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
		err = fmt.Errorf("objects: key %v: %w", k, ErrNotFound)
	}
	return v, err
}

// GetKey is Get for a key that is a Value already (no conversion, and no
// allocation for the key).
func (d *Dict) GetKey(k Value) (Value, error) {
	if err := checkKey(k); err != nil {
		return None, err
	}
	v, ok, err := d.lookup(k)
	if err == nil && !ok {
		err = fmt.Errorf("objects: key %v: %w", k, ErrNotFound)
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
	return d.tx.IntOf(v)
}

// GetFloat returns the Float (or Int) under key.
func (d *Dict) GetFloat(key any) (float64, error) {
	v, err := d.Get(key)
	if err != nil {
		return 0, err
	}
	return v.AsFloat()
}

// GetString returns the String under key.
func (d *Dict) GetString(key any) (string, error) {
	v, err := d.Get(key)
	if err != nil {
		return "", err
	}
	return v.AsString()
}

// GetBytes returns the Bytes under key.
func (d *Dict) GetBytes(key any) ([]byte, error) {
	v, err := d.Get(key)
	if err != nil {
		return nil, err
	}
	return v.AsBytes()
}

// GetBool returns the Bool under key.
func (d *Dict) GetBool(key any) (bool, error) {
	v, err := d.Get(key)
	if err != nil {
		return false, err
	}
	return v.AsBool()
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
	var old Value
	var had, existed bool
	var at found
	if p, ok := o.find(k); ok {
		old, had, existed = p.val, !p.del, p.existed
	} else {
		f, ok := tx.recall(d.h, k)
		if !ok {
			if err := d.lookupCommitted(k, hash, &f); err != nil {
				return false, err
			}
		}
		old, had, existed, at = f.val, f.ok, f.ok, f
	}
	if del && !had {
		return false, nil
	}
	if err := tx.refSwap(old, had, v, !del); err != nil {
		return false, err
	}
	if p, ok := o.find(k); ok {
		p.val, p.del = v, del
	} else {
		o.add(pending{key: k, hash: hash, val: v, del: del, existed: existed, ent: at.ent, slot: at.slot})
	}
	s := stripeOf(hash)
	if !tx.created[d.h] {
		if err := tx.t.Lock(&stripeAt(d.p, s).lock, d.stripeAddr(s), false); err != nil {
			return false, err
		}
	}
	return had, nil
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
	v, err := d.tx.valueOf(val)
	if err != nil {
		return err
	}
	_, err = d.put(k, v, false)
	return err
}

// Delete removes key; it fails with ErrNotFound if key is absent.
func (d *Dict) Delete(key any) error {
	k, err := KeyOf(key)
	if err != nil {
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

// readStripe reads every committed key and value of stripe s.
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
			meta := load(p, 8)
			v, err := d.tx.s.decode(meta&0xff, load(p, offEntryVal))
			if err != nil {
				return err
			}
			keys = append(keys, k)
			items = append(items, found{ok: true, val: v, ent: e})
			return nil
		})
		if d.tx.t.ReadEnd(&st.lock, a, w) {
			for i := 0; ferr == nil && i < len(items); i++ {
				ferr = d.tx.s.fill(&items[i].val)
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
			return None, fmt.Errorf("objects: key %v: %w", kv, mismatch(v, k))
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
	return d.tx.dictAt(v.h)
}

// GetDict returns the Dict under key (ErrNotFound, ErrTypeMismatch).
func (d *Dict) GetDict(key any) (*Dict, error) {
	v, err := d.Get(key)
	if err != nil {
		return nil, err
	}
	if v.kind != KindDict {
		return nil, mismatch(v, KindDict)
	}
	return d.tx.dictAt(v.h)
}

// prepare turns the overlay into stores, stripe by stripe (txn holds
// every written stripe's lock).
func (o *dictOverlay) prepare(tx *Tx) error {
	ps := tx.scratch[:0]
	for i := range o.pend {
		ps = append(ps, &o.pend[i])
	}
	slices.SortStableFunc(ps, func(a, b *pending) int { return stripeOf(a.hash) - stripeOf(b.hash) })
	tx.scratch = ps
	for i := 0; i < len(ps); {
		j := i + 1
		for j < len(ps) && stripeOf(ps[j].hash) == stripeOf(ps[i].hash) {
			j++
		}
		if err := o.prepareStripe(tx, stripeOf(ps[i].hash), ps[i:j]); err != nil {
			return err
		}
		i = j
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

// set stores v into slot i: directly in a private table, else through the
// redo log (and remembered, so that later probes of this commit see it).
func (t *tableView) set(tx *Tx, i, v uint64) error {
	if t.private {
		*word(t.p, uintptr(i*8)) = v
		return nil
	}
	t.over = append(t.over, slotStore{i, v})
	if t.overIdx == nil && len(t.over) > 16 {
		t.overIdx = make(map[uint64]int, 64)
		for k, o := range t.over {
			t.overIdx[o.slot] = k
		}
	} else if t.overIdx != nil {
		t.overIdx[i] = len(t.over) - 1
	}
	return tx.t.Store(word(t.p, uintptr(i*8)), addr(t.h, uintptr(i*8)), v)
}

func (tx *Tx) newTable(capa uint64) (tableView, error) {
	h, b, err := tx.t.Alloc(int(capa * 8))
	if err != nil {
		return tableView{}, err
	}
	clear(b)
	return tableView{h: h, p: unsafe.Pointer(&b[0]), capa: capa, private: true}, nil
}

func tableCap(keys uint64) uint64 {
	c := uint64(minTableCap)
	if keys*2 > c {
		c = 1 << bits.Len64(keys*2-1)
	}
	return c
}

func (o *dictOverlay) prepareStripe(tx *Tx, s int, pend []*pending) error {
	d := o.d
	st := stripeAt(d.p, s)
	private := tx.created[d.h]
	sizes := st.sizes.Load()
	count, used := sizes&0xffffffff, sizes>>32
	old := tableView{h: handle.Handle(st.table.Load()), capa: st.cap.Load()}
	if old.h != handle.Null {
		var err error
		if old.p, err = tx.s.table(old.h, old.capa); err != nil {
			return fmt.Errorf("objects: dict %v stripe %d: %w", d.h, s, err)
		}
	}
	sets := uint64(0) // keys this commit adds (an existing key is overwritten in place)
	for _, p := range pend {
		if !p.del && !p.existed {
			sets++
		}
	}
	t := old
	if old.h == handle.Null || (used+sets)*4 > old.capa*3 {
		var err error
		if t, err = tx.rehash(old, tableCap(count+sets)); err != nil {
			return err
		}
		used = count
	}
	for _, p := range pend {
		var f found
		var err error
		if p.ent != handle.Null && t.h == old.h {
			f = found{ok: true, ent: p.ent, slot: p.slot} // found by the validated read: no probe
		} else if err = probeTable(tx.s, &t, p.key, p.hash, false, &f); err != nil {
			return err
		}
		if f.ok && !p.del {
			// An existing key: its entry's value changes in place (under
			// the stripe's lock, through the redo log). Readers see the
			// stripe's version move and read again.
			if err := tx.overwrite(f.ent, p.val); err != nil {
				return err
			}
			continue
		}
		if f.ok {
			if err := tx.retireEntry(f.ent); err != nil {
				return err
			}
		}
		switch {
		case p.del && f.ok:
			if err := t.set(tx, f.slot, tombstone); err != nil {
				return err
			}
			count--
		case !p.del:
			e, err := tx.newEntry(p)
			if err != nil {
				return err
			}
			if f.slot == ^uint64(0) {
				return fmt.Errorf("objects: dict %v stripe %d: table full: %w", d.h, s, ErrCorrupt)
			}
			if !f.ok {
				if t.get(f.slot) == 0 {
					used++
				}
				count++
			}
			if err := t.set(tx, f.slot, uint64(e)); err != nil {
				return err
			}
		}
	}
	// Shrink a table that deletes left mostly empty; drop an empty one.
	if count == 0 && t.h != handle.Null {
		if t.private {
			tx.t.Retire(t.h, reclaim.KindBlock) // allocated by this commit, never linked
		}
		t = tableView{}
		used = 0
	} else if t.capa > minTableCap && count*8 < t.capa {
		var err error
		if t, err = tx.rehash(t, tableCap(count)); err != nil {
			return err
		}
		used = count
	}
	if t.h != old.h {
		if old.h != handle.Null {
			tx.t.Retire(old.h, reclaim.KindBlock)
		}
		if err := tx.storeWord(private, d.h, d.p, uintptr(stripeOffset+s*stripeSize+offTable), uint64(t.h)); err != nil {
			return err
		}
		if err := tx.storeWord(private, d.h, d.p, uintptr(stripeOffset+s*stripeSize+offCap), t.capa); err != nil {
			return err
		}
	}
	return tx.storeWord(private, d.h, d.p, uintptr(stripeOffset+s*stripeSize+offSizes), count|used<<32)
}

// rehash copies the live entries of t into a new private table of capa
// slots. A private t (made by this commit) is retired at once.
func (tx *Tx) rehash(t tableView, capa uint64) (tableView, error) {
	n, err := tx.newTable(capa)
	if err != nil {
		return n, err
	}
	if t.h == handle.Null {
		return n, nil
	}
	for i := range t.capa {
		e := t.get(i)
		if e == 0 || e == tombstone {
			continue
		}
		ep, _, err := tx.s.block(handle.Handle(e))
		if err != nil {
			return n, fmt.Errorf("objects: rehash: %w", err)
		}
		j := (load(ep, 0) / Stripes) & (capa - 1)
		for load(n.p, uintptr(j*8)) != 0 {
			j = (j + 1) & (capa - 1)
		}
		*word(n.p, uintptr(j*8)) = e
	}
	if t.private {
		tx.t.Retire(t.h, reclaim.KindBlock)
	}
	return n, nil
}

// probeTable looks k up in table t.
func probeTable(s *Space, t *tableView, k Value, hash uint64, decode bool, f *found) error {
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
		} else if ok, err := s.entryMatch(handle.Handle(e), k, hash, decode, &f.val); err != nil {
			return err
		} else if ok {
			f.ok, f.ent, f.slot = true, handle.Handle(e), i
			return nil
		}
		i = (i + 1) & (t.capa - 1)
	}
	*f = found{slot: free}
	return nil
}

// newEntry allocates the immutable entry for a pending set.
func (tx *Tx) newEntry(p *pending) (handle.Handle, error) {
	var kb []byte
	var ib [8]byte
	switch p.key.kind {
	case KindString, KindBytes:
		kb = unsafe.Slice(unsafe.StringData(p.key.s), len(p.key.s))
	case KindInt, KindBool:
		binary.LittleEndian.PutUint64(ib[:], p.key.n)
		kb = ib[:]
	}
	vk, vw, err := tx.encode(p.val)
	if err != nil {
		return handle.Null, err
	}
	h, b, err := tx.t.Alloc(entryHeader + len(kb))
	if err != nil {
		return handle.Null, err
	}
	ep := unsafe.Pointer(&b[0])
	*word(ep, 0) = p.hash
	*word(ep, 8) = vk | uint64(p.key.kind)<<8 | uint64(len(kb))<<32
	*word(ep, offEntryVal) = vw
	copy(b[entryHeader:], kb)
	return h, nil
}

// overwrite stores a new value into an existing entry; the old value's
// blob (if any) is retired.
func (tx *Tx) overwrite(e handle.Handle, v Value) error {
	ep, n, err := tx.s.block(e)
	if err != nil || n < entryHeader {
		return fmt.Errorf("objects: overwrite entry %v: %v: %w", e, err, ErrCorrupt)
	}
	vk, vw, err := tx.encode(v)
	if err != nil {
		return err
	}
	meta := load(ep, 8)
	tx.retireValue(meta&0xff, load(ep, offEntryVal))
	if m := meta&^0xff | vk; m != meta {
		if err := tx.t.Store(word(ep, 8), addr(e, 8), m); err != nil {
			return err
		}
	}
	return tx.t.Store(word(ep, offEntryVal), addr(e, offEntryVal), vw)
}

// retireEntry retires an entry unlinked by this commit, and its value's
// blob.
func (tx *Tx) retireEntry(e handle.Handle) error {
	p, _, err := tx.s.block(e)
	if err != nil {
		return fmt.Errorf("objects: retire entry: %w", err)
	}
	tx.retireValue(load(p, 8)&0xff, load(p, offEntryVal))
	tx.t.Retire(e, reclaim.KindBlock)
	return nil
}
