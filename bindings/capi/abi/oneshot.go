//go:build linux && (amd64 || arm64)

package abi

import (
	"context"
	"errors"
	"unsafe"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/objects"
)

// One-shot operations (shm_op_*): one operation in a transaction of its
// own, run by one call, with the retry loop inside (objects.Space.Run,
// as under Store.Update or View: nothing of the caller's is called back,
// so nothing stops it from running here). A caller outside a transaction makes one call where the
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
// fn runs on the object space under the root package (objects.Tx), not
// on a shmstore.Tx: a one-shot call hands nothing of its transaction out,
// so it needs none of the root package's guards (the Tx, Dict and Value
// wrappers that refuse use after the attempt), and those cost a new Tx
// per run, a boxed key and value, a *Dict per open and a second resolve
// of the container (Tx.Open then Tx.Dict): some 5 allocations of a get's
// 6. The objects.Tx is the slot's own, reused by every transaction, and
// fn keeps what it opens on its stack (objects.Tx.OpenDict), so a get or
// set of a scalar allocates nothing. The errors are the same values and
// messages: the root package passes those of package objects on as they
// are.
//
// The context that bounds a wait costs more than a get (the engine's
// watch on it; a timer of its own: some 1.4 us), so it is made only when
// a wait can happen: when fn may retry, or when the transactions under
// way through the store handle, this one with them, are more than the
// process's slots.
func (l *Lib) oneShot(h uint64, readOnly, retries bool, timeoutMs int64, e *Error, fn func(s *storeEntry, tx *objects.Tx) error) int32 {
	return l.withStore(h, e, func(s *storeEntry) error {
		return l.runOnce(s, readOnly, retries, timeoutMs, fn)
	})
}

// runOnce is oneShot's transaction, on a store already held.
func (l *Lib) runOnce(s *storeEntry, readOnly, retries bool, timeoutMs int64, fn func(s *storeEntry, tx *objects.Tx) error) error {
	if s.sp == nil {
		// Opened read-only (for Stats and Check): the root package
		// refuses every transaction, with its message.
		return s.st.View(func(*shmstore.Tx) error { return nil })
	}
	n := s.running.Add(1)
	defer s.running.Add(-1)
	ctx := context.Background()
	if timeoutMs >= 0 && (retries || n > s.slots) {
		var done func()
		ctx, done = l.waitContext(timeoutMs)
		defer done()
	}
	return s.sp.Run(ctx, readOnly, func(tx *objects.Tx) error { return fn(s, tx) })
}

// kindOf is the ABI kind of a value read in tx (KindQueue for a List
// made as a Queue), as Tx.Open's callers see it (see objKind).
func kindOf(tx *objects.Tx, v objects.Value) (int32, error) {
	k := int32(v.Kind())
	if k != KindList {
		return k, nil
	}
	if _, err := tx.QueueOf(v); err == nil {
		return KindQueue, nil
	} else if !errors.Is(err, objects.ErrTypeMismatch) {
		return 0, err
	}
	return KindList, nil
}

// inOnce converts a value passed to a one-shot call, as txEntry.in does
// for the root package: a scalar into an objects.Value (view: a String
// left in the caller's memory, see valueIn), a container by its id in
// v.Obj, opened in tx.
func inOnce(s *storeEntry, tx *objects.Tx, v *Value, what string, view bool) (objects.Value, error) {
	x, container, err := valueIn(v, what, s.maxValue, view)
	if !container || err != nil {
		return x, err
	}
	c, err := tx.Open(v.Obj)
	if err != nil {
		return objects.None, err
	}
	k, err := kindOf(tx, c)
	if err != nil {
		return objects.None, err
	}
	if err := kindIs(what, v, k); err != nil {
		return objects.None, err
	}
	return c, nil
}

