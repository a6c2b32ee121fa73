//go:build linux && (amd64 || arm64)

package objects

import (
	"fmt"
	"math/bits"
	"unsafe"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/reclaim"
)

// List is a shared sequence of values in a ring of cells: append and pop
// at both ends are O(1) amortized, get and set by index O(1); insert and
// delete in the middle rewrite the ring.
type List struct {
	tx *Tx
	h  handle.Handle
	p  unsafe.Pointer
}

// listOverlay is a transaction's buffered changes to one List, relative
// to the committed List it read (baseLen items): pops at both ends,
// pushes at both ends, and sets of committed items. An insert or delete
// in the middle materializes the whole List (mat) instead.
type listOverlay struct {
	l        *List
	baseLen  uint64
	popFront uint64
	popBack  uint64
	front    []Value // pushed at the front; front[len-1] is the first item
	back     []Value
	sets     map[uint64]Value // by committed index
	mat      []Value
	isMat    bool
}

func (tx *Tx) listAt(h handle.Handle) (*List, error) {
	p, err := tx.s.object(h, KindList)
	if err != nil {
		return nil, tx.doom(fmt.Errorf("objects: list %v: %w", h, err))
	}
	return &List{tx: tx, h: h, p: p}, nil
}

// NewList makes an empty List (alive once linked).
func (tx *Tx) NewList() (*List, error) {
	h, p, err := tx.newObject(KindList, listSize)
	if err != nil {
		return nil, err
	}
	return &List{tx: tx, h: h, p: p}, nil
}

// Handle is the List's handle.
func (l *List) Handle() handle.Handle { return l.h }

// Value is the List as a value.
func (l *List) Value() Value { return Value{kind: KindList, n: uint64(l.h)} }

// readCommitted reads the committed List consistently: its length, and
// the items from..to (to <= length) when to > from.
func (l *List) readCommitted(from, to uint64) (uint64, []Value, error) {
	tx := l.tx
	hd := hdrAt(l.p)
	a := addr(l.h, offLock)
	for {
		w, err := tx.t.ReadBegin(&hd.lock, a)
		if err != nil {
			return 0, nil, err
		}
		n, items, rerr := tx.s.listItems(l.h, l.p, from, to)
		if tx.t.ReadEnd(&hd.lock, a, w) {
			for i := 0; rerr == nil && i < len(items); i++ {
				rerr = tx.s.fill(&items[i])
			}
			return n, items, tx.doom(rerr)
		}
	}
}

// listItems reads a List's length and items from..to (possibly torn
// unless validated after).
func (s *Space) listItems(h handle.Handle, p unsafe.Pointer, from, to uint64) (uint64, []Value, error) {
	head, n, capa := listMeta(p)
	if to > n {
		to = n
	}
	if from >= to {
		return n, nil, nil
	}
	ip, size, err := s.peek(handle.Handle(load(p, offAux)))
	if err != nil {
		return n, nil, err
	}
	if capa > uint64(size)/cellSize || n > capa {
		return n, nil, fmt.Errorf("objects: list %v: %d of %d cells in %d bytes: %w", h, n, capa, size, ErrCorrupt)
	}
	items := make([]Value, 0, to-from)
	for i := from; i < to; i++ {
		j := (head + i) % capa
		v, err := s.decode(load(ip, uintptr(j*cellSize)), load(ip, uintptr(j*cellSize+8)))
		if err != nil {
			return n, nil, err
		}
		items = append(items, v)
	}
	return n, items, nil
}

func (l *List) overlay(create bool) (*listOverlay, error) {
	tx := l.tx
	if o, ok := tx.lists[l.h]; ok || !create {
		return o, nil
	}
	if err := tx.write(); err != nil {
		return nil, err
	}
	n, _, err := l.readCommitted(0, 0)
	if err != nil {
		return nil, err
	}
	if err := tx.lockObject(l.h, l.p, false); err != nil {
		return nil, err
	}
	if tx.lists == nil {
		tx.lists = map[handle.Handle]*listOverlay{}
	}
	o := &listOverlay{l: l, baseLen: n}
	tx.lists[l.h] = o
	tx.listList = append(tx.listList, o)
	return o, nil
}

