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

// finalize frees an unlinked container once reclaim says no transaction
// can see it (reclaim.Finalizer). First, in a small transaction, it drops
// the references the object held to other containers (which may unlink
// them in turn) and marks the object released; then it frees the
// object's own blocks (tables, entries, blobs, items, schema) and the
// object. A finalizer that dies midway runs again: the release is one
// transaction, marked in the object, and the frees are refused by
// generation when repeated.
func (s *Space) finalize(h alloc.Heap, obj handle.Handle) error {
	p, err := s.object(obj, KindNone)
	if err != nil {
		if errors.Is(err, ErrTypeMismatch) || errors.Is(err, ErrCorrupt) {
			return err
		}
		return nil // freed already: a repeated finalization
	}
	var children []Value
	var blocks []handle.Handle
	if err := s.ownedBy(obj, p, func(v Value) { children = append(children, v) },
		func(b handle.Handle) { blocks = append(blocks, b) }); err != nil {
		return fmt.Errorf("objects: finalize %v: %w", obj, err)
	}
	if len(children) > 0 && atomicFlags(p)&flagReleased == 0 {
		err := s.e.RunOn(h, func(t *txn.Tx) error {
			tx := s.bind(t)
			if err := tx.write(); err != nil {
				return err
			}
			if err := tx.lockObject(obj, p, false); err != nil {
				return err
			}
			tx.release = append(tx.release, releaseReq{obj, p})
			for _, c := range children {
				if err := tx.refChange(c, -1); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("objects: finalize %v: release children: %w", obj, err)
		}
	}
	for _, b := range blocks {
		_ = s.a.FreeAny(b)
	}
	_ = s.a.FreeAny(obj)
	return nil
}

// releaseReq marks an object released at commit.
type releaseReq struct {
	h handle.Handle
	p unsafe.Pointer
}

func atomicFlags(p unsafe.Pointer) uint64 { return load(p, offFlags) >> 8 & 0xff }

// prepareRelease stores the released flag of finalized objects.
func (tx *Tx) prepareRelease() error {
	for _, r := range tx.release {
		w := load(r.p, offFlags) | flagReleased<<8
		if err := tx.t.Store(word(r.p, offFlags), addr(r.h, offFlags), w); err != nil {
			return err
		}
	}
	return nil
}

// ownedBy calls child for every container value the object refers to and
// block for every block it owns (not the object's own block). The object
// must be stable: unreachable (being finalized) or locked.
func (s *Space) ownedBy(obj handle.Handle, p unsafe.Pointer, child func(Value), block func(handle.Handle)) error {
	cell := func(kind, w uint64) {
		k := Kind(kind)
		switch {
		case k == KindString || k == KindBytes:
			block(handle.Handle(w))
		case k.IsContainer():
			child(Value{kind: k, h: handle.Handle(w)})
		}
	}
	switch Kind(hdrAt(p).kind) {
	case KindDict:
		for i := range Stripes {
			st := stripeAt(p, i)
			err := s.eachEntry(st, true, func(e handle.Handle, ep unsafe.Pointer, _ int) error {
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
		if err != nil {
			return err
		}
		head, length, capa := listMeta(p)
		if capa*cellSize > uint64(n) || length > capa {
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
