//go:build linux && (amd64 || arm64)

package abi_test

import (
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/bindings/capi/abi"
)

// ids makes, in one transaction, the containers of the one-shot tests
// under the root: a Dict "d" (holding a List, a Queue, a Counter and a
// Record), a Counter "c", a Queue "q" of at most 2 items, a Dict "e";
// it returns their ids by name.
func (en *env) ids() map[string]uint64 {
	en.t.Helper()
	l := en.l
	ids := map[string]uint64{}
	_, rc := en.update(func(tx uint64) int32 {
		r := en.root(tx)
		var d, e, c, q, o uint64
		for _, step := range []func() int32{
			func() int32 { return l.DictContainer(tx, r, str("d"), abi.KindDict, 0, &d, en.e()) },
			func() int32 { return l.DictContainer(tx, r, str("e"), abi.KindDict, 0, &e, en.e()) },
			func() int32 { return l.DictContainer(tx, r, str("c"), abi.KindCounter, 0, &c, en.e()) },
			func() int32 { return l.DictContainer(tx, r, str("q"), abi.KindQueue, 2, &q, en.e()) },
			func() int32 { return l.DictContainer(tx, d, str("list"), abi.KindList, 0, &o, en.e()) },
			func() int32 { return l.DictContainer(tx, d, str("queue"), abi.KindQueue, 0, &o, en.e()) },
			func() int32 { return l.DictContainer(tx, d, str("counter"), abi.KindCounter, 0, &o, en.e()) },
			func() int32 {
				fields := []unsafe.Pointer{cs("x")}
				return l.TxNewRecord(tx, cs("P"), unsafe.Pointer(&fields[0]), 1, &o, en.e())
			},
			func() int32 { return l.DictSet(tx, d, str("record"), obj(abi.KindRecord, o), en.e()) },
		} {
			if rc := step(); rc != abi.OK {
				return rc
			}
		}
		for name, h := range map[string]uint64{"d": d, "e": e, "c": c, "q": q} {
			var id uint64
			if rc := l.ObjID(tx, h, &id, en.e()); rc != abi.OK {
				return rc
			}
			ids[name] = id
		}
		return abi.OK
	})
	en.ok(rc)
	return ids
}

// buf is a caller's buffer of n bytes.
func buf(n int) (unsafe.Pointer, int64) {
	b := make([]byte, n)
	if n == 0 {
		return nil, 0
	}
	return unsafe.Pointer(&b[0]), int64(n)
}

