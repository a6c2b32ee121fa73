//go:build linux && (amd64 || arm64)

package objects

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/txn"
)

// releaseChunk bounds the child references one release step drops: a
// step is one transaction, whose redo log must hold it, and which must
// fit what alloc's reserve promises a finalizer's step when the store is
// full (reserve.go: one redo-log chunk of 8192 words for the locks and
// the three stores of each child, a batch of at most as many entries).
const releaseChunk = 1024

// finalize frees an unlinked container once reclaim says no transaction
// can see it (reclaim.Finalizer). First it drops the references the
// object holds to other containers (which may unlink them in turn), in
// steps of at most releaseChunk: each step is a small transaction that
// reads the object under its header lock, drops the references of the
// next children, and overwrites those cells with None, so that a step
// repeated after a crash, or run by a second finalizer at the same time,
// finds them gone (the header lock's version makes the second one's read
// fail). Then it frees the object's own blocks (tables, entries, blobs,
// items, schema) and the object; frees repeated after a crash are
// refused by generation.
func (s *Space) finalize(h alloc.Heap, obj handle.Handle) error {
	p, err := s.object(obj, KindNone)
	if err != nil {
		if errors.Is(err, ErrTypeMismatch) || errors.Is(err, ErrCorrupt) {
			return err
		}
		return nil // freed already: a repeated finalization
	}
	for more := true; more; {
		err := s.e.RunOn(h, func(t *txn.Tx) error {
			tx := s.bind(t)
			if err := tx.write(); err != nil {
				return err
			}
			hd := hdrAt(p)
			a := addr(obj, offLock)
			w, err := t.ReadBegin(&hd.lock, a)
			if err != nil {
				return err
			}
			var cells []cellRef
			err = s.childCells(obj, p, releaseChunk+1, func(c cellRef) { cells = append(cells, c) })
			if !t.ReadEnd(&hd.lock, a, w) {
				return fmt.Errorf("objects: finalize %v: %w", obj, txn.ErrConflict)
			}
			if errors.Is(err, handle.ErrStaleHandle) {
				// A block of the object is freed: an earlier run reached
				// the free phase, so every child was released already.
				more = false
				return nil
			}
			if err != nil {
				return err
			}
			more = len(cells) > releaseChunk
			cells = cells[:min(len(cells), releaseChunk)]
			if len(cells) == 0 {
				return nil
			}
			if err := tx.lockObject(obj, p, false); err != nil {
				return err
			}
			for _, c := range cells {
				if err := tx.refChange(c.v, -1); err != nil {
					return err
				}
			}
			tx.clears = append(tx.clears, cells...)
			return nil
		})
		if err != nil {
			return fmt.Errorf("objects: finalize %v: release children: %w", obj, err)
		}
	}
	var blocks []handle.Handle
	if err := s.ownedBy(obj, p, freeingMode, func(Value) {}, func(b handle.Handle) { blocks = append(blocks, b) }); err != nil {
		return fmt.Errorf("objects: finalize %v: %w", obj, err)
	}
	for _, b := range blocks {
		_ = s.a.FreeAny(b)
	}
	_ = s.a.FreeAny(obj)
	return nil
}

// cellRef is where a container value sits in an object: a Dict entry's
// meta and value words, or a List's or Record's cell (kind and value
// words), in block h at p.
type cellRef struct {
	v       Value
	h       handle.Handle
	p       unsafe.Pointer
	kindOff uintptr
	valOff  uintptr
	meta    bool // kind in the low byte of a Dict entry's meta word
}

