//go:build linux && (amd64 || arm64)

package objects

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"reflect"

	"github.com/cespare/xxhash/v2"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/txn"
)

// Sentinel errors.
var (
	// ErrNotFound: no such key, index or field.
	ErrNotFound = errors.New("not found")
	// ErrTypeMismatch: a value of another kind than asked for, or a Go
	// value that cannot be stored (or used as a key).
	ErrTypeMismatch = errors.New("type mismatch")
	// ErrCorrupt: shared memory that does not hold what its layout says
	// (found by a read that was otherwise consistent).
	ErrCorrupt = errors.New("corrupt object")
	// ErrOutOfRange: an index outside a List.
	ErrOutOfRange = errors.New("index out of range")
	// ErrOverflow: a Counter add whose result does not fit in an int64.
	ErrOverflow = errors.New("integer overflow")
	// ErrBadArgument: an argument outside what a call takes (a negative
	// Queue capacity, a nil function).
	ErrBadArgument = errors.New("bad argument")
)

// Kind is the kind of a value.
type Kind uint8

// The kinds. The numbers are stored in shared memory: never renumber.
const (
	KindNone Kind = iota
	KindBool
	KindInt
	KindFloat
	KindString
	KindBytes
	KindDict
	KindList
	KindRecord
	KindCounter
	numKinds
)

var kindNames = [numKinds]string{"None", "Bool", "Int", "Float", "String", "Bytes", "Dict", "List", "Record", "Counter"}

// String names the kind.
func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// IsContainer reports whether values of the kind are shared objects with
// a reference count (Dict, List, Record, Counter).
func (k Kind) IsContainer() bool { return k >= KindDict && k < numKinds }

// Value is one value as a Go program sees it: a scalar copied out of
// shared memory, or a container's handle. Values are immutable.
//
// A Value is 32 bytes in three fields, so that the compiler keeps it in
// registers (a larger struct goes through memory at every call and
// return, which cost a read ~10%): the handle of a container, or of a
// String's or Bytes' blob not read yet, shares the word n.
type Value struct {
	kind Kind
	n    uint64 // Bool (0/1), Int, Float bits; a container's handle; an unread blob's handle
	s    string // String and Bytes content
}

// hd is the handle a container Value names, or the blob a String or
// Bytes Value has not read yet (Null once read); Null for other scalars.
func (v Value) hd() handle.Handle {
	switch {
	case v.kind.IsContainer(), v.kind == KindString, v.kind == KindBytes:
		return handle.Handle(v.n)
	}
	return handle.Null
}

// None is the None value (the zero Value).
var None = Value{}

// Bool makes a Bool value.
func Bool(b bool) Value {
	if b {
		return Value{kind: KindBool, n: 1}
	}
	return Value{kind: KindBool}
}

// Int makes an Int value.
func Int(i int64) Value { return Value{kind: KindInt, n: uint64(i)} }

// Float makes a Float value.
func Float(f float64) Value { return Value{kind: KindFloat, n: math.Float64bits(f)} }

// String makes a String value.
func String(s string) Value { return Value{kind: KindString, s: s} }

// Bytes makes a Bytes value (the bytes are copied).
func Bytes(b []byte) Value { return Value{kind: KindBytes, s: string(b)} }

// Kind is the value's kind.
func (v Value) Kind() Kind { return v.kind }

// Handle is a container value's handle (Null for scalars).
func (v Value) Handle() handle.Handle { return v.hd() }

func mismatch(v Value, want Kind) error {
	return fmt.Errorf("value is %v, not %v: %w", v.kind, want, ErrTypeMismatch)
}

// AsBool returns a Bool value's content.
func (v Value) AsBool() (bool, error) {
	if v.kind != KindBool {
		return false, mismatch(v, KindBool)
	}
	return v.n != 0, nil
}

// AsInt returns an Int value's content.
func (v Value) AsInt() (int64, error) {
	if v.kind != KindInt {
		return 0, mismatch(v, KindInt)
	}
	return int64(v.n), nil
}

// AsFloat returns a Float value's content (an Int converts exactly when it
// can; otherwise ErrTypeMismatch).
func (v Value) AsFloat() (float64, error) {
	switch v.kind {
	case KindFloat:
		return math.Float64frombits(v.n), nil
	case KindInt:
		return float64(int64(v.n)), nil
	}
	return 0, mismatch(v, KindFloat)
}

// AsString returns a String value's content.
func (v Value) AsString() (string, error) {
	if v.kind != KindString {
		return "", mismatch(v, KindString)
	}
	return v.s, nil
}

// AsBytes returns a copy of a Bytes value's content.
func (v Value) AsBytes() ([]byte, error) {
	if v.kind != KindBytes {
		return nil, mismatch(v, KindBytes)
	}
	return []byte(v.s), nil
}

