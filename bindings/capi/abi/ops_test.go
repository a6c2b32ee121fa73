//go:build linux && (amd64 || arm64)

package abi_test

import (
	"math"
	"strings"
	"testing"
	"unsafe"

	"github.com/shmstore/shmstore/bindings/capi/abi"
)

func TestValuesRoundTrip(t *testing.T) {
	en := newEnv(t)
	l := en.l
	vals := []*abi.Value{
		none(), boo(true), boo(false), num(math.MinInt64), num(7), flt(-2.5), flt(math.Inf(1)),
		str(""), str("héllo"), str("a\x00b"), str("\xff\xfe not UTF-8"), byt(nil), byt([]byte{0, 1, 2}),
	}
	check := func(tx, r uint64) {
		for i, want := range vals {
			var got abi.Value
			en.ok(l.DictGet(tx, r, num(int64(i)), &got, en.e()))
			if got.Kind != want.Kind {
				t.Fatalf("value %d: kind %d, want %d", i, got.Kind, want.Kind)
			}
			switch want.Kind {
			case abi.KindString, abi.KindBytes:
				w := string(unsafe.Slice((*byte)(want.Str), want.Len))
				if g := text(t, got); g != w {
					t.Fatalf("value %d: %q, want %q", i, g, w)
				}
			default:
				if got.B != want.B || got.I != want.I || got.F != want.F || got.Obj != 0 {
					t.Fatalf("value %d: %+v, want %+v", i, got, *want)
				}
			}
		}
	}
	_, rc := en.update(func(tx uint64) int32 {
		r := en.root(tx)
		for i, v := range vals {
			if rc := l.DictSet(tx, r, num(int64(i)), v, en.e()); rc != abi.OK {
				return rc
			}
		}
		check(tx, r) // the attempt's own writes
		return abi.OK
	})
	en.ok(rc)
	tx := en.begin(abi.TxReadOnly)
	check(tx, en.root(tx))
	en.commit(tx)

	// Any non-zero B is true; keys of every scalar kind but Float.
	tx = en.begin(0)
	r := en.root(tx)
	en.ok(l.DictSet(tx, r, str("b"), &abi.Value{Kind: abi.KindBool, B: 42}, en.e()))
	var v abi.Value
	en.ok(l.DictGet(tx, r, str("b"), &v, en.e()))
	if v.Kind != abi.KindBool || v.B != 1 {
		t.Fatalf("bool: %+v", v)
	}
	for _, k := range []*abi.Value{none(), boo(true), num(-1), str("s"), byt([]byte("b"))} {
		en.ok(l.DictSet(tx, r, k, num(1), en.e()))
	}
	en.is(l.DictSet(tx, r, flt(1.5), num(1), en.e()), abi.ErrType)
	en.ok(l.TxRollback(tx))
}

func TestValuesIn(t *testing.T) {
	en := newEnv(t)
	l := en.l
	tx := en.begin(0)
	defer l.TxRollback(tx)
	r := en.root(tx)
	var list uint64
	en.ok(l.TxNew(tx, abi.KindList, 0, &list, en.e()))
	b := []byte("xyz")
	for _, c := range []struct {
		name string
		v    *abi.Value
		want int32
	}{
		{"negative length", &abi.Value{Kind: abi.KindString, Str: unsafe.Pointer(&b[0]), Len: -1}, abi.ErrBadArg},
		{"NULL string", &abi.Value{Kind: abi.KindString, Len: 3}, abi.ErrBadArg},
		{"NULL bytes", &abi.Value{Kind: abi.KindBytes, Len: 1}, abi.ErrBadArg},
		{"NULL empty", &abi.Value{Kind: abi.KindString}, abi.OK},
		{"too large", &abi.Value{Kind: abi.KindBytes, Str: unsafe.Pointer(&b[0]), Len: 1 << 40}, abi.ErrTooLarge},
		{"unknown kind", &abi.Value{Kind: 11}, abi.ErrBadArg},
		{"negative kind", &abi.Value{Kind: -1}, abi.ErrBadArg},
		{"container without object", &abi.Value{Kind: abi.KindDict}, abi.ErrBadArg},
		{"container of another kind", obj(abi.KindDict, list), abi.ErrType},
		{"queue that is a list", obj(abi.KindQueue, list), abi.ErrType},
		{"list as list", obj(abi.KindList, list), abi.OK},
	} {
		t.Run(c.name, func(t *testing.T) {
			en.t = t
			en.is(l.DictSet(tx, r, str("k"), c.v, en.e()), c.want)
		})
	}
	en.t = t
	// A queue passes as a List or a Queue.
	var q uint64
	en.ok(l.TxNew(tx, abi.KindQueue, 0, &q, en.e()))
	en.ok(l.DictSet(tx, r, str("q"), obj(abi.KindQueue, q), en.e()))
	en.ok(l.DictSet(tx, r, str("q2"), obj(abi.KindList, q), en.e()))
	// A container as a key.
	en.is(l.DictSet(tx, r, obj(abi.KindList, list), num(1), en.e()), abi.ErrType)
}

