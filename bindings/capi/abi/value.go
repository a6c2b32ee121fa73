//go:build linux && (amd64 || arm64)

package abi

import (
	"fmt"
	"unsafe"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/objects"
)

// Value is shm_value, field for field (the shim converts pointers to it):
// in, the caller fills Kind and the member that kind uses (Str and Len
// point at the caller's String or Bytes, read during the call only; Obj
// names a container of the same transaction); out, the library fills
// them, Str pointing into the transaction's Buffer, a container as an
// object handle with its kind (KindQueue for a queue).
type Value struct {
	Kind int32
	B    int32 // Bool: 0 or 1 (in: any non-zero is true)
	I    int64
	F    float64
	Str  unsafe.Pointer // String (UTF-8, as is) and Bytes
	Len  int64
	Obj  uint64
}

// Options is shm_options, field for field. Dir is a NUL-terminated string
// or nil (the default directory).
type Options struct {
	Dir        unsafe.Pointer
	RegionSize int64
	MaxSize    int64
	Mode       uint32
	Create     int32
	ReadOnly   int32
}

// Buffer is where a transaction puts the String and Bytes it hands out:
// one block, reused by each call and grown as needed, freed when the
// transaction ends. The C library's is C.malloc'd memory (C must never
// see Go memory); New's default is a Go slice, for Go callers and tests.
type Buffer interface {
	// Grow returns at least n bytes (what they held before is lost), or
	// nil when no memory is to be had.
	Grow(n int) unsafe.Pointer
	// Free gives the memory back; the Buffer is not used again.
	Free()
}

// goBuffer is the default Buffer.
type goBuffer struct{ b []byte }

// Grow returns at least n bytes of a Go slice (doubling).
func (g *goBuffer) Grow(n int) unsafe.Pointer {
	if len(g.b) < n {
		g.b = make([]byte, max(n, 2*len(g.b), 64))
	}
	return unsafe.Pointer(&g.b[0])
}

// Free drops the slice.
func (g *goBuffer) Free() { g.b = nil }

// maxName bounds the C strings that name things (stores, directories,
// record classes and fields), so that a string without its NUL is an
// error before it is a crash, as far as that can be helped.
const maxName = 64 << 10

// cstring copies the NUL-terminated string at p; what names it for the
// message.
func cstring(p unsafe.Pointer, what string) (string, error) {
	if p == nil {
		return "", badArg("%s is NULL", what)
	}
	for n := 0; n < maxName; n++ {
		if *(*byte)(unsafe.Add(p, n)) == 0 {
			return string(unsafe.Slice((*byte)(p), n)), nil
		}
	}
	return "", badArg("%s is longer than %d bytes (no NUL?)", what, maxName)
}

// bytesIn checks a caller's (Str, Len) and returns the bytes, still in
// the caller's memory: copy them before the call returns.
func bytesIn(v *Value, limit int64) ([]byte, error) {
	switch {
	case v.Len < 0:
		return nil, badArg("value length %d is negative", v.Len)
	case v.Len > 0 && v.Str == nil:
		return nil, badArg("value of length %d at NULL", v.Len)
	case v.Len > limit:
		return nil, failf(ErrTooLarge, "shmstore: value of %d bytes is larger than the store's regions (%d)", v.Len, limit)
	case v.Len == 0:
		return nil, nil
	}
	return unsafe.Slice((*byte)(v.Str), v.Len), nil
}

// in converts a value (or key) passed in for the root package's methods,
// which take any: a scalar as a Go value, copied into Go memory; a
// container as the Value of the object of this attempt that v.Obj names.
func (t *txEntry) in(v *Value, what string) (any, error) {
	x, container, err := scalarIn(v, what, t.store.maxValue)
	if !container || err != nil {
		return x, err
	}
	o, err := t.obj(v.Obj)
	if err != nil {
		return nil, err
	}
	if err := kindIs(what, v, o.kind); err != nil {
		return nil, err
	}
	return o.v, nil
}

// scalarIn converts a scalar passed in into a Go value (nil, bool,
// int64, float64, string, []byte; copied into Go memory, limit bounding a
// String's or Bytes' length), or reports that v is a container (container
// true), which the caller resolves from v.Obj. Go values, not Values: the
// root package takes them as they are, where a Value costs it an
// allocation more (a conversion back to its own kind of value).
func scalarIn(v *Value, what string, limit int64) (x any, container bool, err error) {
	if v == nil {
		return nil, false, badArg("%s is NULL", what)
	}
	switch v.Kind {
	case KindNone:
		return nil, false, nil
	case KindBool:
		return v.B != 0, false, nil
	case KindInt:
		return v.I, false, nil
	case KindFloat:
		return v.F, false, nil
	case KindString, KindBytes:
		b, err := bytesIn(v, limit)
		if err != nil {
			return nil, false, err
		}
		if v.Kind == KindString {
			return string(b), false, nil // string() copies
		}
		return append([]byte{}, b...), false, nil
	case KindDict, KindList, KindRecord, KindCounter, KindQueue:
		return nil, true, nil
	}
	return nil, false, badArg("%s: kind %d is not a kind of value", what, v.Kind)
}