// TestOpDict: get, set and delete of a Dict by its id, each in a
// transaction of its own; containers in and out by id.
func TestOpDict(t *testing.T) {
	en := newEnv(t)
	l := en.l
	ids := en.ids()
	d := ids["d"]
	b, n := buf(64)
	var v abi.Value
	en.is(l.OpDictGet(en.st, d, str("k"), -1, &v, b, n, en.e()), abi.ErrNotFound)
	en.says(`"k"`)
	for _, val := range []*abi.Value{none(), boo(true), num(-5), flt(2.5), str("hello"), byt([]byte("a\x00b")), str("")} {
		en.ok(l.OpDictSet(en.st, d, str("k"), val, -1, en.e()))
		v = abi.Value{Kind: 99}
		en.ok(l.OpDictGet(en.st, d, str("k"), -1, &v, b, n, en.e()))
		if v.Kind != val.Kind || v.B != val.B || v.I != val.I || v.F != val.F {
			t.Fatalf("set %+v, got %+v", *val, v)
		}
		if v.Kind == abi.KindString || v.Kind == abi.KindBytes {
			want := string(unsafe.Slice((*byte)(val.Str), val.Len))
			if got := text(t, v); got != want || v.Str != b {
				t.Fatalf("got %q at %p, want %q in the caller's buffer %p", got, v.Str, want, b)
			}
		}
	}
	// A String that does not fit: Short with the length, nothing else.
	en.ok(l.OpDictSet(en.st, d, num(7), str("0123456789"), -1, en.e()))
	small, _ := buf(10)
	v = abi.Value{}
	en.is(l.OpDictGet(en.st, d, num(7), -1, &v, small, 10, en.e()), abi.Short)
	if v.Kind != abi.KindString || v.Len != 10 {
		t.Fatalf("short: %+v", v)
	}
	en.is(l.OpDictGet(en.st, d, num(7), -1, &v, nil, 0, en.e()), abi.Short)
	fits, _ := buf(11)
	en.ok(l.OpDictGet(en.st, d, num(7), -1, &v, fits, 11, en.e())) // 10 bytes and the NUL
	if text(t, v) != "0123456789" {
		t.Fatal(text(t, v))
	}
	// Containers come out as their ids, with their kinds.
	for key, kind := range map[string]int32{"list": abi.KindList, "queue": abi.KindQueue, "counter": abi.KindCounter, "record": abi.KindRecord} {
		v = abi.Value{}
		en.ok(l.OpDictGet(en.st, d, str(key), -1, &v, b, n, en.e()))
		if v.Kind != kind || v.Obj == 0 {
			t.Fatalf("%s: %+v", key, v)
		}
		tx := en.begin(abi.TxReadOnly)
		var o abi.Value
		en.ok(l.TxOpen(tx, v.Obj, &o, en.e()))
		if o.Kind != kind {
			t.Fatalf("%s: the id opens a %d", key, o.Kind)
		}
		en.commit(tx)
	}
	// A container in, by id: linked, not copied.
	en.ok(l.OpDictSet(en.st, ids["e"], str("in e"), num(1), -1, en.e()))
	en.ok(l.OpDictSet(en.st, d, str("e too"), obj(abi.KindDict, ids["e"]), -1, en.e()))
	en.ok(l.OpDictGet(en.st, d, str("e too"), -1, &v, b, n, en.e()))
	if v.Kind != abi.KindDict || v.Obj != ids["e"] {
		t.Fatalf("linked Dict: %+v, want id %d", v, ids["e"])
	}
	en.is(l.OpDictSet(en.st, d, str("x"), obj(abi.KindList, ids["e"]), -1, en.e()), abi.ErrType)
	en.ok(l.OpDictSet(en.st, d, str("q as list"), obj(abi.KindList, ids["q"]), -1, en.e()))
	// Delete.
	en.ok(l.OpDictDelete(en.st, d, str("k"), -1, en.e()))
	en.is(l.OpDictDelete(en.st, d, str("k"), -1, en.e()), abi.ErrNotFound)
	en.is(l.OpDictGet(en.st, d, str("k"), -1, &v, b, n, en.e()), abi.ErrNotFound)
	// The id of another kind, of nothing, and bad arguments.
	en.is(l.OpDictGet(en.st, ids["c"], str("k"), -1, &v, b, n, en.e()), abi.ErrType)
	en.is(l.OpDictSet(en.st, ids["q"], str("k"), num(1), -1, en.e()), abi.ErrType)
	en.is(l.OpDictGet(en.st, 1<<40, str("k"), -1, &v, b, n, en.e()), abi.ErrStale)
	en.is(l.OpDictGet(en.st, d, nil, -1, &v, b, n, en.e()), abi.ErrBadArg)
	en.is(l.OpDictGet(en.st, d, str("k"), -1, nil, b, n, en.e()), abi.ErrBadArg)
	en.is(l.OpDictGet(en.st, d, str("k"), -1, &v, nil, 8, en.e()), abi.ErrBadArg)
	en.is(l.OpDictGet(en.st, d, str("k"), -1, &v, b, -1, en.e()), abi.ErrBadArg)
	en.is(l.OpDictSet(en.st, d, str("k"), nil, -1, en.e()), abi.ErrBadArg)
	en.is(l.OpDictSet(en.st, d, str("k"), &abi.Value{Kind: 42}, -1, en.e()), abi.ErrBadArg)
	en.is(l.OpDictDelete(en.st, d, nil, -1, en.e()), abi.ErrBadArg)
	en.is(l.OpDictSet(0, d, str("k"), num(1), -1, en.e()), abi.ErrBadArg)
	// A deleted container's id names nothing.
	en.ok(l.OpDictDelete(en.st, d, str("e too"), -1, en.e()))
	_, rc := en.update(func(tx uint64) int32 { return l.DictDelete(tx, en.root(tx), str("e"), en.e()) })
	en.ok(rc)
	en.is(l.OpDictSet(en.st, ids["e"], str("k"), num(1), -1, en.e()), abi.ErrStale)
}

