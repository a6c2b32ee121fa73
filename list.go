//go:build linux && (amd64 || arm64)

package shmstore

import (
	"github.com/shmstore/shmstore/objects"
)

// List is a shared sequence, as one transaction sees it: O(1) append and
// pop at both ends, O(1) get and set by index. Indexes count from 0;
// negative indexes count from the end (-1 is the last item). Values are
// as for Dict.Set.
//
// A List is valid only inside the transaction function that produced it;
// afterwards every method fails with ErrTxClosed.
type List struct {
	txRef
	l *objects.List
}

func (r txRef) list(l *objects.List, err error) (List, error) {
	if err != nil {
		return List{}, err
	}
	return List{txRef: r.ref(), l: l}, nil
}

// Value is the List as a Value (to store it in another container too).
func (l List) Value() Value {
	if l.l == nil {
		return None
	}
	return l.val(l.l.Value())
}

// Len is the number of items.
func (l List) Len() (int, error) {
	if err := l.live("List"); err != nil {
		return 0, err
	}
	return l.l.Len()
}

// Get returns item i (ErrOutOfRange outside the List).
func (l List) Get(i int) (Value, error) {
	if err := l.live("List"); err != nil {
		return None, err
	}
	v, err := l.l.Get(i)
	return l.val(v), err
}

// Slice returns items i to j (j excluded), clamped to the List as Go's
// slices of Python's are.
func (l List) Slice(i, j int) ([]Value, error) {
	if err := l.live("List"); err != nil {
		return nil, err
	}
	vs, err := l.l.Slice(i, j)
	return l.vals(vs), err
}

// Items returns every item.
func (l List) Items() ([]Value, error) {
	if err := l.live("List"); err != nil {
		return nil, err
	}
	vs, err := l.l.Items()
	return l.vals(vs), err
}

// value checks that the List is live and converts a value.
func (l List) value(val any) (any, error) {
	if err := l.live("List"); err != nil {
		return nil, err
	}
	return l.arg(val)
}

// Append adds val at the end.
func (l List) Append(val any) error {
	v, err := l.value(val)
	if err != nil {
		return err
	}
	return l.l.Append(v)
}

// Prepend adds val at the front.
func (l List) Prepend(val any) error {
	v, err := l.value(val)
	if err != nil {
		return err
	}
	return l.l.Prepend(v)
}

// Pop removes and returns the last item (ErrOutOfRange when empty).
func (l List) Pop() (Value, error) {
	if err := l.live("List"); err != nil {
		return None, err
	}
	v, err := l.l.Pop()
	return l.val(v), err
}

// PopFront removes and returns the first item (ErrOutOfRange when empty).
func (l List) PopFront() (Value, error) {
	if err := l.live("List"); err != nil {
		return None, err
	}
	v, err := l.l.PopFront()
	return l.val(v), err
}

// Set replaces item i.
func (l List) Set(i int, val any) error {
	v, err := l.value(val)
	if err != nil {
		return err
	}
	return l.l.Set(i, v)
}

// Insert puts val before item i (i == Len appends).
func (l List) Insert(i int, val any) error {
	v, err := l.value(val)
	if err != nil {
		return err
	}
	return l.l.Insert(i, v)
}

// Delete removes item i.
func (l List) Delete(i int) error {
	if err := l.live("List"); err != nil {
		return err
	}
	return l.l.Delete(i)
}