// Scalar returns a scalar value as a Go value: nil, bool, int64, float64,
// string or []byte. Containers return their handle.
func (v Value) Scalar() any {
	switch v.kind {
	case KindNone:
		return nil
	case KindBool:
		return v.n != 0
	case KindInt:
		return int64(v.n)
	case KindFloat:
		return math.Float64frombits(v.n)
	case KindString:
		return v.s
	case KindBytes:
		return []byte(v.s)
	}
	return v.hd()
}

// String formats the value for people.
func (v Value) String() string {
	switch v.kind {
	case KindString:
		return fmt.Sprintf("%q", v.s)
	case KindBytes:
		return fmt.Sprintf("b%q", v.s)
	case KindNone:
		return "None"
	}
	if v.kind.IsContainer() {
		return fmt.Sprintf("%v(%v)", v.kind, v.hd())
	}
	return fmt.Sprint(v.Scalar())
}

// ScalarOf converts a Go scalar into a Value: nil, bool, every integer
// type (unsigned ones up to MaxInt64), float32/64, string, []byte, or a
// Value. Anything else fails with ErrTypeMismatch.
func ScalarOf(x any) (Value, error) {
	switch x := x.(type) {
	case nil:
		return None, nil
	case Value:
		return x, nil
	case bool:
		return Bool(x), nil
	case int:
		return Int(int64(x)), nil
	case int8:
		return Int(int64(x)), nil
	case int16:
		return Int(int64(x)), nil
	case int32:
		return Int(int64(x)), nil
	case int64:
		return Int(x), nil
	case uint8:
		return Int(int64(x)), nil
	case uint16:
		return Int(int64(x)), nil
	case uint32:
		return Int(int64(x)), nil
	case uint:
		if uint64(x) > math.MaxInt64 {
			return None, fmt.Errorf("%d does not fit an Int (int64): %w", x, ErrTypeMismatch)
		}
		return Int(int64(x)), nil
	case uint64:
		if x > math.MaxInt64 {
			return None, fmt.Errorf("%d does not fit an Int (int64): %w", x, ErrTypeMismatch)
		}
		return Int(int64(x)), nil
	case float32:
		return Float(float64(x)), nil
	case float64:
		return Float(x), nil
	case string:
		return String(x), nil
	case []byte:
		return Bytes(x), nil
	}
	// reflect.TypeOf, not %T: x must not leak, or every key and value
	// passed in would be boxed on the heap.
	return None, fmt.Errorf("%v is not a scalar: %w", reflect.TypeOf(x), ErrTypeMismatch)
}

// MaxKeyLen is the longest String or Bytes key. It also bounds what a
// reader copies out of an entry before it knows its read was consistent.
const MaxKeyLen = 64 << 10

// KeyOf converts a Go value into a Dict key: String, Bytes, Int, Bool or
// None (Float and containers are refused with ErrTypeMismatch, keys
// longer than MaxKeyLen with txn.ErrTooLarge).
func KeyOf(x any) (Value, error) {
	if s, ok := x.(string); ok { // the common key, without the type switch
		v := String(s)
		return v, checkKey(v)
	}
	v, err := ScalarOf(x)
	if err != nil {
		return None, fmt.Errorf("key: %w", err)
	}
	return v, checkKey(v)
}

func checkKey(v Value) error {
	if v.kind == KindFloat || v.kind.IsContainer() {
		return fmt.Errorf("key of kind %v: want String, Bytes, Int, Bool or None: %w", v.kind, ErrTypeMismatch)
	}
	if len(v.s) > MaxKeyLen {
		return fmt.Errorf("key of %d bytes: at most %d: %w", len(v.s), MaxKeyLen, txn.ErrTooLarge)
	}
	return nil
}

// Hash is the hash of a key, defined once here so that every language
// agrees: xxHash64 of the key's bytes (String, Bytes), of its 8
// little-endian bytes (Int), of one byte (Bool) or of nothing (None), with
// the kind folded in by a final multiply-xorshift. 64-bit keys spread over
// stripes by the low bits and over table slots by the high bits.
func Hash(k Value) uint64 {
	var h uint64
	switch k.kind {
	case KindString, KindBytes:
		h = xxhash.Sum64String(k.s)
	case KindInt, KindBool:
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], k.n)
		h = xxhash.Sum64(b[:])
	default:
		h = xxhash.Sum64(nil)
	}
	h ^= uint64(k.kind) * 0x9e3779b97f4a7c15
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 32
	return h
}

// keyID is a key as a Go map key: the kind then the content.
func keyID(k Value) string {
	switch k.kind {
	case KindString, KindBytes:
		return string(rune('0'+k.kind)) + k.s
	}
	var b [9]byte
	b[0] = byte(k.kind)
	binary.LittleEndian.PutUint64(b[1:], k.n)
	return string(b[:])
}
