//go:build linux && (amd64 || arm64)

package objects

// A Queue is a List whose header says so: flagQueue in its flags and its
// bound in n (0: unbounded), both immutable after creation. It is stored,
// reference counted, finalized, checked and exported as a List. TryGet
// and TryPut are its ends; the layers above make them block (Retry while
// empty or full): the root package's Queue and the C ABI's one-shots.

import "fmt"

// flagQueue marks a List made as a Queue.
const flagQueue = 1

// NewQueue makes an empty Queue holding at most capacity items (0:
// unbounded), alive once linked.
func (tx *Tx) NewQueue(capacity int) (*List, error) {
	if capacity < 0 || capacity > 1<<31 {
		return nil, fmt.Errorf("objects: queue capacity %d: want 0 (unbounded) to 2^31: %w", capacity, ErrBadArgument)
	}
	l, err := tx.NewList()
	if err != nil {
		return nil, err
	}
	hd := hdrAt(l.p) // private until commit: plain stores
	hd.flags = flagQueue
	hd.n = uint32(capacity)
	return l, nil
}

// IsQueue reports whether the List was made as a Queue, and its bound
// (0: unbounded). Both never change, so they are read without a window.
func (l *List) IsQueue() (bool, int) {
	hd := hdrAt(l.p)
	return hd.flags&flagQueue != 0, int(hd.n)
}

// Queue returns the Queue under key, making one with the given capacity
// if key is absent (ErrTypeMismatch if key holds something else, a List
// that is not a Queue included).
func (d *Dict) Queue(key any, capacity int) (*List, error) {
	v, err := d.container(key, KindList, func() (Value, error) {
		q, err := d.tx.NewQueue(capacity)
		if err != nil {
			return None, err
		}
		return q.Value(), nil
	})
	if err != nil {
		return nil, err
	}
	l, err := d.tx.QueueOf(v)
	return l, AtKey(key, err)
}

// QueueOf opens a Queue value.
func (tx *Tx) QueueOf(v Value) (*List, error) {
	l, err := tx.ListOf(v)
	if err != nil {
		return nil, err
	}
	if ok, _ := l.IsQueue(); !ok {
		return nil, fmt.Errorf("value is a List, not a Queue: %w", ErrTypeMismatch)
	}
	return l, nil
}

// TryGet removes and returns the first item of the Queue, or reports
// false when it is empty (the caller Retries to wait for a put).
func (l *List) TryGet() (Value, bool, error) {
	n, err := l.Len()
	if err != nil || n == 0 {
		return None, false, err
	}
	v, err := l.PopFront()
	return v, err == nil, err
}

// TryPut adds val at the end of the Queue (as Append), or reports false
// when it holds its bound already (the caller Retries to wait for a get).
func (l *List) TryPut(val any) (bool, error) {
	if _, c := l.IsQueue(); c > 0 {
		n, err := l.Len()
		if err != nil || n >= c {
			return false, err
		}
	}
	return true, l.Append(val)
}
