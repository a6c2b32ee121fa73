//go:build linux && (amd64 || arm64)

package objects

import (
	"fmt"
	"math"
	"sync/atomic"
	"unsafe"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/reclaim"
	"github.com/shmstore/shmstore/txn"
)

// Tx is a transaction over shared objects. It belongs to the goroutine
// running the transaction function and is valid only inside it.
type Tx struct {
	s *Space
	t *txn.Tx

	// gen names the attempt running now: a new value when an attempt
	// starts and again when its function returns, so that what an attempt
	// handed out can tell it is used after its end (package shmstore
	// keeps it beside every object and value it hands out). The top bits
	// are unique to this Tx within the process, so a value from another
	// Tx never matches either. Written and read only by the goroutine
	// that runs the transaction.
	gen uint64

	// Outer is free for the layer above (package shmstore keeps its own
	// Tx here, so that a transaction allocates nothing for it).
	Outer any

	writer   bool                           // registered as t's Writer this attempt
	dictList []*dictOverlay                 // pending writes per Dict, in first-write order
	dicts    map[handle.Handle]*dictOverlay // the same by handle, once there are many
	lists    map[handle.Handle]*listOverlay
	listList []*listOverlay
	recs     map[handle.Handle]*recOverlay
	recList  []*recOverlay
	counters map[handle.Handle]*counterOverlay
	ctrList  []*counterOverlay
	rc       map[handle.Handle]int64 // reference-count changes of containers
	rcList   []handle.Handle
	created  map[handle.Handle]bool // containers this attempt allocated
	clears   []cellRef              // cells a finalizer's step overwrites with None
	direct   directSet              // the write made without an overlay (Dict.SetLast, DeleteLast), if any
	root     *Dict                  // the root, resolved once (it never moves)

	cache     [readCacheSize]readCache // the attempt's last committed lookups
	cacheNext int

	freeDicts []*dictOverlay    // overlays of earlier attempts, for reuse
	freeCtrs  []*counterOverlay // the same for Counters
	scratch   []*pending        // Prepare's sort buffer
	slotBuf   []slotStore       // a stripe's logged table slots, at Prepare (tableView.over)

	// dictSlab holds the Dicts this attempt resolved (dictAt), the first
	// dictUsed of them, and keeps them for the next attempts: a Dict is
	// good only in its attempt (the layers that hand one out, the root
	// package and the C ABI, refuse it afterwards), so resolving one
	// allocates nothing once the slab has grown.
	dictSlab []*Dict
	dictUsed int
}

func (tx *Tx) reset() {
	if tx.cacheNext > 0 {
		clear(tx.cache[:min(tx.cacheNext, readCacheSize)]) // only what was used: the whole is ~1 KiB
		tx.cacheNext = 0
	}
	if tx.dictUsed > 0 {
		if tx.dictUsed > maxDictSlab {
			tx.dictSlab = nil // a big attempt's: not kept for every small one after
		}
		tx.dictUsed = 0
	}
	if !tx.writer && len(tx.created) == 0 {
		return // a read-only attempt buffered nothing
	}
	tx.writer = false
	tx.direct = directSet{}
	if !tx.buffered() {
		return // an attempt whose one write was direct: 6% of a Set
	}
	if len(tx.dictList) >= overlayIndexFrom {
		tx.dicts = nil
	}
	for _, o := range tx.dictList {
		clear(o.pend)
		idx := o.index
		if len(idx) > 64 {
			idx = nil // a big transaction's index: clearing it would cost every small one after
		} else if len(idx) > 0 {
			clear(idx)
		}
		*o = dictOverlay{pend: o.pend[:0], index: idx}
		if len(tx.freeDicts) < 16 {
			tx.freeDicts = append(tx.freeDicts, o)
		}
	}
	// dictList and scratch point at the overlays and their pending
	// entries, emptied above. With at most 16 overlays what they pin is
	// bounded (and mostly kept for reuse in freeDicts anyway), and
	// clearing the lists cost a Set ~5%; beyond that they are cleared,
	// so that the overlays not kept, and their arrays, can be collected.
	if len(tx.dictList) > 16 {
		clear(tx.dictList)
		clear(tx.scratch)
	}
	tx.dictList = tx.dictList[:0]
	clearMap(tx.lists)
	clear(tx.listList)
	tx.listList = tx.listList[:0]
	clearMap(tx.recs)
	clear(tx.recList)
	tx.recList = tx.recList[:0]
	clearMap(tx.counters)
	for _, o := range tx.ctrList {
		*o = counterOverlay{}
		if len(tx.freeCtrs) < 16 {
			tx.freeCtrs = append(tx.freeCtrs, o)
		}
	}
	clear(tx.ctrList)
	tx.ctrList = tx.ctrList[:0]
	clearMap(tx.rc)
	tx.rcList = tx.rcList[:0]
	clearMap(tx.created)
	clear(tx.clears)
	tx.clears = tx.clears[:0]
}

