//go:build linux && (amd64 || arm64)

package abi

import (
	"context"
	"errors"
	"unsafe"

	"github.com/shmstore/shmstore"
)

// One-shot operations (shm_op_*): one operation in a transaction of its
// own, run by one call, with the retry loop inside (Store.Update or View:
// nothing of the caller's is called back, so nothing stops it from
// running here). A caller outside a transaction makes one call where the
// header's loop takes at least three (begin, the operation, end) and an
// open of the container. The container is named by its id (shm_obj_id),
// and so is a container value in or out: no transaction outlives the
// call, so there is no object handle to give.

// oneShot runs fn in a transaction of its own on the store h (read-only:
// a View) and returns its code. A wait (for a transaction slot while all
// the process's are in use; in a Retry of fn's, when retries) lasts at
// most timeoutMs milliseconds (see waitContext), then the call returns
// Timeout.
//
// The context that bounds a wait costs more than a get (the engine's
// watch on it; a timer of its own: some 1.4 us), so it is made only when
// a wait can happen: when fn may retry, or when the transactions under
// way through the store handle, this one with them, are more than the
// process's slots.
func (l *Lib) oneShot(h uint64, readOnly, retries bool, timeoutMs int64, e *Error, fn func(s *storeEntry, tx *shmstore.Tx) error) int32 {
	return l.withStore(h, e, func(s *storeEntry) error {
		n := s.running.Add(1)
		defer s.running.Add(-1)
		ctx := context.Background()
		if timeoutMs >= 0 && (retries || n > s.slots) {
			var done func()
			ctx, done = l.waitContext(timeoutMs)
			defer done()
		}
		body := func(tx *shmstore.Tx) error { return fn(s, tx) }
		if readOnly {
			return s.st.ViewContext(ctx, body)
		}
		return s.st.UpdateContext(ctx, body)
	})
}

// kindOf is the ABI kind of a value (KindQueue for a List made as a
// Queue).
func kindOf(tx *shmstore.Tx, v shmstore.Value) (int32, error) {
	k := int32(v.Kind())
	if k != KindList {
		return k, nil
	}
	if _, err := tx.Queue(v); err == nil {
		return KindQueue, nil
	} else if !errors.Is(err, shmstore.ErrTypeMismatch) {
		return 0, err
	}
	return KindList, nil
}

// inOnce converts a value passed to a one-shot call, as txEntry.in: a
// container by its id in v.Obj.
func inOnce(s *storeEntry, tx *shmstore.Tx, v *Value, what string) (any, error) {
	x, container, err := scalarIn(v, what, s.maxValue)
	if !container || err != nil {
		return x, err
	}
	c, err := tx.Open(v.Obj)
	if err != nil {
		return nil, err
	}
	k, err := kindOf(tx, c)
	if err != nil {
		return nil, err
	}
	if err := kindIs(what, v, k); err != nil {
		return nil, err
	}
	return c, nil
}

// outBuf is where a one-shot call puts a value it passes out: the
// caller's Value, written once the call succeeded (or returns Short), and
// the caller's buffer for a String or Bytes.
type outBuf struct {
	out *Value
	buf unsafe.Pointer
	cap int64
	r   Value // the value of the last run
}

// done writes the last run's value into the caller's Value if rc says
// so, and returns rc.
func (o *outBuf) done(rc int32) int32 {
	if rc == OK || rc == Short {
		*o.out = o.r
	}
	return rc
}

// check checks the caller's pointers.
func (o *outBuf) check() error {
	switch {
	case o.out == nil:
		return badArg("out is NULL")
	case o.cap < 0 || o.cap > 0 && o.buf == nil:
		return badArg("buf of capacity %d at %p", o.cap, o.buf)
	}
	return nil
}

// put keeps v for the caller, computed in a run of the transaction: a
// String or Bytes copied into the buffer (NUL-terminated), a container
// as its id. taken: v was taken out of the store by this transaction,
// and a container taken (freed at commit unless linked elsewhere) cannot
// be passed out. Short, with Kind and Len (the bytes needed, less the
// NUL) kept, when the value does not fit or is such a container: the run
// must then fail, so that nothing it did is kept.
func (o *outBuf) put(tx *shmstore.Tx, v shmstore.Value, taken bool) error {
	var r Value
	s, scalar := scalarOut(v, &r)
	switch {
	case !scalar:
		k, err := kindOf(tx, v)
		if err != nil {
			return err
		}
		r.Kind = k
		if taken {
			o.r = r
			return status(Short)
		}
		r.Obj = v.ID()
	case r.Kind == KindString || r.Kind == KindBytes:
		r.Len = int64(len(s))
		if r.Len >= o.cap {
			o.r = r
			return status(Short)
		}
		b := unsafe.Slice((*byte)(o.buf), r.Len+1)
		b[copy(b, s)] = 0
		r.Str = o.buf
	}
	o.r = r
	return nil
}

// OpDictGet is shm_op_dict_get: the value under key in the Dict id, read
// in a read-only transaction of its own (ErrNotFound if absent).
func (l *Lib) OpDictGet(h, id uint64, key *Value, timeoutMs int64, out *Value, buf unsafe.Pointer, capacity int64, e *Error) int32 {
	o := &outBuf{out: out, buf: buf, cap: capacity}
	return o.done(l.oneShot(h, true, false, timeoutMs, e, func(s *storeEntry, tx *shmstore.Tx) error {
		if err := o.check(); err != nil {
			return err
		}
		d, k, err := dictKey(s, tx, id, key)
		if err != nil {
			return err
		}
		v, err := d.Get(k)
		if err != nil {
			return err
		}
		return o.put(tx, v, false)
	}))
}

