//go:build linux && (amd64 || arm64)

package shmstore

import (
	"fmt"
	"slices"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/shmstore/shmstore/objects"
)

// Kind is the kind of a Value.
type Kind uint8

// The kinds of values.
const (
	KindNone    = Kind(objects.KindNone)    // None (nil)
	KindBool    = Kind(objects.KindBool)    // bool
	KindInt     = Kind(objects.KindInt)     // int64
	KindFloat   = Kind(objects.KindFloat)   // float64
	KindString  = Kind(objects.KindString)  // UTF-8 string
	KindBytes   = Kind(objects.KindBytes)   // []byte
	KindDict    = Kind(objects.KindDict)    // a shared Dict
	KindList    = Kind(objects.KindList)    // a shared List
	KindRecord  = Kind(objects.KindRecord)  // a shared Record
	KindCounter = Kind(objects.KindCounter) // a shared Counter
)

// String names the kind ("Int", "Dict", ...).
func (k Kind) String() string { return objects.Kind(k).String() }

// IsContainer reports whether values of the kind are shared objects
// (Dict, List, Record, Counter) rather than scalars.
func (k Kind) IsContainer() bool { return objects.Kind(k).IsContainer() }

// Value is one value read from the store: a scalar copied out of shared
// memory (None, Bool, Int, Float, String, Bytes), which stays valid
// forever, or a reference to a shared container, which is valid only
// inside the transaction that read it (open it with Tx.Dict, Tx.List,
// Tx.Record or Tx.Counter; afterwards that fails with ErrTxClosed).
// The zero Value is None. Scalar Values compare with ==.
type Value struct {
	v   objects.Value
	gen uint64 // for a container: the attempt that read it (see Tx); 0 for scalars
}

// None is the None value (the zero Value).
var None = Value{}

// Bool makes a Bool value.
func Bool(b bool) Value { return Value{v: objects.Bool(b)} }

// Int makes an Int value.
func Int(i int64) Value { return Value{v: objects.Int(i)} }

// Float makes a Float value.
func Float(f float64) Value { return Value{v: objects.Float(f)} }

// String makes a String value.
func String(s string) Value { return Value{v: objects.String(s)} }

// Bytes makes a Bytes value (the bytes are copied).
func Bytes(b []byte) Value { return Value{v: objects.Bytes(b)} }

// valueOf wraps what a transaction read; a container is stamped with the
// attempt, so that its use after the attempt is refused.
func valueOf(v objects.Value, gen uint64) Value {
	if v.Kind().IsContainer() {
		return Value{v: v, gen: gen}
	}
	return Value{v: v}
}

// Kind is the value's kind.
func (v Value) Kind() Kind { return Kind(v.v.Kind()) }

// IsNone reports whether the value is None.
func (v Value) IsNone() bool { return v.v.Kind() == objects.KindNone }

// AsBool returns a Bool's value (else ErrTypeMismatch).
func (v Value) AsBool() (bool, error) { return v.v.AsBool() }

// AsInt returns an Int's value (else ErrTypeMismatch; a Counter is read
// with Tx.Int or Counter.Get).
func (v Value) AsInt() (int64, error) { return v.v.AsInt() }

// AsFloat returns a Float's value, or an Int's as a float64 (else
// ErrTypeMismatch).
func (v Value) AsFloat() (float64, error) { return v.v.AsFloat() }

// AsString returns a String's value (else ErrTypeMismatch).
func (v Value) AsString() (string, error) { return v.v.AsString() }

// AsBytes returns a copy of a Bytes value (else ErrTypeMismatch).
func (v Value) AsBytes() ([]byte, error) { return v.v.AsBytes() }

// Scalar returns a scalar as a Go value: nil, bool, int64, float64,
// string or []byte. A container returns nil: open it in its transaction.
func (v Value) Scalar() any {
	if v.v.Kind().IsContainer() {
		return nil
	}
	return v.v.Scalar()
}

// String formats the value for people: "hello" quoted, b"..." for Bytes,
// None, numbers and booleans as Go prints them, Dict(handle) for
// containers.
func (v Value) String() string { return v.v.String() }

// EncodeMsgpack lets a scalar Value sit inside a Go value given to Set
// (it is stored as the scalar). A container Value cannot: store it with
// its own Set, so that it is shared rather than copied.
func (v Value) EncodeMsgpack(enc *msgpack.Encoder) error {
	if v.v.Kind().IsContainer() {
		return fmt.Errorf("shmstore: a %v inside a Go value: store it with Set of its own: %w", v.Kind(), ErrTypeMismatch)
	}
	return enc.Encode(v.v.Scalar())
}

// ValueOf converts a Go scalar into a Value: nil, bool, any integer type
// (unsigned ones up to MaxInt64), float32/64, string, []byte, or a scalar
// Value. Anything else fails with ErrTypeMismatch.
func ValueOf(x any) (Value, error) {
	if v, ok := x.(Value); ok {
		if v.v.Kind().IsContainer() {
			return None, fmt.Errorf("shmstore: ValueOf a %v: %w", v.Kind(), ErrTypeMismatch)
		}
		return v, nil
	}
	v, err := objects.ScalarOf(x)
	if err != nil {
		return None, fmt.Errorf("shmstore: %w", err)
	}
	return Value{v: v}, nil
}

// SortKeys orders Dict keys for stable output: by kind (None, Bool, Int,
// String, Bytes), then by value.
func SortKeys(ks []Value) {
	slices.SortFunc(ks, func(a, b Value) int { return objects.CompareKeys(a.v, b.v) })
}

// ID names a container across transactions and processes (0 for a
// scalar): Tx.Open gives the container back while it is linked from
// somewhere. For bindings and for passing a container to another process
// (Python pickles its proxies so); a Go program keeps paths or keys.
func (v Value) ID() uint64 {
	if !v.v.Kind().IsContainer() {
		return 0
	}
	return uint64(v.v.Handle())
}