// buffered reports whether the attempt keeps a write beyond its direct
// one (SetLast's, DeleteLast's): an overlay, a reference-count change, a
// created container or a finalizer's clear. Each map of Tx gains a key
// only with an element of its list (created's go to rcList too), so the
// lists tell.
func (tx *Tx) buffered() bool {
	return len(tx.dictList)|len(tx.listList)|len(tx.recList)|len(tx.ctrList)|len(tx.rcList)|len(tx.clears) != 0
}

// clearMap empties m; an empty map is left alone (clearing one costs in
// proportion to its capacity, which a big transaction may have grown).
func clearMap[K comparable, V any](m map[K]V) {
	if len(m) > 0 {
		clear(m)
	}
}

// Space is the object space the transaction runs in.
func (tx *Tx) Space() *Space { return tx.s }

// Gen names the attempt running now (see Tx.gen); it changes when the
// attempt ends. Package shmstore compares it with the one it stamped on
// an object to refuse use after the transaction.
func (tx *Tx) Gen() uint64 { return tx.gen }

// genStride separates the gens of different Txs of a process: each Tx
// counts its attempts from its own multiple of it (2^40 attempts each).
const genStride = 1 << 40

// txSeq numbers the Txs of this process (for gen).
var txSeq atomic.Uint64

// doom marks the attempt failed by err (see txn.Tx.Doom) and returns it:
// for reads that failed for a reason other than the caller's input.
func (tx *Tx) doom(err error) error { return tx.t.Doom(err) }

// ReadOnly reports whether the transaction is read-only (View).
func (tx *Tx) ReadOnly() bool { return tx.t.ReadOnly() }

// Root is the store's root Dict.
func (tx *Tx) Root() *Dict {
	if tx.root != nil {
		return tx.root
	}
	d, err := tx.dictAt(tx.s.root)
	if err != nil {
		// The root is made at Open and never unlinked: a failure here is
		// a damaged store, which every operation on d reports.
		return &Dict{tx: tx, h: tx.s.root, err: tx.doom(err)}
	}
	tx.root = &Dict{tx: tx, h: d.h, p: d.p} // kept across transactions (the root never moves): not of the slab
	return tx.root
}

// write registers the transaction as a writer on its first write.
func (tx *Tx) write() error {
	if tx.t.ReadOnly() {
		return fmt.Errorf("objects: %w", txn.ErrReadOnly)
	}
	if !tx.writer {
		if err := tx.t.AddWriter(tx); err != nil {
			return err
		}
		tx.writer = true
	}
	return nil
}

// lockObject asks for a container's header lock at commit.
func (tx *Tx) lockObject(h handle.Handle, p unsafe.Pointer, rcOnly bool) error {
	if tx.created[h] {
		return nil // private until commit: nobody else can reach it
	}
	return tx.t.Lock(&hdrAt(p).lock, addr(h, offLock), rcOnly)
}

// refChange records that a container gains (+1) or loses (-1) a
// reference; its header is locked at commit to change the count.
func (tx *Tx) refChange(v Value, delta int64) error {
	if delta < 0 {
		return tx.refSwap(v, true, None, false)
	}
	return tx.refSwap(None, false, v, true)
}

// refSwap records a reference dropped from old (if drop) and one added to
// v (if add), both or neither: everything that can fail (resolving the
// objects) happens before anything is recorded, so an error leaves the
// transaction as it was.
func (tx *Tx) refSwap(old Value, drop bool, v Value, add bool) error {
	var po, pv unsafe.Pointer
	var err error
	if drop && old.kind.IsContainer() {
		if po, err = tx.s.object(old.hd(), old.kind); err != nil {
			return err
		}
	}
	if add && v.kind.IsContainer() {
		if pv, err = tx.s.object(v.hd(), v.kind); err != nil {
			return err
		}
	}
	if tx.t.ReadOnly() {
		return fmt.Errorf("objects: %w", txn.ErrReadOnly)
	}
	if po != nil {
		tx.recordRef(old.hd(), po, -1)
	}
	if pv != nil {
		tx.recordRef(v.hd(), pv, +1)
	}
	return nil
}

