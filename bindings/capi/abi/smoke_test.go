//go:build linux && (amd64 || arm64)

package abi_test

import (
	"testing"
	"unsafe"

	"github.com/shmstore/shmstore/bindings/capi/abi"
	"github.com/shmstore/shmstore/shm/shmtest"
)

func cs(s string) unsafe.Pointer { b := append([]byte(s), 0); return unsafe.Pointer(&b[0]) }

func TestSmoke(t *testing.T) {
	l := abi.New(abi.Config{})
	var e abi.Error
	var st, tx, root uint64
	if rc := l.Open(cs("smoke"), &abi.Options{Dir: cs(shmtest.Dir(t)), RegionSize: 1 << 20, MaxSize: 8 << 20}, &st, &e); rc != 0 {
		t.Fatal(rc, e.Message())
	}
	if rc := l.TxBegin(st, 0, &tx, &e); rc != 0 {
		t.Fatal(rc, e.Message())
	}
	if rc := l.TxRoot(tx, &root, &e); rc != 0 {
		t.Fatal(rc, e.Message())
	}
	k := []byte("k")
	key := abi.Value{Kind: abi.KindString, Str: unsafe.Pointer(&k[0]), Len: 1}
	val := abi.Value{Kind: abi.KindInt, I: 42}
	if rc := l.DictSet(tx, root, &key, &val, &e); rc != 0 {
		t.Fatal(rc, e.Message())
	}
	var out abi.Value
	if rc := l.DictGet(tx, root, &key, &out, &e); rc != 0 || out.I != 42 {
		t.Fatal(rc, e.Message(), out)
	}
	if rc := l.TxEnd(tx, 0, &e); rc != 0 {
		t.Fatal(rc, e.Message())
	}
	if rc := l.DictGet(tx, root, &key, &out, &e); rc != abi.ErrTxClosed {
		t.Fatal(rc, e.Message())
	}
	t.Log(e.Message())
	if rc := l.Close(st, &e); rc != 0 {
		t.Fatal(rc, e.Message())
	}
}
