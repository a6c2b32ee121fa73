//go:build linux && (amd64 || arm64)

package shmstore

import (
	"fmt"

	"github.com/shmstore/shmstore/objects"
)

// txRef ties an object or a Tx handed to user code to the attempt that
// produced it: gen is the attempt's Tx.Gen at the time, and every method
// compares it with the Tx's present one first. An attempt's gen changes
// when its function returns, so whatever it handed out is refused after
// that with ErrTxClosed: never a read of stale data, never a write that
// goes nowhere. The check is two loads of process-local memory.
type txRef struct {
	t   *objects.Tx
	gen uint64
}

// live reports ErrTxClosed if the attempt that made r has ended; what
// names the object for the message.
func (r txRef) live(what string) error {
	if r.t == nil {
		return fmt.Errorf("shmstore: %s not from a transaction: %w", what, ErrTxClosed)
	}
	if r.gen != r.t.Gen() {
		return fmt.Errorf("shmstore: %s used after its transaction ended: %w", what, ErrTxClosed)
	}
	return nil
}

// ref is a txRef for what the attempt r belongs to hands out now.
func (r txRef) ref() txRef { return txRef{t: r.t, gen: r.gen} }

// val wraps a value read in r's attempt.
func (r txRef) val(v objects.Value) Value { return valueOf(v, r.gen) }

// vals wraps values read in r's attempt.
func (r txRef) vals(vs []objects.Value) []Value {
	out := make([]Value, len(vs))
	for i, v := range vs {
		out[i] = valueOf(v, r.gen)
	}
	return out
}

// arg converts what a caller passes as a key or a value into what package
// objects takes: this package's Values and objects become objects', after
// checking that they belong to this very attempt; Go values pass through.
func (r txRef) arg(x any) (any, error) {
	switch x := x.(type) {
	case Value:
		if x.v.Kind().IsContainer() && (x.gen != r.gen || r.gen != r.t.Gen()) {
			return nil, fmt.Errorf("shmstore: a %v value used outside the transaction that read it: %w", x.Kind(), ErrTxClosed)
		}
		return x.v, nil
	case Dict:
		return x.d, r.same(x.txRef, "Dict")
	case List:
		return x.l, r.same(x.txRef, "List")
	case Record:
		return x.r, r.same(x.txRef, "Record")
	case Counter:
		return x.c, r.same(x.txRef, "Counter")
	case *Dict, *List, *Record, *Counter:
		return nil, fmt.Errorf("shmstore: pass a %T by value: %w", x, ErrTypeMismatch)
	}
	return x, nil
}

// same checks that o belongs to the attempt r belongs to, and that it is
// running.
func (r txRef) same(o txRef, what string) error {
	if err := o.live(what); err != nil {
		return err
	}
	if o.t.Space() != r.t.Space() {
		// Containers are linked, never copied, and a link names a
		// block of one store: copy through Export and Set instead.
		return fmt.Errorf("shmstore: a %s of another store: link it in its own store, or copy it (Export, then Set): %w", what, ErrTypeMismatch)
	}
	if o.t != r.t {
		return fmt.Errorf("shmstore: a %s of another transaction: %w", what, ErrTxClosed)
	}
	return nil
}
