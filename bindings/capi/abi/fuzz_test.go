//go:build linux && (amd64 || arm64)

package abi_test

import (
	"encoding/binary"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/bindings/capi/abi"
	"github.com/shmstore/shmstore/shm/shmtest"
)

// FuzzABI drives a Lib with a random sequence of calls, with handles
// good, stale and forged, values of every kind (and none), indexes,
// strings and NULL pointers, all read from the input. Every call must
// return a defined code, fill its Error exactly on failure, never panic
// (a recovered panic is a bug too); at the end, whatever is open is
// rolled back and the store must pass Check.
//
// One goroutine runs several transactions at once, so the driver avoids
// what would make it wait on itself: it keeps fewer transactions than a
// process's slots, never lets a read-only one (which may lock what it
// read after 8 aborts) run beside another, restarts with timeouts of a
// few milliseconds, and makes the one-shot calls (shm_op_*, each a
// transaction of its own) only beside no read-only transaction, and
// those that write (whose commit would wait for a transaction of its own
// that took the fairness token) only when none is under way.
func FuzzABI(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// A hang is a failure too: crash with every goroutine's stack,
		// which the fuzzer records with the input.
		watchdog := time.AfterFunc(20*time.Second, func() {
			debug.SetTraceback("all")
			panic(fmt.Sprintf("FuzzABI: an input ran for 20s (a hang): %q", data))
		})
		defer watchdog.Stop()
		d := &driver{t: t, in: data, l: abi.New(abi.Config{}), dir: shmtest.Dir(t)}
		d.st = d.open()
		for n := 0; len(d.in) > 0 && n < 300; n++ {
			d.step()
		}
		d.finish()
	})
}

// fuzzTrace logs every call's result (ABI_FUZZ_TRACE=1, with -v): to see
// how far an input reaches.
var fuzzTrace = os.Getenv("ABI_FUZZ_TRACE") != ""

// The opcodes of the driver (the input's first byte of each step, modulo
// opCount).
const (
	opBegin = iota
	opEnd
	opRestart
	opRollback
	opRetry
	opOrElseBegin
	opOrElseRetried
	opRoot
	opOpen
	opObjID
	opNew
	opNewRecord
	opDictGet
	opDictSet
	opDictDelete
	opDictLen
	opDictKey
	opDictContainer
	opListLen
	opListGet
	opListSet
	opListInsert
	opListDelete
	opListAppend
	opListPrepend
	opListPop
	opRecordClass
	opRecordNFields
	opRecordField
	opRecordGet
	opRecordSet
	opCounterGet
	opCounterAdd
	opCounterAddBlind
	opQueuePut
	opQueueGet
	opQueueLen
	opQueueCap
	opStore
	opCloseReopen
	opQueuePeek
	opBeginTimeout
	opOpDictGet
	opOpDictSet
	opOpDictDelete
	opOpCounterGet
	opOpCounterAdd
	opOpQueuePut
	opOpQueueGet
	opCount
)

type driver struct {
	t   *testing.T
	in  []byte
	l   *abi.Lib
	dir string
	st  uint64

	txs    []uint64 // every transaction begun (over or not)
	ro     map[uint64]bool
	objs   []uint64 // every object handle handed out
	ids    []uint64
	tokens []int64
	keep   [][]byte // what pointers passed in point at, alive for the call

	roots  map[uint64]bool // object handles of root Dicts
	nested bool            // a container was stored in a container other than a root
}

// into notes a call that stored val into the container target: one that
// is not the root may have closed a cycle of containers, which reference
// counting never frees (see finish).
func (d *driver) into(rc int32, target uint64, val *abi.Value) {
	if rc == abi.OK && val != nil && val.Kind >= abi.KindDict && !d.roots[target] {
		d.nested = true
	}
}

func (d *driver) byte() byte {
	if len(d.in) == 0 {
		return 0
	}
	b := d.in[0]
	d.in = d.in[1:]
	return b
}

