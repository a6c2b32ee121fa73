//go:build linux && (amd64 || arm64)

package abi

import (
	"unsafe"

	"github.com/shmstore/shmstore"
)

// Dicts.

// DictGet is shm_dict_get: the value under key (ErrNotFound if absent).
func (l *Lib) DictGet(h, d uint64, key, out *Value, e *Error) int32 {
	return l.withObj(h, d, KindDict, e, func(t *txEntry, o *object) error {
		k, err := t.in(key, "key")
		if err != nil {
			return err
		}
		return t.valueOut(out, func() (shmstore.Value, error) { return o.d.Get(k) })
	})
}

// DictSet is shm_dict_set.
func (l *Lib) DictSet(h, d uint64, key, val *Value, e *Error) int32 {
	return l.withObj(h, d, KindDict, e, func(t *txEntry, o *object) error {
		k, err := t.in(key, "key")
		if err != nil {
			return err
		}
		v, err := t.in(val, "val")
		if err != nil {
			return err
		}
		return o.d.Set(k, v)
	})
}

// DictDelete is shm_dict_delete (ErrNotFound if absent).
func (l *Lib) DictDelete(h, d uint64, key *Value, e *Error) int32 {
	return l.withObj(h, d, KindDict, e, func(t *txEntry, o *object) error {
		k, err := t.in(key, "key")
		if err != nil {
			return err
		}
		return o.d.Delete(k)
	})
}

// DictLen is shm_dict_len.
func (l *Lib) DictLen(h, d uint64, out *int64, e *Error) int32 {
	return l.withObj(h, d, KindDict, e, func(t *txEntry, o *object) error {
		return intOut(out, o.d.Len)
	})
}

// DictKey is shm_dict_key: the i-th key of a snapshot of the Dict's keys
// taken at i == 0 (or at the first call on this object of the attempt),
// kept with the object until the next i == 0; ErrRange past the end.
func (l *Lib) DictKey(h, d uint64, i int64, out *Value, e *Error) int32 {
	return l.withObj(h, d, KindDict, e, func(t *txEntry, o *object) error {
		if err := need(out, "out"); err != nil {
			return err
		}
		if i == 0 || !o.haveKeys {
			ks, err := o.d.Keys()
			if err != nil {
				return err
			}
			o.keys, o.haveKeys = ks, true
		}
		if i < 0 || i >= int64(len(o.keys)) {
			return failf(ErrRange, "shmstore: key %d of a snapshot of %d", i, len(o.keys))
		}
		return t.out(o.keys[i], out)
	})
}

// DictContainer is shm_dict_container: the container under key, made
// (empty; a Queue of at most capacity items) if key is absent.
func (l *Lib) DictContainer(h, d uint64, key *Value, kind int32, capacity int64, out *uint64, e *Error) int32 {
	return l.withObj(h, d, KindDict, e, func(t *txEntry, o *object) error {
		k, err := t.in(key, "key")
		if err != nil {
			return err
		}
		if err := need(out, "out"); err != nil {
			return err
		}
		c := &object{kind: kind}
		switch kind {
		case KindDict:
			c.d, err = o.d.Dict(k)
			c.v = c.d.Value()
		case KindList:
			c.l, err = o.d.List(k)
			c.v = c.l.Value()
		case KindCounter:
			c.c, err = o.d.Counter(k)
			c.v = c.c.Value()
		case KindQueue:
			if capacity < 0 || capacity > maxQueueCap {
				return badArg("queue capacity %d: want 0 (unbounded) to 2^31", capacity)
			}
			c.q, err = o.d.Queue(k, int(capacity))
			c.v = c.q.Value()
		default:
			return badArg("shm_dict_container: kind %d is not DICT, LIST, COUNTER or QUEUE", kind)
		}
		if err != nil {
			return err
		}
		return t.addOut(c, out)
	})
}

// Lists.

// ListLen is shm_list_len.
func (l *Lib) ListLen(h, lh uint64, out *int64, e *Error) int32 {
	return l.withObj(h, lh, KindList, e, func(t *txEntry, o *object) error {
		return intOut(out, o.l.Len)
	})
}

