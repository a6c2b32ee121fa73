//go:build linux && (amd64 || arm64)

package abi_test

import (
	"testing"

	"github.com/shmstore/shmstore/bindings/capi/abi"
)

// benchEnv is an env whose Lib checks for a fork as the C library's
// does (a flag, not getpid(2)).
func benchEnv(b *testing.B) *env {
	return newEnvConfig(b, abi.Config{Forked: func() bool { return false }})
}

// BenchmarkDictGet: a get of an Int under a key of a Dict outside any
// transaction, as a caller without a transaction makes it: the header's
// loop (begin, open by id, get, end) against one shm_op_dict_get.
func BenchmarkDictGet(b *testing.B) {
	en := benchEnv(b)
	l := en.l
	d := en.ids()["d"]
	en.ok(l.OpDictSet(en.st, d, str("k"), num(7), -1, en.e()))
	key := str("k")
	var e abi.Error
	b.Run("steps", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var tx uint64
			var dv, v abi.Value
			l.TxBegin(en.st, abi.TxReadOnly, &tx, &e)
			l.TxOpen(tx, d, &dv, &e)
			l.DictGet(tx, dv.Obj, key, &v, &e)
			if rc := l.TxEnd(tx, abi.OK, &e); rc != abi.OK || v.I != 7 {
				b.Fatal(abi.CodeName(rc), e.Message())
			}
		}
	})
	b.Run("op", func(b *testing.B) {
		b.ReportAllocs()
		buf, n := buf(64)
		for b.Loop() {
			var v abi.Value
			if rc := l.OpDictGet(en.st, d, key, 100, &v, buf, n, &e); rc != abi.OK || v.I != 7 {
				b.Fatal(abi.CodeName(rc), e.Message())
			}
		}
	})
}

// BenchmarkDictSet: a set outside any transaction, as BenchmarkDictGet.
func BenchmarkDictSet(b *testing.B) {
	en := benchEnv(b)
	l := en.l
	d := en.ids()["d"]
	key := str("k")
	var e abi.Error
	b.Run("steps", func(b *testing.B) {
		b.ReportAllocs()
		i := int64(0)
		for b.Loop() {
			var tx uint64
			var dv abi.Value
			l.TxBegin(en.st, 0, &tx, &e)
			l.TxOpen(tx, d, &dv, &e)
			l.DictSet(tx, dv.Obj, key, num(i), &e)
			if rc := l.TxEnd(tx, abi.OK, &e); rc != abi.OK {
				b.Fatal(abi.CodeName(rc), e.Message())
			}
			i++
		}
	})
	b.Run("op", func(b *testing.B) {
		b.ReportAllocs()
		i := int64(0)
		for b.Loop() {
			if rc := l.OpDictSet(en.st, d, key, num(i), 100, &e); rc != abi.OK {
				b.Fatal(abi.CodeName(rc), e.Message())
			}
			i++
		}
	})
}

// BenchmarkCounter: one-shot counter calls outside any transaction (the
// Counter named by its id): a get, an add that reads the new value, a
// blind add.
func BenchmarkCounter(b *testing.B) {
	en := benchEnv(b)
	l := en.l
	c := en.ids()["c"]
	var e abi.Error
	var n int64
	for _, bc := range []struct {
		name string
		call func() int32
	}{
		{"get", func() int32 { return l.OpCounterGet(en.st, c, 100, &n, &e) }},
		{"add", func() int32 { return l.OpCounterAdd(en.st, c, 1, 0, 100, &n, &e) }},
		{"blind", func() int32 { return l.OpCounterAdd(en.st, c, 1, 1, 100, nil, &e) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if rc := bc.call(); rc != abi.OK {
					b.Fatal(abi.CodeName(rc), e.Message())
				}
			}
		})
	}
}
