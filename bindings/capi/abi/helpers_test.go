//go:build linux && (amd64 || arm64)

package abi_test

import (
	"os"
	"strings"
	"testing"
	"unsafe"

	"github.com/shmstore/shmstore/bindings/capi/abi"
	"github.com/shmstore/shmstore/internal/proctest"
	"github.com/shmstore/shmstore/shm/shmtest"
)

// TestMain raises the waits' safety-net timeout, as the root package's
// tests do, so that a lost wake-up shows as a hang; in a worker process
// (internal/proctest) it runs the worker's role instead of the tests.
func TestMain(m *testing.M) {
	if os.Getenv("SHMSTORE_WAIT_TIMEOUT") == "" {
		_ = os.Setenv("SHMSTORE_WAIT_TIMEOUT", "1m")
	}
	proctest.Main(m)
}

// cs is a NUL-terminated copy of s, as C passes strings.
func cs(s string) unsafe.Pointer {
	b := append([]byte(s), 0)
	return unsafe.Pointer(&b[0])
}

// str, byt, num, flt, boo and none make values to pass in.
func str(s string) *abi.Value {
	v := &abi.Value{Kind: abi.KindString, Len: int64(len(s))}
	if s != "" {
		b := []byte(s)
		v.Str = unsafe.Pointer(&b[0])
	}
	return v
}

func byt(b []byte) *abi.Value {
	v := &abi.Value{Kind: abi.KindBytes, Len: int64(len(b))}
	if len(b) > 0 {
		v.Str = unsafe.Pointer(&b[0])
	}
	return v
}

func num(i int64) *abi.Value   { return &abi.Value{Kind: abi.KindInt, I: i} }
func flt(f float64) *abi.Value { return &abi.Value{Kind: abi.KindFloat, F: f} }
func boo(b bool) *abi.Value {
	v := &abi.Value{Kind: abi.KindBool}
	if b {
		v.B = 1
	}
	return v
}
func none() *abi.Value                    { return &abi.Value{} }
func obj(kind int32, h uint64) *abi.Value { return &abi.Value{Kind: kind, Obj: h} }

// text is a String or Bytes out-value's content, read where it points
// (checking the NUL after it).
func text(t testing.TB, v abi.Value) string {
	t.Helper()
	if v.Kind != abi.KindString && v.Kind != abi.KindBytes {
		t.Fatalf("value of kind %d is no String or Bytes", v.Kind)
	}
	if v.Str == nil {
		t.Fatalf("String out-value at NULL")
	}
	b := unsafe.Slice((*byte)(v.Str), v.Len+1)
	if b[v.Len] != 0 {
		t.Fatalf("String out-value not NUL-terminated")
	}
	return string(b[:v.Len])
}

// env is a Lib with one store open in a test directory.
type env struct {
	t   testing.TB
	l   *abi.Lib
	dir string
	st  uint64
}

// newEnv opens the store "t" in a new directory of its own.
func newEnv(t testing.TB) *env {
	t.Helper()
	return newEnvConfig(t, abi.Config{})
}

func newEnvConfig(t testing.TB, c abi.Config) *env {
	t.Helper()
	en := &env{t: t, l: abi.New(c), dir: shmtest.Dir(t)}
	en.st = en.open("t", abi.OpenCreate)
	t.Cleanup(func() {
		stores, txs := en.l.Counts()
		if txs != 0 {
			t.Errorf("%d transactions left open", txs)
		}
		var e abi.Error
		if stores > 0 {
			if rc := en.l.Check(en.st, &e); rc != abi.OK && rc != abi.ErrClosed {
				t.Errorf("check: %s: %s", abi.CodeName(rc), e.Message())
			}
			en.l.Close(en.st, &e)
		}
	})
	return en
}

// opts are small options in en's directory.
func (en *env) opts(create int32) *abi.Options {
	return &abi.Options{Dir: cs(en.dir), RegionSize: 1 << 20, MaxSize: 16 << 20, Create: create}
}

func (en *env) open(name string, create int32) uint64 {
	en.t.Helper()
	var h uint64
	en.ok(en.l.Open(cs(name), en.opts(create), &h, en.e()))
	return h
}