// TestOpCounter: adds that read (and conflict, and run again, inside the
// call) and blind adds, from several goroutines: none is lost.
func TestOpCounter(t *testing.T) {
	en := newEnv(t)
	l := en.l
	c := en.ids()["c"]
	var n int64
	en.ok(l.OpCounterAdd(en.st, c, 5, 0, -1, &n, en.e()))
	if n != 5 {
		t.Fatal(n)
	}
	en.ok(l.OpCounterAdd(en.st, c, 2, 1, -1, nil, en.e()))
	en.ok(l.OpCounterGet(en.st, c, -1, &n, en.e()))
	if n != 7 {
		t.Fatal(n)
	}
	const workers, adds = 4, 300
	var wg sync.WaitGroup
	fails := make(chan string, workers)
	for w := range workers {
		wg.Go(func() {
			var e abi.Error
			var out int64
			for range adds {
				if rc := l.OpCounterAdd(en.st, c, 1, int32(w%2), -1, &out, &e); rc != abi.OK {
					fails <- e.Message()
					return
				}
			}
		})
	}
	wg.Wait()
	close(fails)
	for f := range fails {
		t.Fatal(f)
	}
	en.ok(l.OpCounterGet(en.st, c, -1, &n, en.e()))
	if n != 7+workers*adds {
		t.Fatalf("counter %d, want %d", n, 7+workers*adds)
	}
	en.is(l.OpCounterAdd(en.st, c, 1, 0, -1, nil, en.e()), abi.ErrBadArg)
	en.is(l.OpCounterGet(en.st, c, -1, nil, en.e()), abi.ErrBadArg)
	en.is(l.OpCounterGet(en.st, en.ids()["d"], -1, &n, en.e()), abi.ErrType)
}

// TestOpQueue: put and get without waiting, waiting with a timeout, and
// waiting without limit for another goroutine's put; a container item is
// not taken.
func TestOpQueue(t *testing.T) {
	en := newEnv(t)
	l := en.l
	ids := en.ids()
	q := ids["q"] // at most 2 items
	b, n := buf(64)
	var v abi.Value
	en.is(l.OpQueueGet(en.st, q, 0, &v, b, n, en.e()), abi.False)
	start := time.Now()
	en.is(l.OpQueueGet(en.st, q, 30, &v, b, n, en.e()), abi.Timeout)
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Fatalf("timed out after %v", d)
	}
	en.ok(l.OpQueuePut(en.st, q, str("a"), 0, en.e()))
	en.ok(l.OpQueuePut(en.st, q, str("0123456789"), 10, en.e()))
	en.is(l.OpQueuePut(en.st, q, str("c"), 0, en.e()), abi.False)
	en.is(l.OpQueuePut(en.st, q, str("c"), 20, en.e()), abi.Timeout)
	en.ok(l.OpQueueGet(en.st, q, -1, &v, b, n, en.e()))
	if text(t, v) != "a" {
		t.Fatal(text(t, v))
	}
	// Too large for the buffer: not taken.
	small, _ := buf(4)
	en.is(l.OpQueueGet(en.st, q, 0, &v, small, 4, en.e()), abi.Short)
	if v.Kind != abi.KindString || v.Len != 10 {
		t.Fatalf("short: %+v", v)
	}
	en.ok(l.OpQueueGet(en.st, q, 0, &v, b, n, en.e()))
	if text(t, v) != "0123456789" {
		t.Fatal(text(t, v))
	}
	// A container item: Short, its kind, not taken.
	en.ok(l.OpQueuePut(en.st, q, obj(abi.KindDict, ids["e"]), 0, en.e()))
	v = abi.Value{}
	en.is(l.OpQueueGet(en.st, q, 0, &v, b, n, en.e()), abi.Short)
	if v.Kind != abi.KindDict || v.Obj != 0 {
		t.Fatalf("a container taken: %+v", v)
	}
	_, rc := en.update(func(tx uint64) int32 {
		var qv abi.Value
		if rc := l.TxOpen(tx, q, &qv, en.e()); rc != abi.OK {
			return rc
		}
		return l.QueueGet(tx, qv.Obj, 1, &v, en.e())
	})
	en.ok(rc)
	// A get that waits without limit, woken by a put.
	done := make(chan int32, 1)
	got := make([]byte, 16)
	var gv abi.Value
	go func() {
		var e abi.Error
		done <- l.OpQueueGet(en.st, q, -1, &gv, unsafe.Pointer(&got[0]), 16, &e)
	}()
	select {
	case rc := <-done:
		t.Fatalf("a get on an empty queue ended: %s", abi.CodeName(rc))
	case <-time.After(30 * time.Millisecond):
	}
	en.ok(l.OpQueuePut(en.st, q, num(42), -1, en.e()))
	if rc := <-done; rc != abi.OK || gv.Kind != abi.KindInt || gv.I != 42 {
		t.Fatalf("woken get: %s %+v", abi.CodeName(rc), gv)
	}
	en.is(l.OpQueueGet(en.st, ids["d"], 0, &v, b, n, en.e()), abi.ErrType)
	en.is(l.OpQueuePut(en.st, q, nil, 0, en.e()), abi.ErrBadArg)
	en.is(l.OpQueueGet(en.st, q, 0, nil, b, n, en.e()), abi.ErrBadArg)
}