// ListGet is shm_list_get (negative i counts from the end).
func (l *Lib) ListGet(h, lh uint64, i int64, out *Value, e *Error) int32 {
	return l.withObj(h, lh, KindList, e, func(t *txEntry, o *object) error {
		return t.valueOut(out, func() (shmstore.Value, error) { return o.l.Get(int(i)) })
	})
}

// ListSet is shm_list_set.
func (l *Lib) ListSet(h, lh uint64, i int64, val *Value, e *Error) int32 {
	return l.withObj(h, lh, KindList, e, func(t *txEntry, o *object) error {
		v, err := t.in(val, "val")
		if err != nil {
			return err
		}
		return o.l.Set(int(i), v)
	})
}

// ListInsert is shm_list_insert (before item i; i == len appends).
func (l *Lib) ListInsert(h, lh uint64, i int64, val *Value, e *Error) int32 {
	return l.withObj(h, lh, KindList, e, func(t *txEntry, o *object) error {
		v, err := t.in(val, "val")
		if err != nil {
			return err
		}
		return o.l.Insert(int(i), v)
	})
}

// ListDelete is shm_list_delete.
func (l *Lib) ListDelete(h, lh uint64, i int64, e *Error) int32 {
	return l.withObj(h, lh, KindList, e, func(t *txEntry, o *object) error { return o.l.Delete(int(i)) })
}

// ListAppend is shm_list_append.
func (l *Lib) ListAppend(h, lh uint64, val *Value, e *Error) int32 {
	return l.withObj(h, lh, KindList, e, func(t *txEntry, o *object) error {
		v, err := t.in(val, "val")
		if err != nil {
			return err
		}
		return o.l.Append(v)
	})
}

// ListPrepend is shm_list_prepend.
func (l *Lib) ListPrepend(h, lh uint64, val *Value, e *Error) int32 {
	return l.withObj(h, lh, KindList, e, func(t *txEntry, o *object) error {
		v, err := t.in(val, "val")
		if err != nil {
			return err
		}
		return o.l.Prepend(v)
	})
}

// ListPop is shm_list_pop: the last item removed (front != 0: the first);
// ErrRange when the List is empty.
func (l *Lib) ListPop(h, lh uint64, front int32, out *Value, e *Error) int32 {
	return l.withObj(h, lh, KindList, e, func(t *txEntry, o *object) error {
		if front != 0 {
			return t.valueOut(out, o.l.PopFront)
		}
		return t.valueOut(out, o.l.Pop)
	})
}

// Records.

// RecordClass is shm_record_class: the class name, a String.
func (l *Lib) RecordClass(h, r uint64, out *Value, e *Error) int32 {
	return l.withObj(h, r, KindRecord, e, func(t *txEntry, o *object) error {
		if err := need(out, "out"); err != nil {
			return err
		}
		return t.outString(o.r.Class(), out)
	})
}

// RecordNFields is shm_record_nfields.
func (l *Lib) RecordNFields(h, r uint64, out *int64, e *Error) int32 {
	return l.withObj(h, r, KindRecord, e, func(t *txEntry, o *object) error {
		return intOut(out, func() (int, error) { return len(o.r.Fields()), nil })
	})
}

// RecordField is shm_record_field: the i-th field's name, a String
// (ErrRange outside the fields).
func (l *Lib) RecordField(h, r uint64, i int64, out *Value, e *Error) int32 {
	return l.withObj(h, r, KindRecord, e, func(t *txEntry, o *object) error {
		if err := need(out, "out"); err != nil {
			return err
		}
		fs := o.r.Fields()
		if i < 0 || i >= int64(len(fs)) {
			return failf(ErrRange, "shmstore: field %d of a Record of %d", i, len(fs))
		}
		return t.outString(fs[i], out)
	})
}

// RecordGet is shm_record_get: field a NUL-terminated name (ErrNotFound
// if the class has no such field).
func (l *Lib) RecordGet(h, r uint64, field unsafe.Pointer, out *Value, e *Error) int32 {
	return l.withObj(h, r, KindRecord, e, func(t *txEntry, o *object) error {
		f, err := cstring(field, "field")
		if err != nil {
			return err
		}
		return t.valueOut(out, func() (shmstore.Value, error) { return o.r.Get(f) })
	})
}