func (d *driver) u64() uint64 {
	var b [8]byte
	n := copy(b[:], d.in)
	d.in = d.in[n:]
	return binary.LittleEndian.Uint64(b[:])
}

// timeout is a wait's timeout: 0 to 3 ms, now and then 150 (a slice of
// the shared clock, slices.go).
func (d *driver) timeout() int64 {
	if b := d.byte(); b < 252 {
		return int64(b % 4)
	}
	return 150
}

// small is a small signed number, now and then a large one.
func (d *driver) small() int64 {
	b := d.byte()
	if b >= 250 {
		return int64(d.u64())
	}
	return int64(int8(b)) / 8
}

func (d *driver) bytes() []byte {
	n := int(d.byte() % 24)
	n = min(n, len(d.in))
	b := append([]byte(nil), d.in[:n]...)
	d.in = d.in[n:]
	return b
}

// cstr is a NUL-terminated string, now and then NULL.
func (d *driver) cstr() unsafe.Pointer {
	b := d.bytes()
	if len(b) == 1 && b[0] == 0xff {
		return nil
	}
	for i, c := range b {
		if c == 0 {
			b[i] = 'x'
		}
	}
	b = append(b, 0)
	d.keep = append(d.keep, b)
	return unsafe.Pointer(&b[0])
}

// pick is one of hs (most often), or a handle of another kind, 0 or
// anything at all.
func (d *driver) pick(hs []uint64) uint64 {
	b := d.byte()
	switch {
	case b < 230 && len(hs) > 0:
		return hs[int(b)%len(hs)]
	case b < 240 && len(d.objs) > 0:
		return d.objs[int(b)%len(d.objs)]
	case b < 245 && len(d.txs) > 0:
		return d.txs[int(b)%len(d.txs)]
	case b < 248:
		return d.st
	case b < 252:
		return 0
	}
	return d.u64()
}

func (d *driver) tx() uint64  { return d.pick(d.txs) }
func (d *driver) obj() uint64 { return d.pick(d.objs) }

// value is a value to pass in (nil now and then).
func (d *driver) value() *abi.Value {
	b := d.byte()
	v := &abi.Value{Kind: int32(b % 12)}
	switch v.Kind {
	case abi.KindBool:
		v.B = int32(d.byte() % 3)
	case abi.KindInt:
		v.I = d.small()
	case abi.KindFloat:
		v.F = float64(d.small()) / 3
	case abi.KindString, abi.KindBytes:
		s := d.bytes()
		v.Len = int64(len(s))
		if len(s) > 0 {
			d.keep = append(d.keep, s)
			v.Str = unsafe.Pointer(&s[0])
		}
		if b >= 240 {
			v.Len = d.small() // a length that does not match
			if v.Len > int64(len(s)) {
				v.Str = nil
			}
		}
	case abi.KindDict, abi.KindList, abi.KindRecord, abi.KindCounter, abi.KindQueue:
		v.Obj = d.obj()
	}
	if b >= 252 {
		return nil
	}
	return v
}

// kind is a container kind (or another number now and then).
func (d *driver) kind() int32 {
	b := d.byte()
	if b >= 240 {
		return int32(int8(d.byte()))
	}
	return []int32{abi.KindDict, abi.KindList, abi.KindCounter, abi.KindQueue, abi.KindRecord}[b%5]
}

// check asserts what every call promises of its result.
func (d *driver) check(op int, rc int32, e *abi.Error) {
	d.t.Helper()
	if fuzzTrace {
		d.t.Logf("op %2d: %s %s", op, abi.CodeName(rc), e.Message())
	}
	if !abi.Defined(rc) {
		d.t.Fatalf("op %d: undefined code %d", op, rc)
	}
	if rc < 0 && (e.Code != rc || e.Message() == "") {
		d.t.Fatalf("op %d: %s with error %d %q", op, abi.CodeName(rc), e.Code, e.Message())
	}
	if rc >= 0 && e.Code != 777 {
		d.t.Fatalf("op %d: %s wrote the error (%d %q)", op, abi.CodeName(rc), e.Code, e.Message())
	}
	if strings.Contains(e.Message(), "panic") {
		d.t.Fatalf("op %d: %s", op, e.Message())
	}
}