func (o *listOverlay) length() uint64 {
	if o.isMat {
		return uint64(len(o.mat))
	}
	return uint64(len(o.front)) + o.baseLen - o.popFront - o.popBack + uint64(len(o.back))
}

// Len is the number of items.
func (l *List) Len() (int, error) {
	o, err := l.overlay(false)
	if err != nil || o != nil {
		return int(o.length()), err
	}
	n, _, err := l.readCommitted(0, 0)
	return int(n), err
}

// at returns item i as the transaction sees it.
func (l *List) at(o *listOverlay, i uint64) (Value, error) {
	if o == nil {
		n, items, err := l.readCommitted(i, i+1)
		if err == nil && i >= n {
			err = fmt.Errorf("objects: list index %d of %d: %w", i, n, ErrOutOfRange)
		}
		if err != nil {
			return None, err
		}
		return items[0], nil
	}
	if i >= o.length() {
		return None, fmt.Errorf("objects: list index %d of %d: %w", i, o.length(), ErrOutOfRange)
	}
	if o.isMat {
		return o.mat[i], nil
	}
	if f := uint64(len(o.front)); i < f {
		return o.front[f-1-i], nil
	} else {
		i -= f
	}
	if rem := o.baseLen - o.popFront - o.popBack; i < rem {
		bi := o.popFront + i
		if v, ok := o.sets[bi]; ok {
			return v, nil
		}
		_, items, err := l.readCommitted(bi, bi+1)
		if err == nil && len(items) == 0 {
			err = fmt.Errorf("objects: list %v changed under its lock: %w", l.h, ErrCorrupt)
		}
		if err != nil {
			return None, err
		}
		return items[0], nil
	} else {
		i -= rem
	}
	return o.back[i], nil
}

func index(i, n int) (uint64, error) {
	j := i
	if j < 0 {
		j += n
	}
	if j < 0 || j >= n {
		return 0, fmt.Errorf("objects: list index %d of %d: %w", i, n, ErrOutOfRange)
	}
	return uint64(j), nil
}

// Get returns item i (negative i counts from the end).
func (l *List) Get(i int) (Value, error) {
	o, err := l.overlay(false)
	if err != nil {
		return None, err
	}
	n, err := l.Len()
	if err != nil {
		return None, err
	}
	k, err := index(i, n)
	if err != nil {
		return None, err
	}
	return l.at(o, k)
}