// recordRef records a reference-count change of the container at h.
func (tx *Tx) recordRef(h handle.Handle, p unsafe.Pointer, delta int64) {
	_ = tx.lockObject(h, p, true) // fails only read-only or committing, checked by the callers
	if tx.rc == nil {
		tx.rc = map[handle.Handle]int64{}
	}
	if _, ok := tx.rc[h]; !ok {
		tx.rcList = append(tx.rcList, h)
	}
	tx.rc[h] += delta
}

// newObject allocates a container for this transaction.
func (tx *Tx) newObject(k Kind, n int) (handle.Handle, unsafe.Pointer, error) {
	if err := tx.write(); err != nil {
		return handle.Null, nil, err
	}
	h, p, err := tx.s.allocObject(tx.t.Heap(), k, n)
	if err != nil {
		return handle.Null, nil, err
	}
	if tx.created == nil {
		tx.created = map[handle.Handle]bool{}
	}
	tx.created[h] = true
	tx.rcList = append(tx.rcList, h) // so that Prepare sees it even if it is never linked
	if tx.rc == nil {
		tx.rc = map[handle.Handle]int64{}
	}
	tx.rc[h] += 0
	return h, p, nil
}

// NewDict makes an empty Dict. It lives only if the transaction links it
// into a container (Set, Append...) before it commits.
func (tx *Tx) NewDict() (*Dict, error) {
	h, p, err := tx.newObject(KindDict, dictSize)
	if err != nil {
		return nil, err
	}
	d := tx.newDict()
	*d = Dict{tx: tx, h: h, p: p}
	return d, nil
}

// Prepare turns the transaction's overlays into word stores (txn.Writer):
// Dicts, Lists, Records, Counters, then reference counts. It runs with
// every lock held.
func (tx *Tx) Prepare(t *txn.Tx) error {
	if tx.direct.h != handle.Null {
		if err := tx.direct.prepare(tx); err != nil {
			return err
		}
		if !tx.buffered() {
			return nil // a Set's or Delete's one write
		}
	}
	for _, o := range tx.dictList {
		if err := o.prepare(tx); err != nil {
			return err
		}
	}
	for _, o := range tx.listList {
		if err := o.prepare(tx); err != nil {
			return err
		}
	}
	for _, o := range tx.recList {
		if err := o.prepare(tx); err != nil {
			return err
		}
	}
	for _, o := range tx.ctrList {
		if err := o.prepare(tx); err != nil {
			return err
		}
	}
	if err := tx.prepareClears(); err != nil {
		return err
	}
	return tx.prepareRC()
}

// prepareRC stores each changed reference count. A count that reaches zero
// unlinks its object, which is retired (freed after every transaction that
// could see it ended, its children released in turn). A created object
// that was never linked is retired too.
func (tx *Tx) prepareRC() error {
	for _, h := range tx.rcList {
		delta := tx.rc[h]
		created := tx.created[h]
		if delta == 0 && !created {
			continue
		}
		p, _, err := tx.s.block(h)
		if err != nil {
			return fmt.Errorf("objects: reference count of %v: %w", h, err)
		}
		hd := hdrAt(p)
		cur := hd.rc.Load()
		if cur == 0 && !created {
			// Unlinked, yet the reads validated: the handle did not come
			// from this transaction's reads but from an earlier one (a
			// Value kept across transactions). Retrying cannot help.
			return fmt.Errorf("objects: %v was unlinked before this transaction: %w", h, handle.ErrStaleHandle)
		}
		n := int64(cur) + delta
		if n < 0 || cur > math.MaxInt64 {
			return fmt.Errorf("objects: reference count of %v would be %d: %w", h, n, ErrCorrupt)
		}
		if created {
			hd.rc.Store(uint64(n))
		} else if err := tx.t.Store((*uint64)(unsafe.Pointer(&hd.rc)), addr(h, offRC), uint64(n)); err != nil {
			return err
		}
		if n == 0 {
			tx.t.Retire(h, retireObject)
		}
	}
	return nil
}

// storeWord stores v at p (off bytes into block h): directly if the block
// is private to this transaction, else through the redo log.
func (tx *Tx) storeWord(private bool, h handle.Handle, p unsafe.Pointer, off uintptr, v uint64) error {
	w := word(p, off)
	if private {
		*w = v
		return nil
	}
	return tx.t.Store(w, addr(h, off), v)
}