// TestStringsOut: String and Bytes out-values live in the transaction's
// buffer, valid until its next call; the buffer grows.
func TestStringsOut(t *testing.T) {
	en := newEnv(t)
	l := en.l
	big := strings.Repeat("x", 100_000)
	en.set("small", str("abc"))
	en.set("big", str(big))
	tx := en.begin(abi.TxReadOnly)
	defer en.commit(tx)
	r := en.root(tx)
	var a, b abi.Value
	en.ok(l.DictGet(tx, r, str("small"), &a, en.e()))
	if text(t, a) != "abc" {
		t.Fatal(text(t, a))
	}
	en.ok(l.DictGet(tx, r, str("big"), &b, en.e()))
	if text(t, b) != big {
		t.Fatal("big string")
	}
	en.ok(l.DictGet(tx, r, str("small"), &a, en.e()))
	if a.Str != b.Str || text(t, a) != "abc" {
		t.Fatal("the buffer is not reused")
	}
}

func TestDict(t *testing.T) {
	en := newEnv(t)
	l := en.l
	tx := en.begin(0)
	r := en.root(tx)
	var v abi.Value
	var n int64
	en.is(l.DictGet(tx, r, str("x"), &v, en.e()), abi.ErrNotFound)
	en.is(l.DictDelete(tx, r, str("x"), en.e()), abi.ErrNotFound)
	for i := range 5 {
		en.ok(l.DictSet(tx, r, num(int64(i)), num(int64(i*i)), en.e()))
	}
	en.ok(l.DictLen(tx, r, &n, en.e()))
	if n != 5 {
		t.Fatal(n)
	}
	en.ok(l.DictDelete(tx, r, num(4), en.e()))

	// Keys: a snapshot at i == 0, kept through writes until the next 0.
	en.is(l.DictKey(tx, r, -1, &v, en.e()), abi.ErrRange)
	seen := map[int64]bool{}
	for i := int64(0); ; i++ {
		rc := l.DictKey(tx, r, i, &v, en.e())
		if rc == abi.ErrRange {
			break
		}
		en.ok(rc)
		seen[v.I] = true
		if i == 0 {
			en.ok(l.DictSet(tx, r, str("during"), num(0), en.e()))
		}
	}
	if len(seen) != 4 {
		t.Fatalf("keys %v", seen)
	}
	en.ok(l.DictKey(tx, r, 0, &v, en.e()))
	en.ok(l.DictKey(tx, r, 4, &v, en.e())) // "during" is in the new snapshot
	en.is(l.DictKey(tx, r, 5, &v, en.e()), abi.ErrRange)
	// Two Dicts iterate at once, each with its own snapshot.
	var d2 uint64
	en.ok(l.DictContainer(tx, r, str("d2"), abi.KindDict, 0, &d2, en.e()))
	en.ok(l.DictSet(tx, d2, str("only"), none(), en.e()))
	en.ok(l.DictKey(tx, d2, 0, &v, en.e()))
	en.ok(l.DictKey(tx, r, 4, &v, en.e()))
	en.is(l.DictKey(tx, r, 5, &v, en.e()), abi.ErrRange) // "d2" joined r's keys, but r's snapshot holds
	en.is(l.DictKey(tx, d2, 1, &v, en.e()), abi.ErrRange)

	// Containers under keys: made if missing, the same one after.
	var c1, c2 uint64
	for _, k := range []int32{abi.KindDict, abi.KindList, abi.KindCounter, abi.KindQueue} {
		key := str("c" + string(rune('0'+k)))
		en.ok(l.DictContainer(tx, r, key, k, 3, &c1, en.e()))
		en.ok(l.DictContainer(tx, r, key, k, 3, &c2, en.e()))
		var id1, id2 uint64
		en.ok(l.ObjID(tx, c1, &id1, en.e()))
		en.ok(l.ObjID(tx, c2, &id2, en.e()))
		if id1 != id2 || id1 == 0 {
			t.Fatalf("kind %d: ids %d %d", k, id1, id2)
		}
		en.ok(l.DictGet(tx, r, key, &v, en.e()))
		if v.Kind != k {
			t.Fatalf("kind %d came out as %d", k, v.Kind)
		}
	}
	en.is(l.DictContainer(tx, r, str("c6"), abi.KindList, 0, &c1, en.e()), abi.ErrType)  // a Dict there
	en.is(l.DictContainer(tx, r, str("c7"), abi.KindQueue, 0, &c1, en.e()), abi.ErrType) // a List, not a Queue
	en.is(l.DictContainer(tx, r, str("n"), abi.KindRecord, 0, &c1, en.e()), abi.ErrBadArg)
	en.is(l.DictContainer(tx, r, str("n"), abi.KindInt, 0, &c1, en.e()), abi.ErrBadArg)
	en.is(l.DictContainer(tx, r, str("n"), abi.KindQueue, -1, &c1, en.e()), abi.ErrBadArg)
	en.commit(tx)
	tx = en.begin(abi.TxReadOnly)
	en.ok(l.DictGet(tx, en.root(tx), num(3), &v, en.e()))
	en.commit(tx)
	if v.I != 9 {
		t.Fatal("not committed")
	}
}