// TestOpCallsCheckTheStore: every one-shot call refuses a bad or closed
// store handle, and answers ErrForked in a forked child.
func TestOpCallsCheckTheStore(t *testing.T) {
	en := newEnv(t)
	l := en.l
	ids := en.ids()
	b, n := buf(64)
	var v abi.Value
	var c int64
	calls := map[string]func(h uint64) int32{
		"shm_op_dict_get":    func(h uint64) int32 { return l.OpDictGet(h, ids["d"], str("k"), -1, &v, b, n, en.e()) },
		"shm_op_dict_set":    func(h uint64) int32 { return l.OpDictSet(h, ids["d"], str("k"), num(1), -1, en.e()) },
		"shm_op_dict_delete": func(h uint64) int32 { return l.OpDictDelete(h, ids["d"], str("k"), -1, en.e()) },
		"shm_op_counter_get": func(h uint64) int32 { return l.OpCounterGet(h, ids["c"], -1, &c, en.e()) },
		"shm_op_counter_add": func(h uint64) int32 { return l.OpCounterAdd(h, ids["c"], 1, 0, -1, &c, en.e()) },
		"shm_op_queue_put":   func(h uint64) int32 { return l.OpQueuePut(h, ids["q"], num(1), 0, en.e()) },
		"shm_op_queue_get":   func(h uint64) int32 { return l.OpQueueGet(h, ids["q"], 0, &v, b, n, en.e()) },
	}
	closed := en.open("t", abi.OpenMustExist)
	en.ok(l.Close(closed, en.e()))
	ro := en.openReadOnly("t")
	tx := en.begin(0)
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			en.t = t
			if rc := call(en.st); rc < 0 && rc != abi.ErrNotFound {
				t.Fatalf("good call: %s (%s)", abi.CodeName(rc), lastErr.Message())
			}
			en.is(call(0), abi.ErrBadArg)
			en.is(call(tx), abi.ErrBadArg) // a transaction handle
			en.is(call(closed), abi.ErrClosed)
			en.is(call(ro), abi.ErrReadOnly) // opened for Stats and Check
			l.SetPid(1)
			en.is(call(en.st), abi.ErrForked)
			l.SetPid(pid)
		})
	}
	en.t = t
	en.ok(l.TxRollback(tx))
	// A store opened read-only says so before it looks at the arguments,
	// as a transaction on it does.
	en.is(l.OpDictGet(ro, ids["d"], str("k"), -1, nil, b, n, en.e()), abi.ErrReadOnly)
}