// encode turns a value into the (kind, word) a cell or entry stores,
// allocating a blob for String and Bytes.
func (tx *Tx) encode(v Value) (uint64, uint64, error) {
	switch v.kind {
	case KindString, KindBytes:
		if len(v.s) > tx.s.MaxValue() {
			return 0, 0, tx.s.tooLarge(v)
		}
		h, b, err := tx.t.Alloc(blobHeader + max(len(v.s), 1))
		if err != nil {
			return 0, 0, err
		}
		*(*uint64)(unsafe.Pointer(&b[0])) = uint64(len(v.s))
		copy(b[blobHeader:], v.s)
		return uint64(v.kind), uint64(h), nil
	}
	if v.kind.IsContainer() {
		return uint64(v.kind), uint64(v.hd()), nil
	}
	return uint64(v.kind), v.n, nil
}

// tooLarge is the error for a String or Bytes value larger than MaxValue.
func (s *Space) tooLarge(v Value) error {
	return fmt.Errorf("objects: a %v value of %d bytes is larger than the largest this store holds, %d bytes "+
		"(its region size, %d bytes, less the region's metadata and the value's %d-byte header); "+
		"a store created with a larger region size holds larger values (Options.RegionSize, shmctl create --region-size): %w",
		v.kind, len(v.s), s.MaxValue(), s.rsize, blobHeader, txn.ErrTooLarge)
}

// encodeReplacing is encode for a value that replaces the one a cell or
// entry holds (kind, w), whose blob this commit retires. A blob no larger
// than the retired one frees as much as it takes: it may use the part of
// the store's reserve kept for such replacements (alloc.UseReplacement),
// so that overwriting a value with a smaller one commits even when the
// store is full.
func (tx *Tx) encodeReplacing(v Value, kind, w uint64) (uint64, uint64, error) {
	if (v.kind == KindString || v.kind == KindBytes) && (Kind(kind) == KindString || Kind(kind) == KindBytes) {
		if _, n, err := tx.s.block(handle.Handle(w)); err == nil && blobHeader+max(len(v.s), 1) <= n {
			h := tx.t.Heap()
			defer h.Using(h.Using(alloc.UseReplacement))
		}
	}
	return tx.encode(v)
}

// decode reads back what encode stored. A String or Bytes value comes
// back unfilled (its blob's handle in h): decode runs inside a read
// window, where the word may be torn, and a blob is copied only once the
// read held (fill).
func (s *Space) decode(kind, w uint64) (Value, error) {
	k := Kind(kind)
	switch {
	case k == KindString || k == KindBytes:
		return Value{kind: k, n: w}, nil
	case k.IsContainer():
		return Value{kind: k, n: w}, nil
	case k <= KindFloat:
		return Value{kind: k, n: w}, nil
	}
	return None, fmt.Errorf("objects: value of kind %d: %w", kind, ErrCorrupt)
}

// fill copies an unfilled String or Bytes value's blob, after the read
// that found it was validated: the blob is then live (reclaim keeps it
// for this transaction) and is resolved strictly, so its length is
// bounded by its block.
func (s *Space) fill(v *Value) error {
	if (v.kind != KindString && v.kind != KindBytes) || v.hd() == handle.Null {
		return nil
	}
	str, err := s.readBlob(v.hd())
	if err != nil {
		return err
	}
	v.s, v.n = str, 0 // read: no blob left to read
	return nil
}

// retireValue retires the blob a stored value owns (String, Bytes).
func (tx *Tx) retireValue(kind, w uint64) {
	if k := Kind(kind); k == KindString || k == KindBytes {
		tx.t.Retire(handle.Handle(w), reclaim.KindBlock)
	}
}

// valueOf converts what a caller wants to store: a Value, a container of
// this transaction, a Go scalar, or (through msgpack) a Go map, slice or
// struct, which becomes new containers.
func (tx *Tx) valueOf(x any) (Value, error) {
	switch x := x.(type) {
	case *Dict:
		return x.Value(), nil
	case *List:
		return x.Value(), nil
	case *Record:
		return x.Value(), nil
	case *Counter:
		return x.Value(), nil
	}
	if v, err := ScalarOf(x); err == nil {
		if v.kind.IsContainer() {
			if _, err := tx.s.object(v.hd(), v.kind); err != nil {
				return None, err
			}
		}
		return v, nil
	}
	return tx.convert(x)
}

// DictOf opens a Dict value (one read from a container) in this
// transaction; another kind fails with ErrTypeMismatch.
func (tx *Tx) DictOf(v Value) (*Dict, error) {
	if v.kind != KindDict {
		return nil, mismatch(v, KindDict)
	}
	return tx.dictAt(v.hd())
}

// ListOf opens a List value in this transaction.
func (tx *Tx) ListOf(v Value) (*List, error) {
	if v.kind != KindList {
		return nil, mismatch(v, KindList)
	}
	return tx.listAt(v.hd())
}