func TestList(t *testing.T) {
	en := newEnv(t)
	l := en.l
	tx := en.begin(0)
	defer en.commit(tx)
	var lh uint64
	en.ok(l.DictContainer(tx, en.root(tx), str("l"), abi.KindList, 0, &lh, en.e()))
	var v abi.Value
	var n int64
	en.is(l.ListPop(tx, lh, 0, &v, en.e()), abi.ErrRange)
	en.is(l.ListPop(tx, lh, 1, &v, en.e()), abi.ErrRange)
	en.is(l.ListGet(tx, lh, 0, &v, en.e()), abi.ErrRange)
	en.ok(l.ListAppend(tx, lh, num(2), en.e()))
	en.ok(l.ListPrepend(tx, lh, num(0), en.e()))
	en.ok(l.ListInsert(tx, lh, 1, num(1), en.e()))
	en.ok(l.ListInsert(tx, lh, 3, num(3), en.e())) // i == len appends
	en.is(l.ListInsert(tx, lh, 9, num(9), en.e()), abi.ErrRange)
	en.ok(l.ListLen(tx, lh, &n, en.e()))
	if n != 4 {
		t.Fatal(n)
	}
	for i := int64(-4); i < 4; i++ {
		en.ok(l.ListGet(tx, lh, i, &v, en.e()))
		if v.I != (i+4)%4 {
			t.Fatalf("item %d: %d", i, v.I)
		}
	}
	en.is(l.ListGet(tx, lh, 4, &v, en.e()), abi.ErrRange)
	en.is(l.ListGet(tx, lh, -5, &v, en.e()), abi.ErrRange)
	en.ok(l.ListSet(tx, lh, -1, str("last"), en.e()))
	en.is(l.ListSet(tx, lh, 4, num(0), en.e()), abi.ErrRange)
	en.ok(l.ListPop(tx, lh, 0, &v, en.e()))
	if text(t, v) != "last" {
		t.Fatal(text(t, v))
	}
	en.ok(l.ListPop(tx, lh, 1, &v, en.e()))
	if v.I != 0 {
		t.Fatal(v.I)
	}
	en.ok(l.ListDelete(tx, lh, 0, en.e()))
	en.is(l.ListDelete(tx, lh, 5, en.e()), abi.ErrRange)
	// A container inside.
	var d uint64
	en.ok(l.TxNew(tx, abi.KindDict, 0, &d, en.e()))
	en.ok(l.ListAppend(tx, lh, obj(abi.KindDict, d), en.e()))
	en.ok(l.ListGet(tx, lh, -1, &v, en.e()))
	if v.Kind != abi.KindDict || v.Obj == 0 {
		t.Fatalf("%+v", v)
	}
}

