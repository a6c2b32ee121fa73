//go:build linux && (amd64 || arm64)

package shmstore

import (
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/objects"
)

// Dict is a shared hash table, as one transaction sees it. Keys are
// String, Bytes, Int, Bool or None (Go strings, []byte, integers, bools,
// nil, or such Values); values are any Value, Go scalar, or Go map, slice
// or struct (stored as new shared containers). Its lock is striped:
// writers of different keys rarely conflict.
//
// A Dict is valid only inside the transaction function that produced it;
// afterwards every method fails with ErrTxClosed. The zero Dict is not
// usable.
type Dict struct {
	txRef
	d *objects.Dict // good only while the attempt runs: the next reuses it
	h handle.Handle // the Dict's own, for Value (which checks nothing)
}

func (r txRef) dict(d *objects.Dict, err error) (Dict, error) {
	if err != nil {
		return Dict{}, err
	}
	return Dict{txRef: r.ref(), d: d, h: d.Handle()}, nil
}

// Value is the Dict as a Value (to store it in another container too:
// both then share it).
func (d Dict) Value() Value {
	if d.d == nil {
		return None
	}
	// From d's own handle, never through d.d, which a later attempt of
	// the slot reuses for another Dict; stamped with d's attempt, so
	// that another attempt refuses it.
	return d.val(objects.DictValue(d.h))
}

// Lookup returns the value under key and whether there is one.
func (d Dict) Lookup(key any) (Value, bool, error) {
	k, err := d.key(key)
	if err != nil {
		return None, false, err
	}
	v, ok, err := d.d.LookupKey(k)
	return d.val(v), ok, err
}

// key checks that the Dict is live and converts a key. A key is a
// scalar, converted here without keeping key: so the caller's key, boxed
// to pass it as an any, stays on its stack (no allocation per call).
func (d Dict) key(key any) (objects.Value, error) {
	if err := d.live("Dict"); err != nil {
		return objects.None, err
	}
	if s, ok := key.(string); ok && len(s) <= objects.MaxKeyLen {
		return objects.String(s), nil // the common key, checked in place (KeyOf's return costs a transfer ~10%)
	}
	if v, ok := key.(Value); ok {
		return objects.KeyOf(v.v) // a container is refused: never a key
	}
	return objects.KeyOf(key)
}

// Get returns the value under key, or an error wrapping ErrKeyNotFound.
func (d Dict) Get(key any) (Value, error) {
	k, err := d.key(key)
	if err != nil {
		return None, err
	}
	v, err := d.d.GetKey(k)
	return d.val(v), err
}

// Has reports whether key is present.
func (d Dict) Has(key any) (bool, error) {
	_, ok, err := d.Lookup(key)
	return ok, err
}

// GetInt returns the Int under key; a Counter under key is read too.
func (d Dict) GetInt(key any) (int64, error) {
	k, err := d.key(key)
	if err != nil {
		return 0, err
	}
	v, err := d.d.GetKey(k)
	if err != nil {
		return 0, err
	}
	n, err := d.t.IntOf(v)
	return n, objects.AtKey(k, err)
}

// GetFloat returns the Float (or Int) under key.
func (d Dict) GetFloat(key any) (float64, error) {
	k, err := d.key(key)
	if err != nil {
		return 0, err
	}
	return d.d.GetFloat(k)
}

// GetString returns the String under key.
func (d Dict) GetString(key any) (string, error) {
	k, err := d.key(key)
	if err != nil {
		return "", err
	}
	return d.d.GetString(k)
}

// GetBytes returns a copy of the Bytes under key.
func (d Dict) GetBytes(key any) ([]byte, error) {
	k, err := d.key(key)
	if err != nil {
		return nil, err
	}
	return d.d.GetBytes(k)
}

// GetBool returns the Bool under key.
func (d Dict) GetBool(key any) (bool, error) {
	k, err := d.key(key)
	if err != nil {
		return false, err
	}
	return d.d.GetBool(k)
}

// Set stores val under key: a Value, a Dict, List, Record or Counter of
// this transaction (shared, not copied), a Go scalar, or a Go map, slice
// or struct (copied into new shared containers).
func (d Dict) Set(key, val any) error {
	k, err := d.key(key)
	if err != nil {
		return err
	}
	v, err := d.arg(val)
	if err != nil {
		return err
	}
	return d.d.SetKey(k, v)
}

// SetInt stores the Int n under key: Set without boxing n (no heap
// allocation per call).
func (d Dict) SetInt(key any, n int64) error {
	k, err := d.key(key)
	if err != nil {
		return err
	}
	return d.d.SetScalar(k, objects.Int(n))
}

// Delete removes key; a missing key is ErrKeyNotFound.
func (d Dict) Delete(key any) error {
	k, err := d.key(key)
	if err != nil {
		return err
	}
	return d.d.DeleteKey(k)
}

// Len is the number of keys (it reads every stripe).
func (d Dict) Len() (int, error) {
	if err := d.live("Dict"); err != nil {
		return 0, err
	}
	return d.d.Len()
}

// Range calls fn for every key and value, in no particular order, until
// fn returns false. The transaction's own writes are included.
func (d Dict) Range(fn func(k, v Value) bool) error {
	if err := d.live("Dict"); err != nil {
		return err
	}
	return d.d.Range(func(k, v objects.Value) bool { return fn(d.val(k), d.val(v)) })
}

// Keys returns every key, in no particular order.
func (d Dict) Keys() ([]Value, error) {
	if err := d.live("Dict"); err != nil {
		return nil, err
	}
	ks, err := d.d.Keys()
	return d.vals(ks), err
}

// Dict returns the Dict under key, making an empty one if key is absent.
func (d Dict) Dict(key any) (Dict, error) {
	k, err := d.key(key)
	if err != nil {
		return Dict{}, err
	}
	return d.dict(d.d.Dict(k))
}

// GetDict returns the Dict under key (ErrKeyNotFound if absent,
// ErrTypeMismatch if another kind).
func (d Dict) GetDict(key any) (Dict, error) {
	k, err := d.key(key)
	if err != nil {
		return Dict{}, err
	}
	return d.dict(d.d.GetDict(k))
}

// List returns the List under key, making an empty one if key is absent.
func (d Dict) List(key any) (List, error) {
	k, err := d.key(key)
	if err != nil {
		return List{}, err
	}
	return d.list(d.d.List(k))
}

// GetList returns the List under key (ErrKeyNotFound if absent).
func (d Dict) GetList(key any) (List, error) {
	k, err := d.key(key)
	if err != nil {
		return List{}, err
	}
	return d.list(d.d.GetList(k))
}

// Counter returns the Counter under key, making one at zero if key is
// absent.
func (d Dict) Counter(key any) (Counter, error) {
	k, err := d.key(key)
	if err != nil {
		return Counter{}, err
	}
	return d.counter(d.d.Counter(k))
}

// GetRecord returns the Record under key (ErrKeyNotFound if absent).
func (d Dict) GetRecord(key any) (Record, error) {
	k, err := d.key(key)
	if err != nil {
		return Record{}, err
	}
	return d.record(d.d.GetRecord(k))
}
