//go:build linux && (amd64 || arm64)

package abi_test

import (
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/shmstore/shmstore/bindings/capi/abi"
)

// objCall is a call of a function on an object of a transaction, with
// good other arguments (call) and with a NULL pointer argument (null;
// nil when it takes none).
type objCall struct {
	name       string
	kind       int32
	call, null func(l *abi.Lib, tx, o uint64, e *abi.Error) int32
}

var objCalls = func() []objCall {
	var v abi.Value
	var n int64
	var h uint64
	fields := []unsafe.Pointer{cs("a")}
	_ = fields
	return []objCall{
		{"shm_obj_id", -1,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.ObjID(tx, o, &h, e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.ObjID(tx, o, nil, e) }},
		{"shm_dict_get", abi.KindDict,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.DictGet(tx, o, str("k"), &v, e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.DictGet(tx, o, nil, &v, e) }},
		{"shm_dict_get out", abi.KindDict,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.DictGet(tx, o, str("k"), &v, e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.DictGet(tx, o, str("k"), nil, e) }},
		{"shm_dict_set", abi.KindDict,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.DictSet(tx, o, str("k"), num(1), e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.DictSet(tx, o, str("k"), nil, e) }},
		{"shm_dict_set key", abi.KindDict,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.DictSet(tx, o, str("k"), num(1), e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.DictSet(tx, o, nil, num(1), e) }},
		{"shm_dict_delete", abi.KindDict,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.DictDelete(tx, o, str("nope"), e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.DictDelete(tx, o, nil, e) }},
		{"shm_dict_len", abi.KindDict,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.DictLen(tx, o, &n, e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.DictLen(tx, o, nil, e) }},
		{"shm_dict_key", abi.KindDict,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.DictKey(tx, o, 0, &v, e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.DictKey(tx, o, 0, nil, e) }},
		{"shm_dict_container", abi.KindDict,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 {
				return l.DictContainer(tx, o, str("c"), abi.KindDict, 0, &h, e)
			},
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 {
				return l.DictContainer(tx, o, str("c"), abi.KindDict, 0, nil, e)
			}},
		{"shm_list_len", abi.KindList,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.ListLen(tx, o, &n, e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.ListLen(tx, o, nil, e) }},
		{"shm_list_get", abi.KindList,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.ListGet(tx, o, 0, &v, e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.ListGet(tx, o, 0, nil, e) }},
		{"shm_list_set", abi.KindList,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.ListSet(tx, o, 0, num(1), e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.ListSet(tx, o, 0, nil, e) }},
		{"shm_list_insert", abi.KindList,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.ListInsert(tx, o, 0, num(1), e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.ListInsert(tx, o, 0, nil, e) }},
		{"shm_list_delete", abi.KindList,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.ListDelete(tx, o, 0, e) }, nil},
		{"shm_list_append", abi.KindList,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.ListAppend(tx, o, num(1), e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.ListAppend(tx, o, nil, e) }},
		{"shm_list_prepend", abi.KindList,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.ListPrepend(tx, o, num(1), e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.ListPrepend(tx, o, nil, e) }},
		{"shm_list_pop", abi.KindList,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.ListPop(tx, o, 1, &v, e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.ListPop(tx, o, 1, nil, e) }},
		{"shm_record_class", abi.KindRecord,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.RecordClass(tx, o, &v, e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.RecordClass(tx, o, nil, e) }},
		{"shm_record_nfields", abi.KindRecord,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.RecordNFields(tx, o, &n, e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.RecordNFields(tx, o, nil, e) }},
		{"shm_record_field", abi.KindRecord,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.RecordField(tx, o, 0, &v, e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.RecordField(tx, o, 0, nil, e) }},
		{"shm_record_get", abi.KindRecord,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.RecordGet(tx, o, cs("a"), &v, e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.RecordGet(tx, o, nil, &v, e) }},
		{"shm_record_get out", abi.KindRecord,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.RecordGet(tx, o, cs("a"), &v, e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.RecordGet(tx, o, cs("a"), nil, e) }},
		{"shm_record_set", abi.KindRecord,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.RecordSet(tx, o, cs("a"), num(1), e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.RecordSet(tx, o, nil, num(1), e) }},
		{"shm_record_set val", abi.KindRecord,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.RecordSet(tx, o, cs("a"), num(1), e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.RecordSet(tx, o, cs("a"), nil, e) }},
		{"shm_counter_get", abi.KindCounter,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.CounterGet(tx, o, &n, e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.CounterGet(tx, o, nil, e) }},
		{"shm_counter_add", abi.KindCounter,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.CounterAdd(tx, o, 1, &n, e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.CounterAdd(tx, o, 1, nil, e) }},
		{"shm_counter_add_blind", abi.KindCounter,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.CounterAddBlind(tx, o, 1, e) }, nil},
		{"shm_queue_put", abi.KindQueue,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.QueuePut(tx, o, num(1), 1, e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.QueuePut(tx, o, nil, 1, e) }},
		{"shm_queue_get", abi.KindQueue,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.QueueGet(tx, o, 1, &v, e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.QueueGet(tx, o, 1, nil, e) }},
		{"shm_queue_peek", abi.KindQueue,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.QueuePeek(tx, o, 0, &v, e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.QueuePeek(tx, o, 0, nil, e) }},
		{"shm_queue_len", abi.KindQueue,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.QueueLen(tx, o, &n, e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.QueueLen(tx, o, nil, e) }},
		{"shm_queue_cap", abi.KindQueue,
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.QueueCap(tx, o, &n, e) },
			func(l *abi.Lib, tx, o uint64, e *abi.Error) int32 { return l.QueueCap(tx, o, nil, e) }},
	}
}()