// Slice returns items i..j-1 (clamped to the List).
func (l *List) Slice(i, j int) ([]Value, error) {
	o, err := l.overlay(false)
	if err != nil {
		return nil, err
	}
	if o == nil {
		_, items, err := l.readCommitted(uint64(max(i, 0)), uint64(max(j, 0)))
		return items, err
	}
	n := int(o.length())
	i, j = max(0, min(i, n)), max(0, min(j, n))
	out := make([]Value, 0, max(j-i, 0))
	for k := i; k < j; k++ {
		v, err := l.at(o, uint64(k))
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Items returns every item.
func (l *List) Items() ([]Value, error) { return l.Slice(0, 1<<62) }

// Append adds val at the end (val as for Dict.Set).
func (l *List) Append(val any) error {
	v, o, err := l.prepareWrite(val)
	if err != nil {
		return err
	}
	if o.isMat {
		o.mat = append(o.mat, v)
	} else {
		o.back = append(o.back, v)
	}
	return nil
}

// Prepend adds val at the front.
func (l *List) Prepend(val any) error {
	v, o, err := l.prepareWrite(val)
	if err != nil {
		return err
	}
	if o.isMat {
		o.mat = append([]Value{v}, o.mat...)
	} else {
		o.front = append(o.front, v)
	}
	return nil
}

func (l *List) prepareWrite(val any) (Value, *listOverlay, error) {
	v, err := l.tx.valueOf(val)
	if err != nil {
		return None, nil, err
	}
	o, err := l.overlay(true)
	if err != nil {
		return None, nil, err
	}
	return v, o, l.tx.refChange(v, +1)
}

// Pop removes and returns the last item (ErrOutOfRange when empty).
func (l *List) Pop() (Value, error) { return l.pop(false) }

// PopFront removes and returns the first item.
func (l *List) PopFront() (Value, error) { return l.pop(true) }

func (l *List) pop(front bool) (Value, error) {
	o, err := l.overlay(true)
	if err != nil {
		return None, err
	}
	n := o.length()
	if n == 0 {
		return None, fmt.Errorf("objects: pop from an empty list: %w", ErrOutOfRange)
	}
	i := n - 1
	if front {
		i = 0
	}
	v, err := l.at(o, i)
	if err != nil {
		return None, err
	}
	if err := l.tx.refChange(v, -1); err != nil {
		return None, err // before the overlay changes: an error changes nothing
	}
	switch {
	case o.isMat && front:
		o.mat = o.mat[1:]
	case o.isMat:
		o.mat = o.mat[:n-1]
	case front && len(o.front) > 0:
		o.front = o.front[:len(o.front)-1]
	case !front && len(o.back) > 0:
		o.back = o.back[:len(o.back)-1]
	case o.baseLen-o.popFront-o.popBack > 0 && front:
		delete(o.sets, o.popFront)
		o.popFront++
	case o.baseLen-o.popFront-o.popBack > 0:
		delete(o.sets, o.baseLen-o.popBack-1)
		o.popBack++
	case front: // only back items are left
		o.back = o.back[1:]
	default: // only front items are left
		o.front = o.front[1:]
	}
	return v, nil
}

// Set replaces item i.
func (l *List) Set(i int, val any) error {
	o, err := l.overlay(true)
	if err != nil {
		return err
	}
	k, err := index(i, int(o.length()))
	if err != nil {
		return err
	}
	old, err := l.at(o, k)
	if err != nil {
		return err
	}
	v, err := l.tx.valueOf(val)
	if err != nil {
		return err
	}
	if err := l.tx.refSwap(old, true, v, true); err != nil {
		return err
	}
	switch f := uint64(len(o.front)); {
	case o.isMat:
		o.mat[k] = v
	case k < f:
		o.front[f-1-k] = v
	case k-f < o.baseLen-o.popFront-o.popBack:
		if o.sets == nil {
			o.sets = map[uint64]Value{}
		}
		o.sets[o.popFront+k-f] = v
	default:
		o.back[k-f-(o.baseLen-o.popFront-o.popBack)] = v
	}
	return nil
}

// materialize turns the overlay into a whole copy of the List.
func (l *List) materialize(o *listOverlay) error {
	if o.isMat {
		return nil
	}
	items, err := l.Slice(0, int(o.length()))
	if err != nil {
		return err
	}
	o.mat, o.isMat = items, true
	return nil
}

// Insert puts val before item i (i == Len appends).
func (l *List) Insert(i int, val any) error {
	o, err := l.overlay(true)
	if err != nil {
		return err
	}
	n := int(o.length())
	given := i
	if i < 0 {
		i += n
	}
	if i < 0 || i > n {
		return fmt.Errorf("objects: insert at %d of %d: %w", given, n, ErrOutOfRange)
	}
	if err := l.materialize(o); err != nil {
		return err
	}
	v, _, err := l.prepareWrite(val)
	if err != nil {
		return err
	}
	o.mat = append(o.mat[:i], append([]Value{v}, o.mat[i:]...)...)
	return nil
}

// Delete removes item i.
func (l *List) Delete(i int) error {
	o, err := l.overlay(true)
	if err != nil {
		return err
	}
	k, err := index(i, int(o.length()))
	if err != nil {
		return err
	}
	if err := l.materialize(o); err != nil {
		return err
	}
	if err := l.tx.refChange(o.mat[k], -1); err != nil {
		return err
	}
	o.mat = append(o.mat[:k], o.mat[k+1:]...)
	return nil
}

// List returns the List under key, creating an empty one if key is absent.
func (d *Dict) List(key any) (*List, error) {
	v, err := d.container(key, KindList, func() (Value, error) {
		l, err := d.tx.NewList()
		if err != nil {
			return None, err
		}
		return l.Value(), nil
	})
	if err != nil {
		return nil, err
	}
	return d.tx.listAt(v.hd())
}

// GetList returns the List under key (ErrNotFound, ErrTypeMismatch).
func (d *Dict) GetList(key any) (*List, error) {
	v, err := d.Get(key)
	if err != nil {
		return nil, err
	}
	if v.kind != KindList {
		return nil, AtKey(key, mismatch(v, KindList))
	}
	return d.tx.listAt(v.hd())
}

// prepare writes the overlay: in place when the ring has room and only
// the ends and existing items changed, else into a new ring.
func (o *listOverlay) prepare(tx *Tx) error {
	l := o.l
	p := l.p
	private := tx.created[l.h]
	head, n, capa := listMeta(p)
	items := handle.Handle(load(p, offAux))
	if n != o.baseLen {
		return fmt.Errorf("objects: list %v: %d items under its lock, read %d: %w", l.h, n, o.baseLen, ErrCorrupt)
	}
	var ip unsafe.Pointer
	if items != handle.Null {
		var size int
		var err error
		if ip, size, err = tx.s.block(items); err != nil {
			return err
		}
		if capa > uint64(size)/cellSize || n > capa {
			return fmt.Errorf("objects: list %v: %d of %d cells: %w", l.h, n, capa, ErrCorrupt)
		}
	}
	cellAt := func(i uint64) (uint64, uint64) { // committed index
		j := (head + i) % capa
		return load(ip, uintptr(j*cellSize)), load(ip, uintptr(j*cellSize+8))
	}
	newLen := o.length()
	if items == handle.Null && newLen == 0 {
		return nil // still empty, still without a ring
	}
	// A ring that pops left mostly empty shrinks, unless memory is short:
	// shrinking encodes every surviving value afresh, and a transaction
	// that only pops must commit even when the store is full (see alloc's
	// reserve).
	shrink := capa > minListCap && newLen*4 < capa && !tx.s.a.Short()
	if o.isMat || items == handle.Null || newLen > capa || shrink {
		// A new ring: every committed item's blob is retired, every
		// surviving value encoded afresh.
		vals := o.mat
		if !o.isMat {
			var err error
			if vals, err = l.Slice(0, int(newLen)); err != nil {
				return err
			}
		}
		for i := range n {
			tx.retireValue(cellAt(i))
		}
		c := max(uint64(minListCap), uint64(1)<<bits.Len64(newLen))
		nh, b, err := tx.t.Alloc(int(c * cellSize))
		if err != nil {
			return err
		}
		clear(b)
		np := unsafe.Pointer(&b[0])
		for i, v := range vals {
			k, w, err := tx.encode(v)
			if err != nil {
				return err
			}
			*word(np, uintptr(i*cellSize)), *word(np, uintptr(i*cellSize+8)) = k, w
		}
		if items != handle.Null {
			tx.t.Retire(items, reclaim.KindBlock)
		}
		if err := tx.storeWord(private, l.h, p, offAux, uint64(nh)); err != nil {
			return err
		}
		if err := tx.storeWord(private, l.h, p, offListCap, c); err != nil {
			return err
		}
		return tx.storeWord(private, l.h, p, offListMeta, newLen<<32)
	}
	// In place.
	setCell := func(j uint64, v Value, old [2]uint64) error {
		k, w, err := tx.encodeReplacing(v, old[0], old[1])
		if err != nil {
			return err
		}
		if err := tx.storeWord(private, items, ip, uintptr(j*cellSize), k); err != nil {
			return err
		}
		return tx.storeWord(private, items, ip, uintptr(j*cellSize+8), w)
	}
	for i := range o.popFront {
		tx.retireValue(cellAt(i))
	}
	for i := n - o.popBack; i < n; i++ {
		tx.retireValue(cellAt(i))
	}
	for bi, v := range o.sets {
		k, w := cellAt(bi)
		tx.retireValue(k, w)
		if err := setCell((head+bi)%capa, v, [2]uint64{k, w}); err != nil {
			return err
		}
	}
	h2 := (head + o.popFront) % capa
	rem := n - o.popFront - o.popBack
	for j, v := range o.back {
		if err := setCell((h2+rem+uint64(j))%capa, v, [2]uint64{}); err != nil {
			return err
		}
	}
	for _, v := range o.front {
		h2 = (h2 + capa - 1) % capa
		if err := setCell(h2, v, [2]uint64{}); err != nil {
			return err
		}
	}
	return tx.storeWord(private, l.h, p, offListMeta, h2|newLen<<32)
}
