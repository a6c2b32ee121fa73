//go:build linux && (amd64 || arm64)

package shmstore

import (
	"context"

	"github.com/shmstore/shmstore/objects"
)

// Queue is a shared FIFO, optionally bounded, as one transaction sees it:
// any number of processes put and get at once. Get waits while the Queue
// is empty and Put while it is full, through Retry: the transaction
// sleeps (no polling) until another commit changes the Queue, then runs
// again. Because a Get is part of its transaction, taking a job and
// recording it as in flight happen together or not at all: a consumer
// killed mid-transaction loses no item, and every item is delivered
// exactly once.
//
//	err := st.UpdateContext(ctx, func(tx *shmstore.Tx) error {
//		jobs, err := tx.Root().Queue("jobs", 0)
//		if err != nil {
//			return err
//		}
//		job, err := jobs.Get() // waits while empty
//		if err != nil {
//			return err
//		}
//		return tx.Root().Set("in-flight", job)
//	})
//
// A Queue is a List made as a Queue: its Value is of KindList. It is
// valid only inside the transaction function that produced it.
type Queue struct {
	txRef
	l *objects.List
}

func (r txRef) queue(l *objects.List, err error) (Queue, error) {
	if err != nil {
		return Queue{}, err
	}
	return Queue{txRef: r.ref(), l: l}, nil
}

// Queue returns the Queue under key, making an empty one holding at most
// capacity items (0: unbounded) if key is absent. ErrTypeMismatch if key
// holds anything else (a List not made as a Queue too).
func (d Dict) Queue(key any, capacity int) (Queue, error) {
	k, err := d.key(key)
	if err != nil {
		return Queue{}, err
	}
	return d.queue(d.d.Queue(k, capacity))
}

// GetQueue returns the Queue under key (ErrKeyNotFound if absent).
func (d Dict) GetQueue(key any) (Queue, error) {
	v, err := d.Get(key)
	if err != nil {
		return Queue{}, err
	}
	l, err := d.t.QueueOf(v.v)
	return d.queue(l, objects.AtKey(key, err))
}

// NewQueue makes an empty Queue holding at most capacity items (0:
// unbounded); it lives once linked into a container, as NewDict.
func (tx *Tx) NewQueue(capacity int) (Queue, error) {
	if err := tx.live("Tx"); err != nil {
		return Queue{}, err
	}
	return tx.queue(tx.t.NewQueue(capacity))
}

// Queue opens a Queue value read in this transaction.
func (tx *Tx) Queue(v Value) (Queue, error) {
	ov, err := tx.value(v)
	if err != nil {
		return Queue{}, err
	}
	return tx.queue(tx.t.QueueOf(ov))
}

// Value is the Queue as a Value (to store it in another container too).
func (q Queue) Value() Value {
	if q.l == nil {
		return None
	}
	return q.val(q.l.Value())
}

// Cap is the most items the Queue holds (0: unbounded).
func (q Queue) Cap() int {
	if q.l == nil {
		return 0
	}
	_, n := q.l.IsQueue()
	return n
}

// Len is the number of items in the Queue.
func (q Queue) Len() (int, error) {
	if err := q.live("Queue"); err != nil {
		return 0, err
	}
	return q.l.Len()
}

// TryGet removes and returns the first item, or reports false when the
// Queue is empty.
func (q Queue) TryGet() (Value, bool, error) {
	if err := q.live("Queue"); err != nil {
		return None, false, err
	}
	v, ok, err := q.l.TryGet()
	return q.val(v), ok, err
}

// Get removes and returns the first item. While the Queue is empty it
// returns an error wrapping ErrRetry, for the function to return: the
// transaction then waits for a Put (see Tx.Retry).
func (q Queue) Get() (Value, error) {
	v, ok, err := q.TryGet()
	if err == nil && !ok {
		err = q.t.Retry()
	}
	return v, err
}

// TryPut adds val at the end, or reports false when the Queue is full.
func (q Queue) TryPut(val any) (bool, error) {
	if err := q.live("Queue"); err != nil {
		return false, err
	}
	v, err := q.arg(val)
	if err != nil {
		return false, err
	}
	return q.l.TryPut(v)
}

// Put adds val at the end. While the Queue is full it returns an error
// wrapping ErrRetry, for the function to return: the transaction then
// waits for a Get.
func (q Queue) Put(val any) error {
	ok, err := q.TryPut(val)
	if err == nil && !ok {
		err = q.t.Retry()
	}
	return err
}

// Put adds val to the Queue at path (made unbounded if missing) in its
// own small transaction, waiting while the Queue is full, until ctx ends.
func (s *Store) Put(ctx context.Context, path string, val any) error {
	return s.updateContext(ctx, func(tx *Tx) error {
		d, k, err := walk(tx, path, true)
		if err != nil {
			return err
		}
		q, err := d.Queue(k, 0)
		if err != nil {
			return err
		}
		return q.Put(val)
	})
}

// Take removes the first item of the Queue at path (made if missing) in
// its own small transaction, waiting while it is empty, until ctx ends,
// and returns a copy of it as Export gives one: a scalar as its Go value
// (int64, float64, string, []byte, bool or nil), a container as Go maps,
// slices and values. (The item itself is unlinked when the transaction
// commits: a Value naming it would name nothing.) To act on an item in
// the store before it goes, take it with Queue.Get in an Update.
func (s *Store) Take(ctx context.Context, path string) (any, error) {
	var out any
	err := s.updateContext(ctx, func(tx *Tx) error {
		d, k, err := walk(tx, path, true)
		if err != nil {
			return err
		}
		q, err := d.Queue(k, 0)
		if err != nil {
			return err
		}
		v, err := q.Get()
		if err != nil {
			return err
		}
		out, err = tx.Export(v)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
