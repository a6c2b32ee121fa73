//go:build linux && (amd64 || arm64)

package abi

// Handles are opaque uint64s, never pointers:
//
//	bits 60-63  the table: tagStore, tagTx or tagObj (so that one kind of
//	            handle passed for another is refused, and 0 is never one)
//	stores and transactions:
//	  bits 32-59  the slot's generation (1 to 2^28-1)
//	  bits  0-31  the slot's index in its table
//	objects:
//	  bits 24-59  the attempt (a number unique in the process, see attempt)
//	  bits  0-23  the index in the attempt's object table
//
// A store or transaction slot's generation goes up each time the slot is
// freed, so a handle kept past its Close or the end of its transaction
// names nothing (ErrClosed, ErrTxClosed), never what the slot holds next;
// a slot whose generation would wrap is retired, never reused. An object
// handle names its attempt, which is never reused either: after the
// attempt every handle of it fails with ErrTxClosed.

const (
	tagShift = 60
	tagStore = 1
	tagTx    = 2
	tagObj   = 3

	genShift = 32
	genMask  = 1<<28 - 1
	idxMask  = 1<<32 - 1

	objGenShift = 24
	objGenMask  = 1<<36 - 1
	objIdxMask  = 1<<24 - 1
)

// maxObjects is the most object handles one attempt hands out.
const maxObjects = objIdxMask + 1

// table is a handle table: slots of *T by index, with a free list.
type table[T any] struct {
	tag   uint64
	slots []tslot[T]
	free  []uint32
}

type tslot[T any] struct {
	gen uint32 // the generation of the handle that names v; 0: never used
	v   *T     // nil: free
}

// add puts v in a free slot and returns its handle.
func (t *table[T]) add(v *T) uint64 {
	var i uint32
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
	} else {
		i = uint32(len(t.slots))
		t.slots = append(t.slots, tslot[T]{})
	}
	s := &t.slots[i]
	s.gen++
	s.v = v
	return t.tag<<tagShift | uint64(s.gen)<<genShift | uint64(i)
}

// lookup is what a handle names: v, or why nothing (bad: the handle
// never named anything here; else it named something that is gone).
func (t *table[T]) lookup(h uint64) (v *T, bad bool) {
	if h>>tagShift != t.tag {
		return nil, true
	}
	i, gen := h&idxMask, uint32(h>>genShift&genMask)
	if gen == 0 || i >= uint64(len(t.slots)) || gen > t.slots[i].gen {
		return nil, true
	}
	s := &t.slots[i]
	if s.gen != gen || s.v == nil {
		return nil, false
	}
	return s.v, false
}

// remove frees the slot h names (if it does).
func (t *table[T]) remove(h uint64) {
	v, _ := t.lookup(h)
	if v == nil {
		return
	}
	i := uint32(h & idxMask)
	s := &t.slots[i]
	s.v = nil
	if s.gen < genMask {
		t.free = append(t.free, i)
	} // else retired: its next generation would wrap
}

// live is the number of slots in use.
func (t *table[T]) live() int {
	n := 0
	for _, s := range t.slots {
		if s.v != nil {
			n++
		}
	}
	return n
}

// objHandle is the handle of object i of attempt a.
func objHandle(a uint64, i int) uint64 {
	return tagObj<<tagShift | a<<objGenShift | uint64(i)
}

// splitObj splits an object handle (ok false: not one).
func splitObj(h uint64) (a uint64, i int, ok bool) {
	if h>>tagShift != tagObj {
		return 0, 0, false
	}
	return h >> objGenShift & objGenMask, int(h & objIdxMask), true
}