// RecordSet is shm_record_set.
func (l *Lib) RecordSet(h, r uint64, field unsafe.Pointer, val *Value, e *Error) int32 {
	return l.withObj(h, r, KindRecord, e, func(t *txEntry, o *object) error {
		f, err := cstring(field, "field")
		if err != nil {
			return err
		}
		v, err := t.in(val, "val")
		if err != nil {
			return err
		}
		return o.r.Set(f, v)
	})
}

// Counters.

// CounterGet is shm_counter_get.
func (l *Lib) CounterGet(h, c uint64, out *int64, e *Error) int32 {
	return l.withObj(h, c, KindCounter, e, func(t *txEntry, o *object) error {
		return intOut(out, o.c.Get)
	})
}

// CounterAdd is shm_counter_add: *out is the new value (a read).
func (l *Lib) CounterAdd(h, c uint64, n int64, out *int64, e *Error) int32 {
	return l.withObj(h, c, KindCounter, e, func(t *txEntry, o *object) error {
		return intOut(out, func() (int64, error) { return o.c.Add(n) })
	})
}

// CounterAddBlind is shm_counter_add_blind: an add at commit that never
// conflicts.
func (l *Lib) CounterAddBlind(h, c uint64, n int64, e *Error) int32 {
	return l.withObj(h, c, KindCounter, e, func(t *txEntry, o *object) error { return o.c.AddBlind(n) })
}

// Queues.

// QueuePut is shm_queue_put: ErrRetry while the Queue is full (the
// transaction waits for a Get), or False with tryOnly.
func (l *Lib) QueuePut(h, q uint64, val *Value, tryOnly int32, e *Error) int32 {
	return l.withObj(h, q, KindQueue, e, func(t *txEntry, o *object) error {
		v, err := t.in(val, "val")
		if err != nil {
			return err
		}
		if tryOnly == 0 {
			return o.q.Put(v)
		}
		ok, err := o.q.TryPut(v)
		if err == nil && !ok {
			return status(False)
		}
		return err
	})
}

// QueueGet is shm_queue_get: the first item removed; ErrRetry while the
// Queue is empty (the transaction waits for a Put), or False with
// tryOnly.
func (l *Lib) QueueGet(h, q uint64, tryOnly int32, out *Value, e *Error) int32 {
	return l.withObj(h, q, KindQueue, e, func(t *txEntry, o *object) error {
		if tryOnly == 0 {
			return t.valueOut(out, o.q.Get)
		}
		return t.valueOut(out, func() (shmstore.Value, error) {
			v, ok, err := o.q.TryGet()
			if err == nil && !ok {
				err = status(False)
			}
			return v, err
		})
	})
}

// QueuePeek is shm_queue_peek: item i (0: the one the next Get takes;
// negative counts from the end) without taking it; ErrRange outside the
// Queue. It reads the Queue through its List: a Queue is a List made as a
// Queue.
func (l *Lib) QueuePeek(h, q uint64, i int64, out *Value, e *Error) int32 {
	return l.withObj(h, q, KindQueue, e, func(t *txEntry, o *object) error {
		return t.valueOut(out, func() (shmstore.Value, error) {
			ls, err := t.tx.List(o.v)
			if err != nil {
				return shmstore.None, err
			}
			return ls.Get(int(i))
		})
	})
}

// QueueLen is shm_queue_len.
func (l *Lib) QueueLen(h, q uint64, out *int64, e *Error) int32 {
	return l.withObj(h, q, KindQueue, e, func(t *txEntry, o *object) error {
		return intOut(out, o.q.Len)
	})
}

// QueueCap is shm_queue_cap: its bound (0: unbounded).
func (l *Lib) QueueCap(h, q uint64, out *int64, e *Error) int32 {
	return l.withObj(h, q, KindQueue, e, func(t *txEntry, o *object) error {
		return intOut(out, func() (int, error) { return o.q.Cap(), nil })
	})
}