// out checks a value passed out and remembers its object.
func (d *driver) out(v *abi.Value) {
	d.t.Helper()
	switch v.Kind {
	case abi.KindNone, abi.KindBool, abi.KindInt, abi.KindFloat:
	case abi.KindString, abi.KindBytes:
		if v.Str == nil || v.Len < 0 || *(*byte)(unsafe.Add(v.Str, v.Len)) != 0 {
			d.t.Fatalf("String out-value %+v", *v)
		}
	case abi.KindDict, abi.KindList, abi.KindRecord, abi.KindCounter, abi.KindQueue:
		if v.Obj == 0 {
			d.t.Fatalf("container out-value without a handle")
		}
		d.objs = append(d.objs, v.Obj)
	default:
		d.t.Fatalf("out-value of kind %d", v.Kind)
	}
}

func (d *driver) open() uint64 {
	var h uint64
	var e abi.Error
	o := &abi.Options{Dir: cs(d.dir), RegionSize: 1 << 20, MaxSize: 4 << 20}
	if rc := d.l.Open(cs("f"), o, &h, &e); rc != abi.OK {
		d.t.Fatalf("open: %s", e.Message())
	}
	return h
}

// live is the number of transactions under way, and whether one of them
// is read-only.
func (d *driver) live() (n int, ro bool) {
	_, n = d.l.Counts()
	for _, tx := range d.txs {
		if !d.ro[tx] {
			continue
		}
		var h uint64
		var e abi.Error
		if rc := d.l.TxRoot(tx, &h, &e); rc == abi.OK || !strings.Contains(e.Message(), "is over") {
			ro = true
		}
	}
	return n, ro
}