// txCalls are the calls on a transaction without an object, the same way.
var txCalls = func() []struct {
	name       string
	call, null func(l *abi.Lib, tx uint64, e *abi.Error) int32
} {
	var v abi.Value
	var n int64
	var h uint64
	fields := []unsafe.Pointer{cs("a"), cs("b")}
	return []struct {
		name       string
		call, null func(l *abi.Lib, tx uint64, e *abi.Error) int32
	}{
		{"shm_tx_retry", func(l *abi.Lib, tx uint64, e *abi.Error) int32 { return l.TxRetry(tx, e) }, nil},
		{"shm_tx_or_else_begin",
			func(l *abi.Lib, tx uint64, e *abi.Error) int32 { return l.TxOrElseBegin(tx, &n, e) },
			func(l *abi.Lib, tx uint64, e *abi.Error) int32 { return l.TxOrElseBegin(tx, nil, e) }},
		{"shm_tx_or_else_retried", func(l *abi.Lib, tx uint64, e *abi.Error) int32 { return l.TxOrElseRetried(tx, 0, e) }, nil},
		{"shm_tx_root",
			func(l *abi.Lib, tx uint64, e *abi.Error) int32 { return l.TxRoot(tx, &h, e) },
			func(l *abi.Lib, tx uint64, e *abi.Error) int32 { return l.TxRoot(tx, nil, e) }},
		{"shm_tx_open",
			func(l *abi.Lib, tx uint64, e *abi.Error) int32 { return l.TxOpen(tx, 12345, &v, e) },
			func(l *abi.Lib, tx uint64, e *abi.Error) int32 { return l.TxOpen(tx, 12345, nil, e) }},
		{"shm_tx_new",
			func(l *abi.Lib, tx uint64, e *abi.Error) int32 { return l.TxNew(tx, abi.KindDict, 0, &h, e) },
			func(l *abi.Lib, tx uint64, e *abi.Error) int32 { return l.TxNew(tx, abi.KindDict, 0, nil, e) }},
		{"shm_tx_new_record",
			func(l *abi.Lib, tx uint64, e *abi.Error) int32 {
				return l.TxNewRecord(tx, cs("C"), unsafe.Pointer(&fields[0]), 2, &h, e)
			},
			func(l *abi.Lib, tx uint64, e *abi.Error) int32 {
				return l.TxNewRecord(tx, cs("C"), unsafe.Pointer(&fields[0]), 2, nil, e)
			}},
		{"shm_tx_new_record cls",
			func(l *abi.Lib, tx uint64, e *abi.Error) int32 {
				return l.TxNewRecord(tx, cs("C"), unsafe.Pointer(&fields[0]), 2, &h, e)
			},
			func(l *abi.Lib, tx uint64, e *abi.Error) int32 {
				return l.TxNewRecord(tx, nil, unsafe.Pointer(&fields[0]), 2, &h, e)
			}},
		{"shm_tx_new_record fields",
			func(l *abi.Lib, tx uint64, e *abi.Error) int32 {
				return l.TxNewRecord(tx, cs("C"), unsafe.Pointer(&fields[0]), 2, &h, e)
			},
			func(l *abi.Lib, tx uint64, e *abi.Error) int32 { return l.TxNewRecord(tx, cs("C"), nil, 2, &h, e) }},
	}
}()