// childCells calls f for up to limit cells of an unlinked object that
// hold containers.
func (s *Space) childCells(obj handle.Handle, p unsafe.Pointer, limit int, f func(cellRef)) error {
	n := 0
	errStop := errors.New("enough")
	visit := func(c cellRef, kind, w uint64) error {
		if !Kind(kind).IsContainer() {
			return nil
		}
		c.v = Value{kind: Kind(kind), n: w}
		f(c)
		if n++; n >= limit {
			return errStop
		}
		return nil
	}
	var err error
	switch Kind(hdrAt(p).kind) {
	case KindDict:
		for i := 0; i < Stripes && err == nil; i++ {
			err = s.eachEntry(stripeAt(p, i), strictMode, func(e handle.Handle, ep unsafe.Pointer, _ int) error {
				meta := load(ep, 8)
				return visit(cellRef{h: e, p: ep, kindOff: 8, valOff: offEntryVal, meta: true}, meta&0xff, load(ep, offEntryVal))
			})
		}
	case KindList:
		items := handle.Handle(load(p, offAux))
		if items == handle.Null {
			return nil
		}
		ip, size, berr := s.block(items)
		if berr != nil {
			return berr
		}
		head, length, capa := listMeta(p)
		if capa > uint64(size)/cellSize || length > capa {
			return fmt.Errorf("objects: list %v: %d of %d cells in %d bytes: %w", obj, length, capa, size, ErrCorrupt)
		}
		for i := uint64(0); i < length && err == nil; i++ {
			j := (head + i) % capa
			off := uintptr(j * cellSize)
			err = visit(cellRef{h: items, p: ip, kindOff: off, valOff: off + 8}, load(ip, off), load(ip, off+8))
		}
	case KindRecord:
		for i := uint64(0); i < uint64(hdrAt(p).n) && err == nil; i++ {
			off := uintptr(offRecordCells + i*cellSize)
			err = visit(cellRef{h: obj, p: p, kindOff: off, valOff: off + 8}, load(p, off), load(p, off+8))
		}
	}
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// prepareClears overwrites released cells with None (a finalizer's step).
func (tx *Tx) prepareClears() error {
	for _, c := range tx.clears {
		k := uint64(KindNone)
		if c.meta {
			k = load(c.p, c.kindOff)&^0xff | uint64(KindNone)
		}
		if err := tx.t.Store(word(c.p, c.kindOff), addr(c.h, c.kindOff), k); err != nil {
			return err
		}
		if err := tx.t.Store(word(c.p, c.valOff), addr(c.h, c.valOff), 0); err != nil {
			return err
		}
	}
	return nil
}

// ownedBy calls child for every container value the object refers to and
// block for every block it owns (not the object's own block). The object
// must be stable: unreachable (being finalized) or locked.
func (s *Space) ownedBy(obj handle.Handle, p unsafe.Pointer, mode resolveMode, child func(Value), block func(handle.Handle)) error {
	stale := func(err error) bool { return mode == freeingMode && errors.Is(err, handle.ErrStaleHandle) }
	cell := func(kind, w uint64) {
		k := Kind(kind)
		switch {
		case k == KindString || k == KindBytes:
			block(handle.Handle(w))
		case k.IsContainer():
			child(Value{kind: k, n: w})
		}
	}
	switch Kind(hdrAt(p).kind) {
	case KindDict:
		for i := range Stripes {
			st := stripeAt(p, i)
			err := s.eachEntry(st, mode, func(e handle.Handle, ep unsafe.Pointer, _ int) error {
				cell(load(ep, 8)&0xff, load(ep, offEntryVal))
				block(e)
				return nil
			})
			if err != nil {
				return err
			}
			if th := handle.Handle(st.table.Load()); th != handle.Null {
				block(th)
			}
		}
	case KindList:
		items := handle.Handle(load(p, offAux))
		if items == handle.Null {
			return nil
		}
		ip, n, err := s.block(items)
		if stale(err) {
			return nil // freed by an earlier run, after the blobs it listed
		}
		if err != nil {
			return err
		}
		head, length, capa := listMeta(p)
		if capa > uint64(n)/cellSize || length > capa {
			return fmt.Errorf("list %v: %d of %d cells in %d bytes: %w", obj, length, capa, n, ErrCorrupt)
		}
		for i := range length {
			j := (head + i) % capa
			cell(load(ip, uintptr(j*cellSize)), load(ip, uintptr(j*cellSize+8)))
		}
		block(items)
	case KindRecord:
		n := uint64(hdrAt(p).n)
		for i := range n {
			cell(load(p, uintptr(offRecordCells+i*cellSize)), load(p, uintptr(offRecordCells+i*cellSize+8)))
		}
		if sc := handle.Handle(load(p, offAux)); sc != handle.Null {
			block(sc)
		}
	}
	return nil
}

// listMeta reads a List's head, length and capacity.
func listMeta(p unsafe.Pointer) (head, length, capa uint64) {
	m := load(p, offListMeta)
	return m & 0xffffffff, m >> 32, load(p, offListCap)
}