func (d *driver) step() {
	d.keep = d.keep[:0]
	op := int(d.byte()) % opCount
	l := d.l
	e := &abi.Error{Code: 777}
	var rc int32
	var v abi.Value
	var n, m int64
	var h uint64
	switch op {
	case opBegin, opBeginTimeout:
		flags := int32(d.byte() % 3)
		live, ro := d.live()
		if live >= 4 || ro || flags == 1 && live > 0 {
			return
		}
		if op == opBegin {
			rc = l.TxBegin(d.pick([]uint64{d.st}), flags, &h, e)
		} else {
			rc = l.TxBeginTimeout(d.pick([]uint64{d.st}), flags, d.timeout(), &h, e)
		}
		if rc == abi.OK {
			if d.ro == nil {
				d.ro = map[uint64]bool{}
			}
			d.txs = append(d.txs, h)
			d.ro[h] = flags == 1
		}
	case opEnd:
		codes := []int32{abi.OK, abi.OK, abi.ErrConflict, abi.ErrRetry, abi.ErrNotFound, abi.ErrOther, abi.Again, -42}
		rc = l.TxEnd(d.tx(), codes[d.byte()%byte(len(codes))], e)
	case opRestart:
		rc = l.TxRestart(d.tx(), d.timeout(), e)
	case opRollback:
		rc = l.TxRollback(d.tx())
	case opRetry:
		rc = l.TxRetry(d.tx(), e)
	case opOrElseBegin:
		var tok int64
		if rc = l.TxOrElseBegin(d.tx(), &tok, e); rc >= 0 {
			d.tokens = append(d.tokens, tok)
		}
	case opOrElseRetried:
		tok := d.small()
		if b := d.byte(); b < 200 && len(d.tokens) > 0 {
			tok = d.tokens[int(b)%len(d.tokens)]
		}
		rc = l.TxOrElseRetried(d.tx(), tok, e)
	case opRoot:
		if rc = l.TxRoot(d.tx(), &h, e); rc == abi.OK {
			d.objs = append(d.objs, h)
			if d.roots == nil {
				d.roots = map[uint64]bool{}
			}
			d.roots[h] = true
		}
	case opOpen:
		id := d.u64()
		if b := d.byte(); b < 200 && len(d.ids) > 0 {
			id = d.ids[int(b)%len(d.ids)]
		}
		if rc = l.TxOpen(d.tx(), id, &v, e); rc == abi.OK {
			d.out(&v)
		}
	case opObjID:
		if rc = l.ObjID(d.tx(), d.obj(), &h, e); rc == abi.OK {
			d.ids = append(d.ids, h)
		}
	case opNew:
		if rc = l.TxNew(d.tx(), d.kind(), d.small(), &h, e); rc == abi.OK {
			d.objs = append(d.objs, h)
		}
	case opNewRecord:
		cls := d.cstr()
		nf := int(d.byte() % 5)
		fields := make([]unsafe.Pointer, nf+1)
		for i := range nf {
			fields[i] = d.cstr()
		}
		fp := unsafe.Pointer(&fields[0])
		if d.byte() > 250 {
			fp = nil
		}
		if rc = l.TxNewRecord(d.tx(), cls, fp, int32(nf), &h, e); rc == abi.OK {
			d.objs = append(d.objs, h)
		}
	case opDictGet:
		if rc = l.DictGet(d.tx(), d.obj(), d.value(), &v, e); rc == abi.OK {
			d.out(&v)
		}
	case opDictSet:
		tx, o, k, val := d.tx(), d.obj(), d.value(), d.value()
		rc = l.DictSet(tx, o, k, val, e)
		d.into(rc, o, val)
	case opDictDelete:
		rc = l.DictDelete(d.tx(), d.obj(), d.value(), e)
	case opDictLen:
		rc = l.DictLen(d.tx(), d.obj(), &n, e)
	case opDictKey:
		if rc = l.DictKey(d.tx(), d.obj(), d.small(), &v, e); rc == abi.OK {
			d.out(&v)
		}
	case opDictContainer:
		if rc = l.DictContainer(d.tx(), d.obj(), d.value(), d.kind(), d.small(), &h, e); rc == abi.OK {
			d.objs = append(d.objs, h)
		}
	case opListLen:
		rc = l.ListLen(d.tx(), d.obj(), &n, e)
	case opListGet:
		if rc = l.ListGet(d.tx(), d.obj(), d.small(), &v, e); rc == abi.OK {
			d.out(&v)
		}
	case opListSet:
		tx, o, i, val := d.tx(), d.obj(), d.small(), d.value()
		rc = l.ListSet(tx, o, i, val, e)
		d.into(rc, o, val)
	case opListInsert:
		tx, o, i, val := d.tx(), d.obj(), d.small(), d.value()
		rc = l.ListInsert(tx, o, i, val, e)
		d.into(rc, o, val)
	case opListDelete:
		rc = l.ListDelete(d.tx(), d.obj(), d.small(), e)
	case opListAppend:
		tx, o, val := d.tx(), d.obj(), d.value()
		rc = l.ListAppend(tx, o, val, e)
		d.into(rc, o, val)
	case opListPrepend:
		tx, o, val := d.tx(), d.obj(), d.value()
		rc = l.ListPrepend(tx, o, val, e)
		d.into(rc, o, val)
	case opListPop:
		if rc = l.ListPop(d.tx(), d.obj(), int32(d.byte()%2), &v, e); rc == abi.OK {
			d.out(&v)
		}
	case opRecordClass:
		if rc = l.RecordClass(d.tx(), d.obj(), &v, e); rc == abi.OK {
			d.out(&v)
		}
	case opRecordNFields:
		rc = l.RecordNFields(d.tx(), d.obj(), &n, e)
	case opRecordField:
		if rc = l.RecordField(d.tx(), d.obj(), d.small(), &v, e); rc == abi.OK {
			d.out(&v)
		}
	case opRecordGet:
		if rc = l.RecordGet(d.tx(), d.obj(), d.cstr(), &v, e); rc == abi.OK {
			d.out(&v)
		}
	case opRecordSet:
		tx, o, f, val := d.tx(), d.obj(), d.cstr(), d.value()
		rc = l.RecordSet(tx, o, f, val, e)
		d.into(rc, o, val)
	case opCounterGet:
		rc = l.CounterGet(d.tx(), d.obj(), &n, e)
	case opCounterAdd:
		rc = l.CounterAdd(d.tx(), d.obj(), d.small(), &n, e)
	case opCounterAddBlind:
		rc = l.CounterAddBlind(d.tx(), d.obj(), d.small(), e)
	case opQueuePut:
		tx, o, val := d.tx(), d.obj(), d.value()
		rc = l.QueuePut(tx, o, val, int32(d.byte()%2), e)
		d.into(rc, o, val)
	case opQueueGet:
		if rc = l.QueueGet(d.tx(), d.obj(), int32(d.byte()%2), &v, e); rc == abi.OK {
			d.out(&v)
		}
	case opOpDictGet, opOpDictSet, opOpDictDelete, opOpCounterGet, opOpCounterAdd, opOpQueuePut, opOpQueueGet:
		rc = d.oneShot(op, e)
	case opQueuePeek:
		if rc = l.QueuePeek(d.tx(), d.obj(), d.small(), &v, e); rc == abi.OK {
			d.out(&v)
		}
	case opQueueLen:
		rc = l.QueueLen(d.tx(), d.obj(), &n, e)
	case opQueueCap:
		rc = l.QueueCap(d.tx(), d.obj(), &n, e)
	case opStore:
		s := d.pick([]uint64{d.st})
		switch d.byte() % 4 {
		case 0:
			rc = l.StoreStats(s, &n, &m, e)
		case 1:
			buf := make([]byte, d.byte()%64+1)
			rc = l.StorePath(s, unsafe.Pointer(&buf[0]), uintptr(len(buf)), e)
		case 2:
			rc = l.Check(s, e)
			if rc == abi.ErrOther {
				d.t.Fatalf("check during the run: %s", e.Message())
			}
		case 3:
			if rc = l.Recover(s, &n, e); rc == abi.OK && n != 0 {
				d.t.Fatalf("recovered %d processes: none died", n)
			}
		}
	case opCloseReopen:
		if rc = l.Close(d.st, e); rc == abi.OK {
			d.check(op, rc, e)
			d.st = d.open()
			return
		}
	}
	d.check(op, rc, e)
}

