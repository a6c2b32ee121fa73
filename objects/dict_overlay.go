//go:build linux && (amd64 || arm64)

package objects

// This file owns a transaction's overlay of one Dict: the pending writes
// (sets and deletes, with where the committed entry was found), found by
// key (find: searched while few, then indexed), added (add), and the
// overlays of a transaction's Dicts (Tx.dictOverlay). Nothing here reads
// or writes shared memory; the overlay becomes word stores at commit
// (dict_commit.go).

import "github.com/shmstore/shmstore/handle"

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
	// d is a copy of the Dict written (its tx, handle and block), not a
	// pointer to the caller's: so a Dict that a caller keeps on its stack
	// (Tx.OpenDict) stays there when it is written.
	d     Dict
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

// indexLast indexes the pending entry appended last, once there are
// many.
func (o *dictOverlay) indexLast() {
	switch n := len(o.pend); {
	case n == indexFrom:
		if o.index == nil {
			o.index = make(map[string]int, 2*indexFrom)
		}
		for i := range o.pend {
			o.index[keyID(o.pend[i].key)] = i
		}
	case n > indexFrom:
		o.index[keyID(o.pend[n-1].key)] = n - 1
	}
}

// overlayIndexFrom is the number of Dicts written from which their
// overlays are found through a map.
const overlayIndexFrom = 16

func (tx *Tx) dictOverlay(d *Dict, create bool) *dictOverlay {
	if tx.direct.h != handle.Null {
		tx.undirect()
	}
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
		o.d = *d
	} else {
		o = &dictOverlay{d: *d}
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
