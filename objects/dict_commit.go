//go:build linux && (amd64 || arm64)

package objects

// This file owns a Dict's part of a commit: at Prepare, under the locks
// txn holds (the stripe's for an insert or a delete, the entry's for an
// overwrite: lockFor), an overlay becomes word stores, stripe by stripe
// (prepare, prepareStripe): new entries (newEntry), values overwritten in
// place (overwrite), unlinked entries retired with their values' blobs
// (retireEntry), tables grown, shrunk or dropped (newTable, tableCap,
// rehash; a replaced table is retired), and a shared table's slots
// changed through the redo log (tableView.set).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"unsafe"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/reclaim"
)

// prepare turns the overlay into stores, stripe by stripe (txn holds the
// lock each write asked for: lockFor).
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
		if err := o.d.prepareStripe(tx, stripeOf(ps[i].hash), ps[i:j]); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// set stores v into slot i: directly in a private table, else through the
// redo log (and remembered, so that later probes of this commit see it).
func (t *tableView) set(tx *Tx, i, v uint64) error {
	if t.private {
		*word(t.p, uintptr(i*8)) = v
		return nil
	}
	t.over = append(t.over, slotStore{i, v})
	if cap(t.over) > cap(tx.slotBuf) {
		tx.slotBuf = t.over[:0] // grown: kept for the next stripes and commits
	}
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

// prepareStripe turns the writes pend of stripe s of the Dict d into
// stores (an overlay's, or a direct write's alone).
func (d *Dict) prepareStripe(tx *Tx, s int, pend []*pending) error {
	if overwritesOnly(pend) {
		// Values changed in place, each entry found by the validated read
		// and locked by its write (the stripe is not locked, only read):
		// the table, its size and the counts stand, so none is read (a
		// table that a failed shrink left sparse is shrunk by the next
		// commit that adds or deletes a key here).
		for _, p := range pend {
			if err := tx.overwrite(p.ent, p.val); err != nil {
				return err
			}
		}
		return nil
	}
	st := stripeAt(d.p, s)
	private := tx.created[d.h]
	sizes := st.sizes.Load()
	count, used := sizes&0xffffffff, sizes>>32
	// The slots this stripe's commit logs go in the transaction's buffer
	// (given back at the end): a commit allocates nothing for them.
	old := tableView{h: handle.Handle(st.table.Load()), capa: st.cap.Load(), over: tx.slotBuf[:0]}
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
		} else if err = probeTable(tx.s, &t, p.key, p.hash, &f); err != nil {
			return err
		}
		if f.ok && !p.del {
			// An existing key: its entry's value changes in place (under
			// the entry's lock, which the write took: lockFor; through the
			// redo log). Readers see the entry's version move and read
			// again.
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
		// Shrinking is optional: with the store full (a transaction that
		// only deletes must commit, see alloc's reserve), the table stays
		// as it is, tombstones and all, until a later commit shrinks it.
		switch n, err := tx.rehash(t, tableCap(count)); {
		case err == nil:
			t, used = n, count
		case !errors.Is(err, alloc.ErrOutOfMemory):
			return err
		}
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
	if count|used<<32 == sizes {
		return nil // values overwritten in place: the counts stand (one store fewer to log and apply)
	}
	return tx.storeWord(private, d.h, d.p, uintptr(stripeOffset+s*stripeSize+offSizes), count|used<<32)
}

// overwritesOnly reports whether every write of pend sets a key the
// committed Dict has (ent, found by the validated read, is not Null).
func overwritesOnly(pend []*pending) bool {
	for _, p := range pend {
		if p.del || p.ent == handle.Null {
			return false
		}
	}
	return true
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
	*word(ep, offEntryLock) = 0 // version 0, unlocked: nobody reads it before the commit links it
	copy(b[entryHeader:], kb)
	return h, nil
}

// overwrite stores a new value into an existing entry, whose lock the
// write took (lockFor); the old value's blob (if any) is retired.
func (tx *Tx) overwrite(e handle.Handle, v Value) error {
	// e was found by a read that txn validates at commit, with the entry
	// locked (or by this commit's probe under the stripe's lock): it is
	// live, so the readers' resolution (bounds only) is enough, and
	// cheaper than Resolve's allocator lookup.
	ep, n, err := tx.s.peek(e)
	if err != nil || n < entryHeader {
		return fmt.Errorf("objects: overwrite entry %v: %v: %w", e, err, ErrCorrupt)
	}
	meta := load(ep, 8)
	vk, vw, err := tx.encodeReplacing(v, meta&0xff, load(ep, offEntryVal))
	if err != nil {
		return err
	}
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