// oneShot makes a one-shot call (see FuzzABI for when it may).
func (d *driver) oneShot(op int, e *abi.Error) int32 {
	live, ro := d.live()
	writes := op != opOpDictGet && op != opOpCounterGet
	if ro || writes && live > 0 {
		return abi.OK
	}
	l, st := d.l, d.pick([]uint64{d.st})
	id := d.u64()
	if b := d.byte(); b < 220 && len(d.ids) > 0 {
		id = d.ids[int(b)%len(d.ids)]
	}
	var v abi.Value
	var n int64
	buf := make([]byte, d.byte()%16)
	var bp unsafe.Pointer
	if len(buf) > 0 {
		bp = unsafe.Pointer(&buf[0])
	}
	timeout := d.timeout()
	if b := d.byte(); b%5 == 0 && op < opOpQueuePut {
		timeout = -1 // without limit: only where nothing waits for long
	}
	var rc int32
	switch op {
	case opOpDictGet:
		rc = l.OpDictGet(st, id, d.value(), timeout, &v, bp, int64(len(buf)), e)
	case opOpDictSet:
		rc = l.OpDictSet(st, id, d.value(), d.onceValue(), timeout, e)
	case opOpDictDelete:
		rc = l.OpDictDelete(st, id, d.value(), timeout, e)
	case opOpCounterGet:
		rc = l.OpCounterGet(st, id, timeout, &n, e)
	case opOpCounterAdd:
		rc = l.OpCounterAdd(st, id, d.small(), int32(d.byte()%2), timeout, &n, e)
	case opOpQueuePut:
		rc = l.OpQueuePut(st, id, d.onceValue(), timeout, e)
	case opOpQueueGet:
		rc = l.OpQueueGet(st, id, timeout, &v, bp, int64(len(buf)), e)
	}
	if rc == abi.OK && (op == opOpDictGet || op == opOpQueueGet) {
		switch {
		case v.Kind >= abi.KindDict:
			d.ids = append(d.ids, v.Obj) // an id: there is no transaction after the call
		case v.Kind == abi.KindString || v.Kind == abi.KindBytes:
			if v.Len > 0 && v.Str != bp || v.Len >= int64(len(buf)) || buf[v.Len] != 0 {
				d.t.Fatalf("one-shot String out-value %+v in a buffer of %d", v, len(buf))
			}
		}
	}
	if rc == abi.Short && v.Kind != abi.KindString && v.Kind != abi.KindBytes && v.Kind < abi.KindDict {
		d.t.Fatalf("SHM_SHORT for a value of kind %d", v.Kind)
	}
	return rc
}