func TestRecord(t *testing.T) {
	en := newEnv(t)
	l := en.l
	tx := en.begin(0)
	defer en.commit(tx)
	var rh uint64
	fields := []unsafe.Pointer{cs("x"), cs("y")}
	fp := unsafe.Pointer(&fields[0])
	en.is(l.TxNewRecord(tx, cs("P"), fp, -1, &rh, en.e()), abi.ErrBadArg)
	en.is(l.TxNewRecord(tx, cs("P"), fp, 1<<20, &rh, en.e()), abi.ErrBadArg)
	en.is(l.TxNewRecord(tx, cs(""), fp, 2, &rh, en.e()), abi.ErrType)
	dup := []unsafe.Pointer{cs("x"), cs("x")}
	en.is(l.TxNewRecord(tx, cs("P"), unsafe.Pointer(&dup[0]), 2, &rh, en.e()), abi.ErrType)
	withNull := []unsafe.Pointer{cs("x"), nil}
	en.is(l.TxNewRecord(tx, cs("P"), unsafe.Pointer(&withNull[0]), 2, &rh, en.e()), abi.ErrBadArg)
	long := make([]byte, 70_000) // no NUL within the bound
	for i := range long {
		long[i] = 'a'
	}
	en.is(l.TxNewRecord(tx, unsafe.Pointer(&long[0]), fp, 2, &rh, en.e()), abi.ErrBadArg)
	en.ok(l.TxNewRecord(tx, cs("Empty"), nil, 0, &rh, en.e()))
	en.ok(l.TxNewRecord(tx, cs("Point"), fp, 2, &rh, en.e()))
	en.ok(l.DictSet(tx, en.root(tx), str("p"), obj(abi.KindRecord, rh), en.e()))

	var v abi.Value
	var n int64
	en.ok(l.RecordClass(tx, rh, &v, en.e()))
	if text(t, v) != "Point" {
		t.Fatal(text(t, v))
	}
	en.ok(l.RecordNFields(tx, rh, &n, en.e()))
	if n != 2 {
		t.Fatal(n)
	}
	en.ok(l.RecordField(tx, rh, 1, &v, en.e()))
	if text(t, v) != "y" {
		t.Fatal(text(t, v))
	}
	en.is(l.RecordField(tx, rh, 2, &v, en.e()), abi.ErrRange)
	en.is(l.RecordField(tx, rh, -1, &v, en.e()), abi.ErrRange)
	en.ok(l.RecordGet(tx, rh, cs("x"), &v, en.e()))
	if v.Kind != abi.KindNone {
		t.Fatal(v.Kind)
	}
	en.ok(l.RecordSet(tx, rh, cs("x"), flt(1.5), en.e()))
	en.ok(l.RecordGet(tx, rh, cs("x"), &v, en.e()))
	if v.F != 1.5 {
		t.Fatal(v.F)
	}
	en.is(l.RecordGet(tx, rh, cs("z"), &v, en.e()), abi.ErrNotFound)
	en.is(l.RecordSet(tx, rh, cs("z"), num(1), en.e()), abi.ErrNotFound)
	en.ok(l.DictGet(tx, en.root(tx), str("p"), &v, en.e()))
	if v.Kind != abi.KindRecord {
		t.Fatal(v.Kind)
	}
}

func TestCounter(t *testing.T) {
	en := newEnv(t)
	l := en.l
	_, rc := en.update(func(tx uint64) int32 {
		var c uint64
		if rc := l.DictContainer(tx, en.root(tx), str("c"), abi.KindCounter, 0, &c, en.e()); rc != abi.OK {
			return rc
		}
		var n int64
		if rc := l.CounterAdd(tx, c, 5, &n, en.e()); rc != abi.OK || n != 5 {
			t.Fatalf("add: %s %d", abi.CodeName(rc), n)
		}
		if rc := l.CounterAddBlind(tx, c, 2, en.e()); rc != abi.OK {
			return rc
		}
		if rc := l.CounterGet(tx, c, &n, en.e()); rc != abi.OK || n != 7 {
			t.Fatalf("get: %s %d", abi.CodeName(rc), n)
		}
		return abi.OK
	})
	en.ok(rc)
	tx := en.begin(abi.TxReadOnly)
	var v abi.Value
	var n int64
	en.ok(l.DictGet(tx, en.root(tx), str("c"), &v, en.e()))
	if v.Kind != abi.KindCounter {
		t.Fatal(v.Kind)
	}
	en.ok(l.CounterGet(tx, v.Obj, &n, en.e()))
	if n != 7 {
		t.Fatal(n)
	}
	en.commit(tx)
}

