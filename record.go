//go:build linux && (amd64 || arm64)

package shmstore

import (
	"github.com/shmstore/shmstore/objects"
)

// Record is a shared object with a class name and a fixed list of named
// fields, like a struct or a Python dataclass; methods live in programs,
// never in shared memory. Fields start as None. Make one with
// Tx.NewRecord and link it into a container.
//
// A Record is valid only inside the transaction function that produced
// it; afterwards every method fails with ErrTxClosed.
type Record struct {
	txRef
	r *objects.Record
}

func (r txRef) record(rec *objects.Record, err error) (Record, error) {
	if err != nil {
		return Record{}, err
	}
	return Record{txRef: r.ref(), r: rec}, nil
}

// Value is the Record as a Value (to store it in another container too).
func (r Record) Value() Value {
	if r.r == nil {
		return None
	}
	return r.val(r.r.Value())
}

// Class is the Record's class name. A Record's class and fields never
// change, so they stay readable after its transaction.
func (r Record) Class() string {
	if r.r == nil {
		return ""
	}
	return r.r.Class()
}

// Fields are the names of the Record's fields, in order.
func (r Record) Fields() []string {
	if r.r == nil {
		return nil
	}
	return r.r.Fields()
}

// Get returns field name (ErrKeyNotFound if the class has no such field).
func (r Record) Get(name string) (Value, error) {
	if err := r.live("Record"); err != nil {
		return None, err
	}
	v, err := r.r.Get(name)
	return r.val(v), err
}

// Set sets field name (val as for Dict.Set).
func (r Record) Set(name string, val any) error {
	if err := r.live("Record"); err != nil {
		return err
	}
	v, err := r.arg(val)
	if err != nil {
		return err
	}
	return r.r.Set(name, v)
}