// onceValue is a value for a one-shot call: a container by an id.
func (d *driver) onceValue() *abi.Value {
	v := d.value()
	if v != nil && v.Kind >= abi.KindDict && len(d.ids) > 0 && d.byte() < 200 {
		v.Obj = d.ids[int(d.byte())%len(d.ids)]
	}
	return v
}

// finish rolls back what is open, checks the store (through the ABI,
// then for the full list of problems through the root package) and
// closes it.
//
// Reference counting never frees a cycle of containers (a Dict stored in
// itself, or in its own child) once it is unlinked: the root package's
// Check then reports its blocks as leaked. That is the root package's
// (see the report of the capi branch), so an input that stored a
// container in a container other than the root may leave leaked blocks,
// and only them.
func (d *driver) finish() {
	for _, tx := range d.txs {
		if rc := d.l.TxRollback(tx); rc != abi.OK {
			d.t.Fatalf("rollback: %s", abi.CodeName(rc))
		}
	}
	e := &abi.Error{}
	rc := d.l.Check(d.st, e)
	if rc != abi.OK && !d.nested {
		d.t.Fatalf("check: %s: %s", abi.CodeName(rc), e.Message())
	}
	if rc := d.l.Close(d.st, e); rc != abi.OK {
		d.t.Fatalf("close: %s: %s", abi.CodeName(rc), e.Message())
	}
	if s, txs := d.l.Counts(); s != 0 || txs != 0 {
		d.t.Fatalf("%d stores, %d transactions left", s, txs)
	}
	if rc == abi.OK {
		return
	}
	st, err := shmstore.Open("f", shmstore.Options{Dir: d.dir, Create: shmstore.MustExist})
	if err != nil {
		d.t.Fatal(err)
	}
	defer st.Close()
	problems, err := st.Problems()
	if err != nil {
		d.t.Fatal(err)
	}
	for _, p := range problems {
		if !strings.HasSuffix(p, "(leaked)") {
			d.t.Fatalf("check: %s", p)
		}
	}
}