func TestQueue(t *testing.T) {
	en := newEnv(t)
	l := en.l
	tx := en.begin(0)
	r := en.root(tx)
	var q uint64
	var n int64
	var v abi.Value
	en.is(l.TxNew(tx, abi.KindQueue, -1, &q, en.e()), abi.ErrBadArg)
	en.is(l.TxNew(tx, abi.KindQueue, 1<<31+1, &q, en.e()), abi.ErrBadArg)
	en.is(l.TxNew(tx, abi.KindRecord, 0, &q, en.e()), abi.ErrBadArg)
	en.is(l.TxNew(tx, abi.KindString, 0, &q, en.e()), abi.ErrBadArg)
	en.ok(l.DictContainer(tx, r, str("q"), abi.KindQueue, 2, &q, en.e()))
	en.ok(l.QueueCap(tx, q, &n, en.e()))
	if n != 2 {
		t.Fatal(n)
	}
	en.is(l.QueueGet(tx, q, 1, &v, en.e()), abi.False)
	en.ok(l.QueuePut(tx, q, str("a"), 0, en.e()))
	en.ok(l.QueuePut(tx, q, str("b"), 1, en.e()))
	en.is(l.QueuePut(tx, q, str("c"), 1, en.e()), abi.False)
	en.ok(l.QueueLen(tx, q, &n, en.e()))
	if n != 2 {
		t.Fatal(n)
	}
	// Peek reads without taking: from the front, or the end.
	for i, want := range map[int64]string{0: "a", 1: "b", -1: "b", -2: "a"} {
		en.ok(l.QueuePeek(tx, q, i, &v, en.e()))
		if text(t, v) != want {
			t.Fatalf("peek %d: %q, want %q", i, text(t, v), want)
		}
	}
	en.is(l.QueuePeek(tx, q, 2, &v, en.e()), abi.ErrRange)
	en.is(l.QueuePeek(tx, q, -3, &v, en.e()), abi.ErrRange)
	en.ok(l.QueueLen(tx, q, &n, en.e()))
	if n != 2 {
		t.Fatalf("%d items after peeks", n)
	}
	en.ok(l.QueueGet(tx, q, 0, &v, en.e()))
	if text(t, v) != "a" {
		t.Fatal(text(t, v))
	}
	en.ok(l.QueuePeek(tx, q, 0, &v, en.e()))
	if text(t, v) != "b" {
		t.Fatal(text(t, v))
	}
	// A container item comes out as an object of the attempt.
	var d uint64
	en.ok(l.TxNew(tx, abi.KindDict, 0, &d, en.e()))
	en.ok(l.DictSet(tx, d, str("k"), num(7), en.e()))
	en.ok(l.QueuePut(tx, q, obj(abi.KindDict, d), 0, en.e()))
	en.ok(l.QueuePeek(tx, q, 1, &v, en.e()))
	if v.Kind != abi.KindDict {
		t.Fatalf("peeked kind %d", v.Kind)
	}
	var k abi.Value
	en.ok(l.DictGet(tx, v.Obj, str("k"), &k, en.e()))
	if k.I != 7 {
		t.Fatal(k.I)
	}
	en.ok(l.QueueGet(tx, q, 0, &v, en.e()))
	en.ok(l.QueueGet(tx, q, 0, &v, en.e()))
	en.commit(tx)

	// A peek is a read: a put committed meanwhile makes the attempt's end
	// ask for another run.
	tx = en.begin(0)
	var qv0 abi.Value
	en.ok(l.DictGet(tx, en.root(tx), str("q"), &qv0, en.e()))
	en.is(l.QueuePeek(tx, qv0.Obj, 0, &v, en.e()), abi.ErrRange)
	_, rc := en.update(func(tx2 uint64) int32 {
		var q2 abi.Value
		if rc := l.DictGet(tx2, en.root(tx2), str("q"), &q2, en.e()); rc != abi.OK {
			return rc
		}
		return l.QueuePut(tx2, q2.Obj, str("new"), 0, en.e())
	})
	en.ok(rc)
	en.ok(l.DictSet(tx, en.root(tx), str("seen"), num(0), en.e()))
	en.is(l.TxEnd(tx, abi.OK, en.e()), abi.Again)
	en.ok(l.TxRollback(tx))

	// A full queue's put and an empty one's get retry.
	tx = en.begin(0)
	var qv abi.Value
	en.ok(l.DictGet(tx, en.root(tx), str("q"), &qv, en.e()))
	if qv.Kind != abi.KindQueue {
		t.Fatalf("a queue came out as kind %d", qv.Kind)
	}
	en.ok(l.QueuePut(tx, qv.Obj, num(1), 0, en.e()))
	en.is(l.QueuePut(tx, qv.Obj, num(2), 0, en.e()), abi.ErrRetry)
	en.ok(l.TxRollback(tx))
	tx = en.begin(0)
	en.ok(l.DictGet(tx, en.root(tx), str("q"), &qv, en.e()))
	en.ok(l.QueueGet(tx, qv.Obj, 0, &v, en.e()))
	en.is(l.QueueGet(tx, qv.Obj, 0, &v, en.e()), abi.ErrRetry)
	en.ok(l.TxRollback(tx))
}