// dictKey opens the Dict id and converts the key passed in.
func dictKey(s *storeEntry, tx *shmstore.Tx, id uint64, key *Value) (shmstore.Dict, any, error) {
	k, err := inOnce(s, tx, key, "key")
	if err != nil {
		return shmstore.Dict{}, nil, err
	}
	d, err := openAs(tx, id, tx.Dict)
	return d, k, err
}

// openAs opens the container id of a one-shot call's transaction with as
// (Tx.Dict, Counter, Queue: ErrType for a container of another kind;
// ErrStale if the id names nothing).
func openAs[C any](tx *shmstore.Tx, id uint64, as func(shmstore.Value) (C, error)) (C, error) {
	v, err := tx.Open(id)
	if err != nil {
		var none C
		return none, err
	}
	return as(v)
}

// OpDictSet is shm_op_dict_set: key = val in the Dict id, in a
// transaction of its own (a container val by its id).
func (l *Lib) OpDictSet(h, id uint64, key, val *Value, timeoutMs int64, e *Error) int32 {
	return l.oneShot(h, false, false, timeoutMs, e, func(s *storeEntry, tx *shmstore.Tx) error {
		d, k, err := dictKey(s, tx, id, key)
		if err != nil {
			return err
		}
		v, err := inOnce(s, tx, val, "val")
		if err != nil {
			return err
		}
		return d.Set(k, v)
	})
}

// OpDictDelete is shm_op_dict_delete: key removed from the Dict id, in a
// transaction of its own (ErrNotFound if absent).
func (l *Lib) OpDictDelete(h, id uint64, key *Value, timeoutMs int64, e *Error) int32 {
	return l.oneShot(h, false, false, timeoutMs, e, func(s *storeEntry, tx *shmstore.Tx) error {
		d, k, err := dictKey(s, tx, id, key)
		if err != nil {
			return err
		}
		return d.Delete(k)
	})
}

// OpCounterGet is shm_op_counter_get: the Counter id's value, read in a
// read-only transaction of its own.
func (l *Lib) OpCounterGet(h, id uint64, timeoutMs int64, out *int64, e *Error) int32 {
	return l.oneShot(h, true, false, timeoutMs, e, func(_ *storeEntry, tx *shmstore.Tx) error {
		c, err := openAs(tx, id, tx.Counter)
		if err != nil {
			return err
		}
		return intOut(out, c.Get)
	})
}

// OpCounterAdd is shm_op_counter_add: n added to the Counter id in a
// transaction of its own; *out is the new value (a read: concurrent
// adds conflict and run again), or, with blind != 0, nothing is read
// (an add that never conflicts) and out may be nil.
func (l *Lib) OpCounterAdd(h, id uint64, n int64, blind int32, timeoutMs int64, out *int64, e *Error) int32 {
	return l.oneShot(h, false, false, timeoutMs, e, func(_ *storeEntry, tx *shmstore.Tx) error {
		c, err := openAs(tx, id, tx.Counter)
		switch {
		case err != nil:
			return err
		case blind != 0:
			return c.AddBlind(n)
		}
		return intOut(out, func() (int64, error) { return c.Add(n) })
	})
}

// OpQueuePut is shm_op_queue_put: val put at the end of the Queue id in a
// transaction of its own. While the Queue is full it waits for a get, at
// most timeoutMs milliseconds (then Timeout; negative: without limit; 0:
// it does not wait and returns False).
func (l *Lib) OpQueuePut(h, id uint64, val *Value, timeoutMs int64, e *Error) int32 {
	return l.oneShot(h, false, timeoutMs != 0, timeoutMs, e, func(s *storeEntry, tx *shmstore.Tx) error {
		v, err := inOnce(s, tx, val, "val")
		if err != nil {
			return err
		}
		q, err := openAs(tx, id, tx.Queue)
		if err != nil {
			return err
		}
		if timeoutMs != 0 {
			return q.Put(v)
		}
		if ok, err := q.TryPut(v); err != nil || ok {
			return err
		}
		return status(False)
	})
}

// OpQueueGet is shm_op_queue_get: the first item of the Queue id taken in
// a transaction of its own. While the Queue is empty it waits for a put,
// as OpQueuePut. A container item is not taken (it would be freed at
// commit): Short, with out's Kind the container's; the caller takes it in
// a transaction of its own, which can read it.
func (l *Lib) OpQueueGet(h, id uint64, timeoutMs int64, out *Value, buf unsafe.Pointer, capacity int64, e *Error) int32 {
	o := &outBuf{out: out, buf: buf, cap: capacity}
	return o.done(l.oneShot(h, false, timeoutMs != 0, timeoutMs, e, func(_ *storeEntry, tx *shmstore.Tx) error {
		if err := o.check(); err != nil {
			return err
		}
		q, err := openAs(tx, id, tx.Queue)
		if err != nil {
			return err
		}
		var v shmstore.Value
		if timeoutMs != 0 {
			v, err = q.Get()
		} else {
			var ok bool
			if v, ok, err = q.TryGet(); err == nil && !ok {
				err = status(False)
			}
		}
		if err != nil {
			return err
		}
		return o.put(tx, v, true)
	}))
}