// openReadOnly opens the existing store name read-only (for Stats and
// Check: every transaction on it is refused).
func (en *env) openReadOnly(name string) uint64 {
	en.t.Helper()
	o := en.opts(abi.OpenMustExist)
	o.ReadOnly = 1
	var h uint64
	en.ok(en.l.Open(cs(name), o, &h, en.e()))
	return h
}

// lastErr is the Error of the last call made with en.e().
var lastErr abi.Error

// e is a fresh Error for a call.
func (en *env) e() *abi.Error {
	lastErr = abi.Error{Code: 12345}
	return &lastErr
}

// ok fails the test unless rc is OK.
func (en *env) ok(rc int32) {
	en.t.Helper()
	if rc != abi.OK {
		en.t.Fatalf("got %s (%s), want SHM_OK", abi.CodeName(rc), lastErr.Message())
	}
}

// is fails the test unless rc is want; a failure must have filled the
// Error with the code and a message, a success must have left it alone.
func (en *env) is(rc, want int32) {
	en.t.Helper()
	if rc != want {
		en.t.Fatalf("got %s (%s), want %s", abi.CodeName(rc), lastErr.Message(), abi.CodeName(want))
	}
	checkErr(en.t, rc, &lastErr)
}

// checkErr checks what a call did to its Error.
func checkErr(t testing.TB, rc int32, e *abi.Error) {
	t.Helper()
	switch {
	case rc < 0 && (e.Code != rc || e.Message() == ""):
		t.Fatalf("%s: error filled with code %d, message %q", abi.CodeName(rc), e.Code, e.Message())
	case rc >= 0 && e.Code != 12345:
		t.Fatalf("%s: error written (%d %q)", abi.CodeName(rc), e.Code, e.Message())
	}
}

// begin begins a transaction.
func (en *env) begin(flags int32) uint64 {
	en.t.Helper()
	var tx uint64
	en.ok(en.l.TxBegin(en.st, flags, &tx, en.e()))
	return tx
}

func (en *env) root(tx uint64) uint64 {
	en.t.Helper()
	var r uint64
	en.ok(en.l.TxRoot(tx, &r, en.e()))
	return r
}

// commit ends tx's attempt with SHM_OK and wants it committed.
func (en *env) commit(tx uint64) {
	en.t.Helper()
	en.ok(en.l.TxEnd(tx, abi.OK, en.e()))
}

// update runs body in a transaction with the header's loop and returns
// how many times it ran and the final code.
func (en *env) update(body func(tx uint64) int32) (runs int, rc int32) {
	en.t.Helper()
	tx := en.begin(0)
	for {
		runs++
		rc = en.l.TxEnd(tx, body(tx), en.e())
		if rc != abi.Again {
			return runs, rc
		}
		for rc = en.l.TxRestart(tx, 10_000, en.e()); rc == abi.Timeout; rc = en.l.TxRestart(tx, 10_000, en.e()) {
		}
		if rc != abi.OK {
			en.l.TxRollback(tx)
			return runs, rc
		}
	}
}

// set commits key = val in the root.
func (en *env) set(key string, val *abi.Value) {
	en.t.Helper()
	_, rc := en.update(func(tx uint64) int32 {
		return en.l.DictSet(tx, en.root(tx), str(key), val, en.e())
	})
	en.ok(rc)
}

// getInt reads the Int under key in the root in a transaction of its own.
func (en *env) getInt(key string) int64 {
	en.t.Helper()
	var v abi.Value
	_, rc := en.update(func(tx uint64) int32 {
		return en.l.DictGet(tx, en.root(tx), str(key), &v, en.e())
	})
	en.ok(rc)
	if v.Kind != abi.KindInt {
		en.t.Fatalf("%s: kind %d", key, v.Kind)
	}
	return v.I
}

// contains fails the test unless the last Error's message has sub.
func (en *env) says(sub string) {
	en.t.Helper()
	if !strings.Contains(lastErr.Message(), sub) {
		en.t.Fatalf("message %q does not say %q", lastErr.Message(), sub)
	}
}

// pid is this process's, to undo Lib.SetPid.
var pid = os.Getpid()