// outBuf is where a one-shot call puts a value it passes out: the
// caller's buffer for a String or Bytes, and the value of the last run,
// which done writes into the caller's Value once the call succeeded (or
// returns Short). The caller's Value is not kept here but passed to check
// and done: escape analysis does not tell fields apart, and r points at
// buf, so an out kept beside them would escape to the heap with buf
// (an allocation per call for a Go caller's Value).
type outBuf struct {
	buf unsafe.Pointer
	cap int64
	r   Value // the value of the last run
}

// done writes the last run's value into out if rc says so, and returns
// rc.
func (o *outBuf) done(out *Value, rc int32) int32 {
	if rc == OK || rc == Short {
		*out = o.r
	}
	return rc
}

// check checks the caller's pointers.
func (o *outBuf) check(out *Value) error {
	switch {
	case out == nil:
		return badArg("out is NULL")
	case o.cap < 0 || o.cap > 0 && o.buf == nil:
		// buf as a number (%#x prints what %p did): a pointer passed
		// to fmt would make the caller's buf escape.
		return badArg("buf of capacity %d at %#x", o.cap, uintptr(o.buf))
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
func (o *outBuf) put(tx *objects.Tx, v objects.Value, taken bool) error {
	var r Value
	if s, scalar := valueOut(v, &r); scalar {
		return o.putOut(r, s)
	}
	k, err := kindOf(tx, v)
	if err != nil {
		return err
	}
	r.Kind = k
	if taken {
		o.r = r
		return status(Short)
	}
	r.Obj = uint64(v.Handle())
	o.r = r
	return nil
}

// putScalar is put of a scalar v read optimistically.
func (o *outBuf) putScalar(v objects.Value) error {
	var r Value
	s, _ := valueOut(v, &r)
	return o.putOut(r, s)
}

// putOut keeps the scalar r (valueOut's), with s, its String or Bytes,
// copied into the buffer.
func (o *outBuf) putOut(r Value, s string) error {
	switch {
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
//
// A scalar, or the absence of the key, is read optimistically first
// (objects.Space.PeekDict: no transaction slot, nothing written to
// shared memory); what that read cannot answer (a container, a stripe
// being written, a bad argument) goes to the transaction, which answers
// it.
func (l *Lib) OpDictGet(h, id uint64, key *Value, timeoutMs int64, out *Value, buf unsafe.Pointer, capacity int64, e *Error) int32 {
	o := outBuf{buf: buf, cap: capacity}
	return o.done(out, l.withStore(h, e, func(s *storeEntry) error {
		if s.sp != nil && o.check(out) == nil {
			// The key is only looked up, in this call: it can stay
			// in the caller's memory (view). Every error, a read-only
			// store's first, comes from the transaction's path.
			if k, container, err := valueIn(key, "key", s.maxValue, true); err == nil && !container {
				if v, ok, err := s.sp.PeekDict(handle.Handle(id), k); ok {
					if err != nil {
						return err // the key is missing
					}
					return o.putScalar(v)
				}
			}
		}
		return l.runOnce(s, true, false, timeoutMs, func(s *storeEntry, tx *objects.Tx) error {
			if err := o.check(out); err != nil {
				return err
			}
			// As above: a read-only transaction remembers no key.
			d, k, err := dictKey(s, tx, id, key, true)
			if err != nil {
				return err
			}
			v, err := d.GetKey(k)
			if err != nil {
				return err
			}
			return o.put(tx, v, false)
		})
	}))
}

// dictKey converts the key passed in (view: see valueIn), then opens the
// Dict id (one resolve of its handle; the Dict on the caller's stack).
// A key that cannot be one (a Float, a container) is refused by the
// Dict's method, after the open, as the root package's Dict does.
func dictKey(s *storeEntry, tx *objects.Tx, id uint64, key *Value, view bool) (objects.Dict, objects.Value, error) {
	k, err := inOnce(s, tx, key, "key", view)
	if err != nil {
		return objects.Dict{}, objects.None, err
	}
	d, err := tx.OpenDict(id)
	return d, k, err
}

// openAs opens the container id of a one-shot call's transaction with as
// (objects.Tx.QueueOf: ErrType for a container of another kind; ErrStale
// if the id names nothing).
func openAs[C any](tx *objects.Tx, id uint64, as func(objects.Value) (C, error)) (C, error) {
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
	return l.oneShot(h, false, false, timeoutMs, e, func(s *storeEntry, tx *objects.Tx) error {
		// Key and value are copied into Go memory: the transaction
		// keeps them until its commit writes them into the store, and
		// a key's bytes must stay those its hash was taken of.
		d, k, err := dictKey(s, tx, id, key, false)
		if err != nil {
			return err
		}
		v, err := inOnce(s, tx, val, "val", false)
		if err != nil {
			return err
		}
		// The one-shot's only write: a scalar over a scalar or a new key
		// is made without an overlay; a container (checked to be of this
		// store), or a scalar over one, goes through SetKey's or
		// SetScalar's.
		return d.SetLast(k, v)
	})
}

// OpDictDelete is shm_op_dict_delete: key removed from the Dict id, in a
// transaction of its own (ErrNotFound if absent).
func (l *Lib) OpDictDelete(h, id uint64, key *Value, timeoutMs int64, e *Error) int32 {
	return l.oneShot(h, false, false, timeoutMs, e, func(s *storeEntry, tx *objects.Tx) error {
		d, k, err := dictKey(s, tx, id, key, false) // kept till commit: copied
		if err != nil {
			return err
		}
		return d.DeleteLast(k) // the one write: without an overlay if k holds a scalar
	})
}

// OpCounterGet is shm_op_counter_get: the Counter id's value, read in a
// read-only transaction of its own.
func (l *Lib) OpCounterGet(h, id uint64, timeoutMs int64, out *int64, e *Error) int32 {
	return l.oneShot(h, true, false, timeoutMs, e, func(_ *storeEntry, tx *objects.Tx) error {
		c, err := tx.OpenCounter(id) // one resolve; c on the stack
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
	return l.oneShot(h, false, false, timeoutMs, e, func(_ *storeEntry, tx *objects.Tx) error {
		c, err := tx.OpenCounter(id) // one resolve; c on the stack
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
// it does not wait and returns False). As shmstore.Queue.Put and TryPut.
func (l *Lib) OpQueuePut(h, id uint64, val *Value, timeoutMs int64, e *Error) int32 {
	return l.oneShot(h, false, timeoutMs != 0, timeoutMs, e, func(s *storeEntry, tx *objects.Tx) error {
		v, err := inOnce(s, tx, val, "val", false)
		if err != nil {
			return err
		}
		q, err := openAs(tx, id, tx.QueueOf)
		if err != nil {
			return err
		}
		switch ok, err := q.TryPut(v); {
		case err != nil || ok:
			return err
		case timeoutMs != 0:
			return tx.Retry() // full: wait for a get
		}
		return status(False)
	})
}

// OpQueueGet is shm_op_queue_get: the first item of the Queue id taken in
// a transaction of its own. While the Queue is empty it waits for a put,
// as OpQueuePut. A container item is not taken (it would be freed at
// commit): Short, with out's Kind the container's; the caller takes it in
// a transaction of its own, which can read it. As shmstore.Queue.Get and
// TryGet.
func (l *Lib) OpQueueGet(h, id uint64, timeoutMs int64, out *Value, buf unsafe.Pointer, capacity int64, e *Error) int32 {
	o := outBuf{buf: buf, cap: capacity}
	return o.done(out, l.oneShot(h, false, timeoutMs != 0, timeoutMs, e, func(_ *storeEntry, tx *objects.Tx) error {
		if err := o.check(out); err != nil {
			return err
		}
		q, err := openAs(tx, id, tx.QueueOf)
		if err != nil {
			return err
		}
		v, ok, err := q.TryGet()
		switch {
		case err != nil:
			return err
		case !ok && timeoutMs != 0:
			return tx.Retry() // empty: wait for a put
		case !ok:
			return status(False)
		}
		return o.put(tx, v, true)
	}))
}