// TestOpWaitForASlot: with every slot of the process in use, a one-shot
// call waits for one at most its timeout (then Timeout, nothing done), or
// without limit until one is free. A get of a scalar, or of a missing
// key, needs no slot (it reads optimistically) and answers at once.
func TestOpWaitForASlot(t *testing.T) {
	en := newEnv(t)
	l := en.l
	ids := en.ids()
	d := ids["d"]
	b, n := buf(64)
	var v abi.Value
	var c int64
	en.ok(l.OpDictSet(en.st, d, str("s"), str("scalar"), 0, en.e()))
	held := make([]uint64, shmstore.DefaultSlotsPerProc)
	for i := range held {
		en.ok(l.TxBegin(en.st, 0, &held[i], en.e()))
	}
	en.ok(l.OpDictGet(en.st, d, str("s"), 0, &v, b, n, en.e()))
	if got := unsafe.String((*byte)(v.Str), v.Len); v.Kind != abi.KindString || got != "scalar" {
		t.Fatalf("get of a scalar with every slot in use: kind %d %q", v.Kind, got)
	}
	en.is(l.OpDictGet(en.st, d, str("k"), 0, &v, b, n, en.e()), abi.ErrNotFound)
	for name, call := range map[string]func() int32{
		"get":         func() int32 { return l.OpDictGet(en.st, d, str("list"), 20, &v, b, n, en.e()) },
		"set":         func() int32 { return l.OpDictSet(en.st, d, str("k"), num(1), 20, en.e()) },
		"delete":      func() int32 { return l.OpDictDelete(en.st, d, str("k"), 20, en.e()) },
		"counter get": func() int32 { return l.OpCounterGet(en.st, ids["c"], 20, &c, en.e()) },
		"counter add": func() int32 { return l.OpCounterAdd(en.st, ids["c"], 1, 0, 20, &c, en.e()) },
		"queue put":   func() int32 { return l.OpQueuePut(en.st, ids["q"], num(1), 0, en.e()) },
		"queue get":   func() int32 { return l.OpQueueGet(en.st, ids["q"], 20, &v, b, n, en.e()) },
	} {
		start := time.Now()
		en.is(call(), abi.Timeout)
		if d := time.Since(start); name != "queue put" && d < 15*time.Millisecond {
			t.Fatalf("%s: timed out after %v", name, d)
		}
	}
	done := make(chan int32, 1)
	go func() {
		var e abi.Error
		done <- l.OpDictSet(en.st, d, str("k"), num(2), -1, &e)
	}()
	select {
	case rc := <-done:
		t.Fatalf("a set ended (%s) with every slot in use", abi.CodeName(rc))
	case <-time.After(30 * time.Millisecond):
	}
	en.ok(l.TxRollback(held[0]))
	if rc := <-done; rc != abi.OK {
		t.Fatalf("the waiting set: %s", abi.CodeName(rc))
	}
	for _, tx := range held[1:] {
		en.ok(l.TxRollback(tx))
	}
	en.ok(l.OpDictGet(en.st, d, str("k"), 0, &v, b, n, en.e()))
	en.ok(l.OpCounterGet(en.st, ids["c"], 0, &c, en.e()))
	if v.I != 2 || c != 0 {
		t.Fatalf("k = %d, counter %d: a call that timed out did something", v.I, c)
	}
}

// TestOpAllocs: a one-shot get or set of a scalar, and a counter get or
// add, allocate nothing on the Go heap (the point of running them on the
// object space: see oneShot), but for a set's copy of its key (a key of
// one byte is interned by Go, a longer one copied). Errors allocate
// (their messages).
func TestOpAllocs(t *testing.T) {
	if raceOn {
		t.Skip("the race detector changes allocations")
	}
	en := newEnv(t)
	l := en.l
	ids := en.ids()
	d, ctr := ids["d"], ids["c"]
	b, n := buf(64)
	long, short, val := str("key-0001"), str("k"), num(7)
	var e abi.Error
	var x int64
	en.ok(l.OpDictSet(en.st, d, long, val, -1, en.e()))
	en.ok(l.OpDictSet(en.st, d, short, str("a string"), -1, en.e()))
	for _, c := range []struct {
		name string
		max  float64
		call func() int32
	}{
		{"get", 0, func() int32 {
			var v abi.Value
			return l.OpDictGet(en.st, d, long, 100, &v, b, n, &e)
		}},
		{"set", 0, func() int32 { return l.OpDictSet(en.st, d, short, val, 100, &e) }},
		{"set of a long key", 1, func() int32 { return l.OpDictSet(en.st, d, long, val, 100, &e) }},
		{"counter get", 0, func() int32 { return l.OpCounterGet(en.st, ctr, 100, &x, &e) }},
		{"counter add", 0, func() int32 { return l.OpCounterAdd(en.st, ctr, 1, 0, 100, &x, &e) }},
		{"blind counter add", 0, func() int32 { return l.OpCounterAdd(en.st, ctr, 1, 1, 100, nil, &e) }},
	} {
		var rc int32
		if got := testing.AllocsPerRun(100, func() { rc = c.call() }); got > c.max {
			t.Errorf("%s: %v allocations per call, want at most %v", c.name, got, c.max)
		}
		if rc != abi.OK {
			t.Errorf("%s: %s (%s)", c.name, abi.CodeName(rc), e.Message())
		}
	}
}