// TestIDs: an id names a container across transactions while it is
// linked.
func TestIDs(t *testing.T) {
	en := newEnv(t)
	l := en.l
	var id uint64
	_, rc := en.update(func(tx uint64) int32 {
		var q uint64
		if rc := l.DictContainer(tx, en.root(tx), str("q"), abi.KindQueue, 0, &q, en.e()); rc != abi.OK {
			return rc
		}
		return l.ObjID(tx, q, &id, en.e())
	})
	en.ok(rc)
	tx := en.begin(0)
	var v abi.Value
	en.ok(l.TxOpen(tx, id, &v, en.e()))
	if v.Kind != abi.KindQueue {
		t.Fatal(v.Kind)
	}
	en.ok(l.QueuePut(tx, v.Obj, num(1), 0, en.e()))
	en.ok(l.DictDelete(tx, en.root(tx), str("q"), en.e()))
	en.commit(tx)
	tx = en.begin(0)
	en.is(l.TxOpen(tx, id, &v, en.e()), abi.ErrStale)
	en.ok(l.TxRollback(tx))
	for _, forged := range []uint64{0, 1, 12345, 1 << 40, math.MaxUint64, id + 8} {
		tx = en.begin(abi.TxReadOnly)
		if rc := l.TxOpen(tx, forged, &v, en.e()); rc != abi.ErrStale && rc != abi.ErrNotFound && rc != abi.ErrType {
			t.Fatalf("forged id %#x: %s (%s)", forged, abi.CodeName(rc), lastErr.Message())
		}
		en.ok(l.TxRollback(tx))
	}
}

// TestPanicsAreErrors: a panic under a call comes back as SHM_ERR_OTHER
// with its text, and the transaction stays usable.
func TestPanicsAreErrors(t *testing.T) {
	en := newEnvConfig(t, abi.Config{NewBuffer: func() abi.Buffer { return panicky{} }})
	en.set("s", str("boom"))
	tx := en.begin(0)
	var v abi.Value
	en.is(en.l.DictGet(tx, en.root(tx), str("s"), &v, en.e()), abi.ErrOther)
	en.says("panic: no buffer today")
	en.ok(en.l.DictGet(tx, en.root(tx), num(1), &v, en.e()) + 1) // NOT_FOUND: the transaction still works
	en.ok(en.l.TxRollback(tx))
}

type panicky struct{}

func (panicky) Grow(int) unsafe.Pointer { panic("no buffer today") }
func (panicky) Free()                   {}

// TestNoMemoryForOutValues: a Buffer that cannot grow is SHM_ERR_NO_MEMORY.
func TestNoMemoryForOutValues(t *testing.T) {
	en := newEnvConfig(t, abi.Config{NewBuffer: func() abi.Buffer { return stingy{} }})
	en.set("s", str("x"))
	tx := en.begin(0)
	var v abi.Value
	en.is(en.l.DictGet(tx, en.root(tx), str("s"), &v, en.e()), abi.ErrNoMemory)
	en.ok(en.l.TxRollback(tx))
}

type stingy struct{}

func (stingy) Grow(int) unsafe.Pointer { return nil }
func (stingy) Free()                   {}

// TestStoreFull: a full store says SHM_ERR_NO_MEMORY, and stays usable.
func TestStoreFull(t *testing.T) {
	en := newEnv(t)
	l := en.l
	big := strings.Repeat("z", 256<<10)
	full := false
	for i := 0; i < 200 && !full; i++ {
		_, rc := en.update(func(tx uint64) int32 {
			return l.DictSet(tx, en.root(tx), num(int64(i)), str(big), en.e())
		})
		switch rc {
		case abi.OK:
		case abi.ErrNoMemory:
			full = true
		default:
			t.Fatalf("value %d: %s (%s)", i, abi.CodeName(rc), lastErr.Message())
		}
	}
	if !full {
		t.Fatal("16 MiB took 200 values of 256 KiB")
	}
	_, rc := en.update(func(tx uint64) int32 { return l.DictDelete(tx, en.root(tx), num(0), en.e()) })
	en.ok(rc)
	en.set("small", num(1))
	en.ok(l.Check(en.st, en.e()))
}