// RecordOf opens a Record value in this transaction.
func (tx *Tx) RecordOf(v Value) (*Record, error) {
	if v.kind != KindRecord {
		return nil, mismatch(v, KindRecord)
	}
	return tx.recordAt(v.hd())
}

// CounterOf opens a Counter value in this transaction.
func (tx *Tx) CounterOf(v Value) (*Counter, error) {
	if v.kind != KindCounter {
		return nil, mismatch(v, KindCounter)
	}
	return tx.counterAt(v.hd())
}

// Retry gives up the attempt until something it read changes (see
// txn.Tx.Retry); return its error.
func (tx *Tx) Retry() error { return tx.t.Retry() }

// OrElse runs a, or b in its place if a retries (see txn.Tx.OrElse).
func (tx *Tx) OrElse(a, b func() error) error { return tx.t.OrElse(a, b) }

// Private reports whether the word at a lies in a container this attempt
// created (freed if it aborts): txn.Private, for Retry.
func (tx *Tx) Private(a txn.Addr) bool {
	for h := range tx.created {
		p, n, err := tx.s.block(h)
		if err != nil || p == nil {
			continue
		}
		lo := txn.AddrOf(h, 0)
		if a >= lo && a < lo+txn.Addr(n/handle.Granule) {
			return true
		}
	}
	return false
}

// Open returns the container that id (a container Value's handle, kept
// across transactions) names, if it is still linked from somewhere:
// ErrStaleHandle if it was unlinked or freed, ErrBadHandle (or
// ErrStaleHandle) for an id that never named one. Its reference count is
// read in this transaction, so an unlink that commits meanwhile makes the
// transaction conflict.
func (tx *Tx) Open(id uint64) (Value, error) {
	v, _, err := tx.open(id)
	return v, err
}

// open is Open, with the container's block.
func (tx *Tx) open(id uint64) (Value, unsafe.Pointer, error) {
	h := handle.Handle(id)
	p, err := tx.s.object(h, KindNone)
	if err != nil {
		return None, nil, fmt.Errorf("objects: open %v: %w", h, err)
	}
	hd := hdrAt(p)
	a := addr(h, offLock)
	for {
		w, err := tx.t.ReadBegin(&hd.lock, a)
		if err != nil {
			return None, nil, err
		}
		rc := hd.rc.Load()
		if tx.t.ReadEnd(&hd.lock, a, w) {
			if rc == 0 && !tx.created[h] {
				return None, nil, fmt.Errorf("objects: open %v: unlinked: %w", h, handle.ErrStaleHandle)
			}
			return Value{kind: Kind(hd.kind), n: uint64(h)}, p, nil
		}
	}
}

// openKind is open for a container that must be of kind k (mismatch's
// error if not): its handle and block.
func (tx *Tx) openKind(id uint64, k Kind) (handle.Handle, unsafe.Pointer, error) {
	v, p, err := tx.open(id)
	if err == nil && v.kind != k {
		err = mismatch(v, k)
	}
	return v.hd(), p, err
}

// OpenCounter is Open then CounterOf, with one resolve of the handle and
// the Counter returned by value, as OpenDict.
func (tx *Tx) OpenCounter(id uint64) (Counter, error) {
	h, p, err := tx.openKind(id, KindCounter)
	if err != nil {
		return Counter{}, err
	}
	return Counter{tx: tx, h: h, p: p}, nil
}

// OpenDict is Open then DictOf, with one resolve of the handle, and the
// Dict returned by value: a caller that keeps it in a variable and calls
// its methods there allocates nothing for it (nothing of this package
// keeps a *Dict: a Dict's writes keep a copy). It is for one operation on
// a Dict named by its id, as the C ABI's one-shot calls make. The errors
// are Open's, and DictOf's for a container of another kind; the Dict is
// valid in this attempt only, as DictOf's.
func (tx *Tx) OpenDict(id uint64) (Dict, error) {
	h, p, err := tx.openKind(id, KindDict)
	if err != nil {
		return Dict{}, err
	}
	return Dict{tx: tx, h: h, p: p}, nil
}

// OrElseBegin and OrElseRetried are OrElse's steps (txn.Tx.OrElseBegin),
// for a caller that runs the alternatives itself.
func (tx *Tx) OrElseBegin() (int, bool) { return tx.t.OrElseBegin() }

// OrElseRetried: see txn.Tx.OrElseRetried.
func (tx *Tx) OrElseRetried(k int) error { return tx.t.OrElseRetried(k) }