// fuzzSeeds are inputs that reach far: a transaction that makes
// containers of each kind, links them, reads them back and commits, one
// that conflicts, queues that retry, OrElse.
func fuzzSeeds() [][]byte {
	str := func(s string) []byte { return append([]byte{byte(abi.KindString), byte(len(s))}, s...) }
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	op := func(o int, args ...byte) []byte { return append([]byte{byte(o)}, args...) }
	const first, last = 0, 1 // picks: the first handle, the second
	return [][]byte{
		{},
		cat(op(opBegin, 0, first), op(opRoot, first), op(opDictSet, first, first), str("k"), str("v"),
			op(opDictGet, first, first), str("k"), op(opEnd, first, 0)),
		cat(op(opBegin, 0, first), op(opRoot, first),
			op(opNew, first, 0, 0), op(opNew, first, 1, 0), op(opNew, first, 2, 0), op(opNew, first, 3, 2),
			op(opDictSet, first, first), str("d"), []byte{byte(abi.KindDict), 1},
			op(opDictSet, first, first), str("l"), []byte{byte(abi.KindList), 2},
			op(opDictSet, first, first), str("c"), []byte{byte(abi.KindCounter), 3},
			op(opDictSet, first, first), str("q"), []byte{byte(abi.KindQueue), 4},
			op(opQueuePut, first, 4), str("job"), []byte{0},
			op(opListAppend, first, 2), str("item"),
			op(opCounterAdd, first, 3, 8),
			op(opDictKey, first, first, 0), op(opDictKey, first, first, 8),
			op(opObjID, first, 4), op(opEnd, first, 0),
			op(opBegin, 0, first), op(opOpen, 0, 0), op(opQueueGet, last, 9, 0), op(opEnd, last, 0)),
		cat(op(opBegin, 0, first), op(opBegin, 0, first), op(opRoot, first), op(opRoot, last),
			op(opDictGet, first, first), str("k"), op(opDictSet, last, last), str("k"), str("x"),
			op(opEnd, last, 0), op(opDictSet, first, first), str("k"), str("y"),
			op(opEnd, first, 0), op(opRestart, first, 1), op(opRoot, first), op(opEnd, first, 0)),
		cat(op(opBegin, 0, first), op(opRoot, first), op(opDictContainer, first, first), str("q"), []byte{3, 0},
			op(opEnd, first, 0), op(opBegin, 0, first), op(opRoot, last),
			op(opOrElseBegin, last), op(opDictContainer, last, 2), str("q"), []byte{3, 0},
			op(opQueueGet, last, 3, 0), op(opOrElseRetried, last, 0), op(opEnd, last, 3),
			op(opRestart, last, 1), op(opOrElseBegin, last), op(opRetry, last), op(opEnd, last, 3),
			op(opRestart, last, 1), op(opRollback, last)),
		cat(op(opBegin, 0, first), op(opRoot, first), op(opNewRecord), []byte{1, 'P', 2, 1, 'x', 1, 'y', 0, first},
			op(opRecordSet, first, 1), []byte{1, 'x'}, []byte{byte(abi.KindInt), 9}, op(opRecordGet, first, 1, 1, 'x'),
			op(opRecordClass, first, 1), op(opRecordField, first, 1, 8), op(opStore, 0, 2), op(opCloseReopen),
			op(opEnd, first, 0), op(opCloseReopen)),
		// One-shot calls on a Dict and a Queue by their ids.
		cat(op(opBegin, 0, first), op(opRoot, first),
			op(opDictContainer, first, first), str("d"), []byte{0, 0},
			op(opDictContainer, first, first), str("q"), []byte{3, 0},
			op(opObjID, first, 1), op(opObjID, first, 2), op(opEnd, first, 0),
			// store, id (8 bytes), the id picked, buffer size, timeout, no "without limit"
			op(opOpDictSet, first), make([]byte, 8), []byte{0, 0, 0, 1}, str("k"), []byte{byte(abi.KindInt), 40},
			op(opOpDictGet, first), make([]byte, 8), []byte{0, 15, 0, 1}, str("k"),
			op(opOpQueuePut, first), make([]byte, 8), []byte{1, 0, 1, 1}, str("job"),
			op(opOpQueueGet, first), make([]byte, 8), []byte{1, 15, 1, 1},
			op(opOpQueueGet, first), make([]byte, 8), []byte{1, 15, 2, 1}),
	}
}