// valueIn is scalarIn for the one-shot calls, which work on the object
// space under the root package: a scalar as an objects.Value, or
// container true. A Bytes is copied into Go memory, and so is a String
// unless view: then it stays in the caller's memory, which is only good
// while the call runs and the caller does not change it, so view is for
// a key that is only looked up in the call (a read-only transaction's,
// which keeps no key: see OpDictGet).
func valueIn(v *Value, what string, limit int64, view bool) (x objects.Value, container bool, err error) {
	if v == nil {
		return objects.None, false, badArg("%s is NULL", what)
	}
	switch v.Kind {
	case KindNone:
		return objects.None, false, nil
	case KindBool:
		return objects.Bool(v.B != 0), false, nil
	case KindInt:
		return objects.Int(v.I), false, nil
	case KindFloat:
		return objects.Float(v.F), false, nil
	case KindString, KindBytes:
		b, err := bytesIn(v, limit)
		if err != nil {
			return objects.None, false, err
		}
		switch {
		case v.Kind == KindBytes:
			return objects.Bytes(b), false, nil // copies
		case view:
			return objects.String(unsafe.String(unsafe.SliceData(b), len(b))), false, nil
		}
		return objects.String(string(b)), false, nil // string() copies
	case KindDict, KindList, KindRecord, KindCounter, KindQueue:
		return objects.None, true, nil
	}
	return objects.None, false, badArg("%s: kind %d is not a kind of value", what, v.Kind)
}

// kindIs checks that a container passed in as v is of the kind v says
// (a Queue passes for a List).
func kindIs(what string, v *Value, kind int32) error {
	if kind != v.Kind && !(v.Kind == KindList && kind == KindQueue) {
		return failf(ErrType, "shmstore: %s: object %#x is a %s, not a %s", what, v.Obj, kindName(kind), kindName(v.Kind))
	}
	return nil
}

// scalarOut converts a value passed out, if a scalar (ok), into r: its
// kind and member; a String's or Bytes' content is s, for the caller to
// place (Str and Len).
func scalarOut(v shmstore.Value, r *Value) (s string, ok bool) {
	*r = Value{Kind: int32(v.Kind())}
	switch v.Kind() {
	case shmstore.KindNone:
	case shmstore.KindBool:
		if b, _ := v.AsBool(); b {
			r.B = 1
		}
	case shmstore.KindInt:
		r.I, _ = v.AsInt()
	case shmstore.KindFloat:
		r.F, _ = v.AsFloat()
	case shmstore.KindString:
		s, _ = v.AsString()
	case shmstore.KindBytes:
		b, _ := v.AsBytes()
		s = string(b)
	default:
		return "", false
	}
	return s, true
}

// valueOut is scalarOut for a value read by a one-shot call (an
// objects.Value).
func valueOut(v objects.Value, r *Value) (s string, ok bool) {
	*r = Value{Kind: int32(v.Kind())}
	switch v.Kind() {
	case objects.KindNone:
	case objects.KindBool:
		if b, _ := v.AsBool(); b {
			r.B = 1
		}
	case objects.KindInt:
		r.I, _ = v.AsInt()
	case objects.KindFloat:
		r.F, _ = v.AsFloat()
	case objects.KindString:
		s, _ = v.AsString()
	case objects.KindBytes:
		b, _ := v.AsBytes()
		s = string(b)
	default:
		return "", false
	}
	return s, true
}

// out writes v into *out: a String or Bytes into the transaction's
// buffer, a container as an object handle of this attempt.
func (t *txEntry) out(v shmstore.Value, out *Value) error {
	var o Value
	s, scalar := scalarOut(v, &o)
	switch {
	case !scalar:
		h, kind, err := t.register(v)
		if err != nil {
			return err
		}
		o.Kind, o.Obj = kind, h
	case o.Kind == KindString || o.Kind == KindBytes:
		if err := t.put(&o, s); err != nil {
			return err
		}
	}
	*out = o
	return nil
}

// outString writes a String into *out.
func (t *txEntry) outString(s string, out *Value) error {
	o := Value{Kind: KindString}
	if err := t.put(&o, s); err != nil {
		return err
	}
	*out = o
	return nil
}

// put copies s into the transaction's buffer, NUL-terminated (for C
// callers' convenience; Len does not count the NUL), and points o at it.
func (t *txEntry) put(o *Value, s string) error {
	if t.buf == nil {
		t.buf = t.lib.newBuffer()
	}
	p := t.buf.Grow(len(s) + 1)
	if p == nil {
		return failf(ErrNoMemory, "shmstore: no memory for a value of %d bytes", len(s))
	}
	b := unsafe.Slice((*byte)(p), len(s)+1)
	b[copy(b, s)] = 0
	o.Str, o.Len = p, int64(len(s))
	return nil
}

// kindName names an ABI kind.
func kindName(k int32) string {
	switch k {
	case KindQueue:
		return "Queue"
	case KindNone, KindBool, KindInt, KindFloat, KindString, KindBytes, KindDict, KindList, KindRecord, KindCounter:
		return shmstore.Kind(k).String()
	}
	return fmt.Sprintf("kind %d", k)
}