// objects makes one object of each kind in a running attempt of tx.
func (en *env) objects(tx uint64) map[int32]uint64 {
	en.t.Helper()
	l := en.l
	m := map[int32]uint64{abi.KindDict: en.root(tx)}
	for _, k := range []int32{abi.KindList, abi.KindCounter, abi.KindQueue} {
		var h uint64
		en.ok(l.TxNew(tx, k, 4, &h, en.e()))
		m[k] = h
	}
	var h uint64
	fields := []unsafe.Pointer{cs("a"), cs("b")}
	en.ok(l.TxNewRecord(tx, cs("C"), unsafe.Pointer(&fields[0]), 2, &h, en.e()))
	m[abi.KindRecord] = h
	return m
}

// TestEveryCallChecksItsArguments calls every function on a transaction
// or its objects with bad handles, stale ones, objects of another kind,
// NULL pointers, and in a forked child.
func TestEveryCallChecksItsArguments(t *testing.T) {
	en := newEnv(t)
	l := en.l
	tx := en.begin(0)
	objs := en.objects(tx)
	other := en.begin(0)
	otherRoot := en.root(other)

	for _, c := range objCalls {
		t.Run(c.name, func(t *testing.T) {
			en.t = t
			o := objs[c.kind]
			if c.kind < 0 {
				o = objs[abi.KindDict]
			}
			if rc := c.call(l, tx, o, en.e()); rc < 0 && rc != abi.ErrRange && rc != abi.ErrNotFound && rc != abi.ErrRetry {
				t.Fatalf("good call: %s (%s)", abi.CodeName(rc), lastErr.Message())
			}
			en.is(c.call(l, 0, o, en.e()), abi.ErrBadArg)
			en.is(c.call(l, en.st, o, en.e()), abi.ErrBadArg)       // a store handle
			en.is(c.call(l, 1<<61|1<<40, o, en.e()), abi.ErrBadArg) // forged
			en.is(c.call(l, tx, 0, en.e()), abi.ErrBadArg)
			en.is(c.call(l, tx, tx, en.e()), abi.ErrBadArg)          // a transaction handle
			en.is(c.call(l, tx, o|0xff_ff00, en.e()), abi.ErrBadArg) // no such index
			en.is(c.call(l, tx, otherRoot, en.e()), abi.ErrTxClosed) // another transaction's
			en.is(c.call(l, tx, o+1<<24, en.e()), abi.ErrTxClosed)   // another attempt's
			if c.kind >= 0 {
				wrong := objs[abi.KindDict]
				if c.kind == abi.KindDict {
					wrong = objs[abi.KindList]
				}
				en.is(c.call(l, tx, wrong, en.e()), abi.ErrType)
			}
			if c.null != nil {
				en.is(c.null(l, tx, o, en.e()), abi.ErrBadArg)
			}
			l.SetPid(1)
			en.is(c.call(l, tx, o, en.e()), abi.ErrForked)
			l.SetPid(pid)
		})
	}
	for _, c := range txCalls {
		t.Run(c.name, func(t *testing.T) {
			en.t = t
			en.is(c.call(l, 0, en.e()), abi.ErrBadArg)
			en.is(c.call(l, en.st, en.e()), abi.ErrBadArg)
			en.is(c.call(l, objs[abi.KindDict], en.e()), abi.ErrBadArg)
			if c.null != nil {
				en.is(c.null(l, tx, en.e()), abi.ErrBadArg)
			}
			l.SetPid(1)
			en.is(c.call(l, tx, en.e()), abi.ErrForked)
			l.SetPid(pid)
		})
	}
	en.t = t
	en.ok(l.TxRollback(other))

	// After the attempt: every object call says TX_CLOSED, every
	// transaction call too (the attempt must be restarted first).
	if rc := l.TxEnd(tx, abi.ErrConflict, en.e()); rc != abi.Again {
		t.Fatalf("end: %s", abi.CodeName(rc))
	}
	for _, c := range objCalls {
		en.is(c.call(l, tx, objs[max(c.kind, abi.KindDict)], en.e()), abi.ErrTxClosed)
	}
	for _, c := range txCalls {
		en.is(c.call(l, tx, en.e()), abi.ErrTxClosed)
	}
	en.ok(l.TxRestart(tx, 1000, en.e()))
	for _, c := range objCalls {
		en.is(c.call(l, tx, objs[max(c.kind, abi.KindDict)], en.e()), abi.ErrTxClosed) // the old attempt's
	}
	en.ok(l.TxRollback(tx))
	// After the transaction.
	for _, c := range objCalls {
		en.is(c.call(l, tx, objs[max(c.kind, abi.KindDict)], en.e()), abi.ErrTxClosed)
	}
	for _, c := range txCalls {
		en.is(c.call(l, tx, en.e()), abi.ErrTxClosed)
	}
	en.is(l.TxEnd(tx, abi.OK, en.e()), abi.ErrTxClosed)
	en.is(l.TxRestart(tx, 0, en.e()), abi.ErrTxClosed)
	en.ok(l.TxRollback(tx))

	// The store and handle-less calls in a forked child.
	l.SetPid(1)
	var h uint64
	var n, m int64
	buf := make([]byte, 8)
	en.is(l.Open(cs("t"), en.opts(0), &h, en.e()), abi.ErrForked)
	en.is(l.Close(en.st, en.e()), abi.ErrForked)
	en.is(l.Remove(cs("t"), cs(en.dir), 0, en.e()), abi.ErrForked)
	en.is(l.Check(en.st, en.e()), abi.ErrForked)
	en.is(l.Recover(en.st, &n, en.e()), abi.ErrForked)
	en.is(l.StorePath(en.st, unsafe.Pointer(&buf[0]), 8, en.e()), abi.ErrForked)
	en.is(l.StoreStats(en.st, &n, &m, en.e()), abi.ErrForked)
	en.is(l.TxBegin(en.st, 0, &h, en.e()), abi.ErrForked)
	en.is(l.TxBeginTimeout(en.st, 0, 10, &h, en.e()), abi.ErrForked)
	en.is(l.TxEnd(tx, 0, en.e()), abi.ErrForked)
	en.is(l.TxRestart(tx, 0, en.e()), abi.ErrForked)
	if rc := l.TxRollback(tx); rc != abi.ErrForked {
		t.Fatalf("rollback in a forked child: %s", abi.CodeName(rc))
	}
	l.SetPid(pid)
}

// TestForkedHook: with Config.Forked, a Lib asks it instead of getpid(2):
// once it says so, every call answers ErrForked.
func TestForkedHook(t *testing.T) {
	var child atomic.Bool
	en := newEnvConfig(t, abi.Config{Forked: child.Load})
	l := en.l
	var tx uint64
	var n int64
	en.ok(l.TxBegin(en.st, 0, &tx, en.e()))
	en.ok(l.TxRollback(tx))
	child.Store(true)
	en.is(l.TxBegin(en.st, 0, &tx, en.e()), abi.ErrForked)
	en.is(l.Recover(en.st, &n, en.e()), abi.ErrForked)
	en.is(l.OpCounterGet(en.st, 1, -1, &n, en.e()), abi.ErrForked)
	en.is(l.Close(en.st, en.e()), abi.ErrForked)
	child.Store(false)
}
