//go:build linux && (amd64 || arm64)

package shmstore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/shmstore/shmstore/objects"
)

// Tx is a transaction: the view of the store that the function passed to
// Update or View works on. It, and every object and container Value
// reached through it, is valid only inside that function: afterwards
// their methods fail with ErrTxClosed.
type Tx struct {
	txRef
	explicit bool // begun with Store.Begin: the caller runs the steps
	over     bool // an explicit transaction that ended
}

// newTx is the Tx handed to a user's function for an attempt of t: a new
// one each time, so that a Tx kept past its function can never pass for
// a later transaction's. They are cut from a slab of the slot's (each
// element handed out once, never again), so that an Update allocates
// one slab per txSlab attempts instead of one Tx per attempt.
func newTx(t *objects.Tx) *Tx {
	o := outerOf(t)
	if len(o.slab) == 0 {
		o.slab = make([]Tx, txSlab)
	}
	tx := &o.slab[0]
	o.slab = o.slab[1:]
	tx.txRef = txRef{t: t, gen: t.Gen()}
	return tx
}

// txSlab is how many users' Txs one allocation makes.
const txSlab = 64

// outer is what this package keeps per slot, in objects.Tx.Outer (used
// by one goroutine at a time, like the slot): the Tx of its own single
// operations and the rest of the slab users' Txs are cut from.
type outer struct {
	op   Tx
	slab []Tx
}

func outerOf(t *objects.Tx) *outer {
	o, _ := t.Outer.(*outer)
	if o == nil {
		o = &outer{op: Tx{txRef: txRef{t: t}}}
		t.Outer = o
	}
	return o
}

// opTx is the Tx of this package's own single operations (Get, Set...),
// which never hand it out: one per slot, so that they allocate nothing
// for it.
func opTx(t *objects.Tx) *Tx {
	tx := &outerOf(t).op
	tx.gen = t.Gen()
	return tx
}

// run runs fn in a transaction of the object space: what Update, View,
// their Context forms and this package's single operations share. wrap
// makes the Tx fn gets (newTx for a user's function, opTx for this
// package's own operations).
func (s *Store) run(ctx context.Context, readOnly bool, wrap func(*objects.Tx) *Tx, fn func(tx *Tx) error) error {
	if fn == nil {
		return fmt.Errorf("shmstore: a transaction of a nil function: %w", ErrBadArgument)
	}
	if s.sp == nil || s.readOnly {
		return errNoSpace
	}
	return s.sp.Run(ctx, readOnly, func(t *objects.Tx) error { return fn(wrap(t)) })
}

// update and view run this package's own single operations.
func (s *Store) update(fn func(tx *Tx) error) error {
	return s.run(context.Background(), false, opTx, fn)
}

func (s *Store) updateContext(ctx context.Context, fn func(tx *Tx) error) error {
	return s.run(ctx, false, opTx, fn)
}

func (s *Store) view(fn func(tx *Tx) error) error {
	return s.run(context.Background(), true, opTx, fn)
}

var errNoSpace = fmt.Errorf("shmstore: store opened read-only (Options.ReadOnly: for Stats and Check only); transactions need a store opened without it: %w", ErrReadOnly)

// Update runs fn in a read-write transaction and commits it, so that
// either everything fn wrote happens, at one instant, or nothing does.
//
// fn may run more than once: when another transaction changed what it
// read, Update waits for that change to finish and runs fn again. A run
// whose reads failed (a conflict, an object removed under it) is never
// committed and never reported as success, even if fn ignored the error
// and returned nil. So fn must have no effects outside the transaction
// (or only ones that may repeat). An error from fn aborts: nothing fn
// wrote is kept, and the error is returned. A panic in fn aborts too,
// and goes on.
//
// As in bbolt, do not start a transaction from inside another's function:
// the outer one may hold what the inner one waits for.
func (s *Store) Update(fn func(tx *Tx) error) error {
	return s.run(context.Background(), false, newTx, fn)
}

// UpdateContext is Update that gives up when ctx ends: a wait in Retry,
// or between runs of fn, ends promptly with ctx.Err(), and nothing fn did
// is kept or held.
func (s *Store) UpdateContext(ctx context.Context, fn func(tx *Tx) error) error {
	return s.run(ctx, false, newTx, fn)
}

// ViewContext is View that gives up when ctx ends, as UpdateContext.
func (s *Store) ViewContext(ctx context.Context, fn func(tx *Tx) error) error {
	return s.run(ctx, true, newTx, fn)
}

// Retry gives up this run of the transaction's function and waits until
// something it read has been changed by another transaction's commit,
// then runs the function again (Harris et al., "Composable Memory
// Transactions"). The function returns what Retry returns:
//
//	if n == 0 {
//		return tx.Retry() // wait for a change
//	}
//
// The wait parks on futexes (no polling) and holds nothing: no locks, no
// memory back from reclamation. Use UpdateContext or ViewContext to bound
// it. A run that called Retry never commits, whatever the function
// returns. Retry in a run that read nothing fails (it would wait forever).
func (tx *Tx) Retry() error {
	if err := tx.live("Tx"); err != nil {
		return err
	}
	return tx.t.Retry()
}

// OrElse runs a; if a retries (calls Retry), what a wrote is undone and b
// runs in its place; if b retries too, the transaction waits for a change
// to what either read. A select over several queues:
//
//	return tx.OrElse(
//		func(tx *shmstore.Tx) error { return take(tx, q1) },
//		func(tx *shmstore.Tx) error { return take(tx, q2) },
//	)
//
// An error other than a retry from a or b is returned as it is. (Undoing
// a runs the whole function again from its start with a skipped, so code
// before OrElse may run once more: as everywhere in a transaction, it
// must have no effects outside it.)
func (tx *Tx) OrElse(a, b func(tx *Tx) error) error {
	if err := tx.live("Tx"); err != nil {
		return err
	}
	if a == nil || b == nil {
		return fmt.Errorf("shmstore: OrElse of a nil function: %w", ErrBadArgument)
	}
	return tx.t.OrElse(func() error { return a(tx) }, func() error { return b(tx) })
}

// View runs fn in a read-only transaction: it sees one consistent
// snapshot, and writes fail with ErrReadOnly. Like Update, it runs fn
// again when a read fails because of a concurrent commit, and never
// returns nil after such a run, so what fn computed from its reads is
// from a state that existed.
//
// It takes no locks, with one exception that bounds its attempts: a View
// that a stream of writes has made abort 8 times locks what it read so
// far (without changing it) for its next run of fn, so writers of those
// objects wait for it then.
func (s *Store) View(fn func(tx *Tx) error) error {
	return s.run(context.Background(), true, newTx, fn)
}

// ReadOnly reports whether the transaction is read-only (View).
func (tx *Tx) ReadOnly() bool { return tx.t.ReadOnly() }

// Root is the store's root Dict: everything reachable from it is alive.
func (tx *Tx) Root() Dict {
	if tx.live("Tx") != nil {
		return Dict{txRef: tx.ref()} // d == nil: every method says ErrTxClosed
	}
	r := tx.t.Root()
	return Dict{txRef: tx.ref(), d: r, h: r.Handle()}
}

// NewDict makes an empty Dict. It lives only if the transaction links it
// into a container (Set, Append...) before it commits.
func (tx *Tx) NewDict() (Dict, error) {
	if err := tx.live("Tx"); err != nil {
		return Dict{}, err
	}
	return tx.dict(tx.t.NewDict())
}

// NewList makes an empty List (alive once linked, as NewDict).
func (tx *Tx) NewList() (List, error) {
	if err := tx.live("Tx"); err != nil {
		return List{}, err
	}
	return tx.list(tx.t.NewList())
}

// NewCounter makes a Counter at zero (alive once linked, as NewDict).
func (tx *Tx) NewCounter() (Counter, error) {
	if err := tx.live("Tx"); err != nil {
		return Counter{}, err
	}
	return tx.counter(tx.t.NewCounter())
}

// NewRecord makes a Record of class with the given fields, all None
// (alive once linked, as NewDict).
func (tx *Tx) NewRecord(class string, fields []string) (Record, error) {
	if err := tx.live("Tx"); err != nil {
		return Record{}, err
	}
	return tx.record(tx.t.NewRecord(class, fields))
}

// value converts a Value of this attempt for package objects.
func (tx *Tx) value(v Value) (objects.Value, error) {
	if err := tx.live("Tx"); err != nil {
		return objects.None, err
	}
	x, err := tx.arg(v)
	if err != nil {
		return objects.None, err
	}
	return x.(objects.Value), nil
}

// Dict opens a Dict value read in this transaction (ErrTypeMismatch for
// another kind).
func (tx *Tx) Dict(v Value) (Dict, error) {
	ov, err := tx.value(v)
	if err != nil {
		return Dict{}, err
	}
	return tx.dict(tx.t.DictOf(ov))
}

// List opens a List value read in this transaction.
func (tx *Tx) List(v Value) (List, error) {
	ov, err := tx.value(v)
	if err != nil {
		return List{}, err
	}
	return tx.list(tx.t.ListOf(ov))
}

// Record opens a Record value read in this transaction.
func (tx *Tx) Record(v Value) (Record, error) {
	ov, err := tx.value(v)
	if err != nil {
		return Record{}, err
	}
	return tx.record(tx.t.RecordOf(ov))
}

// Counter opens a Counter value read in this transaction.
func (tx *Tx) Counter(v Value) (Counter, error) {
	ov, err := tx.value(v)
	if err != nil {
		return Counter{}, err
	}
	return tx.counter(tx.t.CounterOf(ov))
}

// Int is the integer a value holds: an Int's, or a Counter's (read in
// this transaction).
func (tx *Tx) Int(v Value) (int64, error) {
	ov, err := tx.value(v)
	if err != nil {
		return 0, err
	}
	return tx.t.IntOf(ov)
}

// Export copies a value, or the subtree under a container value, out of
// the store as generic Go values: nil, bool, int64, float64, string,
// []byte, []any for Lists, map[string]any for Dicts and Records whose
// keys are all Strings (else map[any]any).
func (tx *Tx) Export(v Value) (any, error) {
	ov, err := tx.value(v)
	if err != nil {
		return nil, err
	}
	return tx.t.Export(ov)
}

// Decode copies a value, or the subtree under a container value, into out:
// a pointer to a struct (with msgpack tags), a map, a slice or a scalar.
func (tx *Tx) Decode(v Value, out any) error {
	ov, err := tx.value(v)
	if err != nil {
		return err
	}
	return tx.t.Decode(ov, out)
}

// SplitPath splits a path such as "accounts/alice" into its String keys.
// A '/' at either end is ignored, so "" and "/" are the root (no keys):
// Export, Decode and Watch take it, operations on the value under a key (Get,
// Set, Delete, Add, Put, Take) refuse it. An empty key inside ("a//b")
// is refused.
func SplitPath(path string) ([]string, error) {
	path = strings.Trim(path, "/")
	if path == "" {
		return nil, nil
	}
	keys := strings.Split(path, "/")
	for _, k := range keys {
		if k == "" {
			return nil, fmt.Errorf("shmstore: path %q has an empty key: %w", path, ErrTypeMismatch)
		}
	}
	return keys, nil
}

// walk returns the Dict that holds the last key of path, and that key
// (create: make missing Dicts on the way). A key of the root (no '/') is
// the common case and splits nothing.
func walk(tx *Tx, path string, create bool) (Dict, string, error) {
	if path != "" && strings.IndexByte(path, '/') < 0 {
		return tx.Root(), path, nil
	}
	keys, err := SplitPath(path)
	if err != nil {
		return Dict{}, "", err
	}
	if len(keys) == 0 {
		return Dict{}, "", fmt.Errorf("shmstore: path %q names the root Dict, which is under no key: give a key (Export and Watch of \"\" read the whole store): %w", path, ErrTypeMismatch)
	}
	d := tx.Root()
	for _, k := range keys[:len(keys)-1] {
		if create {
			d, err = d.Dict(k)
		} else {
			d, err = d.GetDict(k)
		}
		if err != nil {
			return Dict{}, "", fmt.Errorf("shmstore: path %q at %q: %w", path, k, err)
		}
	}
	return d, keys[len(keys)-1], nil
}

// Get reads the value at path ("accounts/alice": key alice of the Dict
// under key accounts of the root) in its own small transaction. A
// container comes back as a Value that is only good for its Kind (its
// transaction has ended); Export copies a subtree out.
//
// A scalar is read without a transaction when nothing on its path is
// being committed: an optimistic read that checks the stripes' lock
// words before and after (objects.Space.PeekPath), takes no slot and
// writes no shared memory. The answer is the one a transaction gives.
func (s *Store) Get(path string) (Value, error) {
	if s.sp != nil && !s.readOnly {
		if ov, ok := s.sp.PeekPath(path); ok {
			return Value{v: ov}, nil // a scalar: no attempt to stamp
		}
	}
	var v Value
	err := s.view(func(tx *Tx) error {
		d, k, err := walk(tx, path, false)
		if err != nil {
			return err
		}
		ov, err := d.d.GetKey(objects.String(k)) // a Value key: no boxing
		v = tx.val(ov)
		return err
	})
	return v, err
}

// GetInt reads the Int (or the Counter) at path.
func (s *Store) GetInt(path string) (int64, error) {
	if s.sp != nil && !s.readOnly {
		if v, ok := s.sp.PeekPath(path); ok {
			if n, err := v.AsInt(); err == nil {
				return n, nil
			} // another kind: the transaction below says so
		}
	}
	var n int64
	err := s.view(func(tx *Tx) error {
		d, k, err := walk(tx, path, false)
		if err != nil {
			return err
		}
		v, err := d.d.GetKey(objects.String(k))
		if err != nil {
			return err
		}
		n, err = tx.t.IntOf(v)
		return atPath(path, err)
	})
	return n, err
}

// atPath names the path at which a value was found in err, an error of
// what was done with the value (one of another kind than asked for).
func atPath(path string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("shmstore: path %q: %w", path, err)
}

// Set stores val at path in its own small transaction, making missing
// Dicts on the way. val is as for Dict.Set: a scalar, or a Go map, slice
// or struct, which becomes shared containers.
func (s *Store) Set(path string, val any) error {
	return s.update(func(tx *Tx) error {
		d, k, err := walk(tx, path, true)
		if err != nil {
			return err
		}
		x, err := d.arg(val)
		if err != nil {
			return err
		}
		if v, err := objects.ScalarOf(x); err == nil {
			return d.d.SetLast(objects.String(k), v) // nothing after it
		}
		return d.d.SetKey(objects.String(k), x)
	})
}

// SetInt stores the Int n at path in its own small transaction, making
// missing Dicts on the way: Set without boxing n (no heap allocation per
// call).
func (s *Store) SetInt(path string, n int64) error {
	return s.update(func(tx *Tx) error {
		d, k, err := walk(tx, path, true)
		if err != nil {
			return err
		}
		return d.d.SetLast(objects.String(k), objects.Int(n)) // a Value key: no conversion; nothing after it
	})
}

// Delete removes the value at path in its own small transaction.
func (s *Store) Delete(path string) error {
	return s.update(func(tx *Tx) error {
		d, k, err := walk(tx, path, false)
		if err != nil {
			return err
		}
		return d.d.DeleteLast(objects.String(k)) // nothing after it
	})
}

// Add adds n to the Counter at path (made at zero if missing) in its own
// small transaction and returns the value it committed. It never
// conflicts with other adds: the new value is taken under the Counter's
// lock at commit.
func (s *Store) Add(path string, n int64) (int64, error) {
	var out int64
	err := s.update(func(tx *Tx) error {
		d, k, err := walk(tx, path, true)
		if err != nil {
			return err
		}
		c, err := d.Counter(k)
		if err != nil {
			return err
		}
		return c.c.AddReporting(n, &out)
	})
	if errors.Is(err, ErrOverflow) { // found here or at commit
		err = atPath(path, err)
	}
	return out, err
}

// Export copies the value or subtree at path out of the store as generic
// Go values (see Tx.Export); the empty path exports the root.
func (s *Store) Export(path string) (any, error) {
	var out any
	err := s.view(func(tx *Tx) error {
		v, err := lookupPath(tx, path)
		if err != nil {
			return err
		}
		out, err = tx.Export(v)
		return atPath(path, err)
	})
	return out, err
}

// Decode copies the value or subtree at path into out (a pointer to a
// struct with msgpack tags, a map, a slice or a scalar).
func (s *Store) Decode(path string, out any) error {
	return s.view(func(tx *Tx) error {
		v, err := lookupPath(tx, path)
		if err != nil {
			return err
		}
		return atPath(path, tx.Decode(v, out))
	})
}

// lookupPath returns the value at path (the root for "").
func lookupPath(tx *Tx, path string) (Value, error) {
	if strings.Trim(path, "/") == "" {
		return tx.Root().Value(), nil
	}
	d, k, err := walk(tx, path, false)
	if err != nil {
		return None, err
	}
	return d.Get(k)
}

// Open returns the container that id (Value.ID) names, if it is still
// linked from somewhere (ErrStaleHandle if it was deleted; a forged id
// fails with ErrBadHandle or ErrStaleHandle, never a crash). A deletion
// that commits while this transaction runs makes it conflict.
func (tx *Tx) Open(id uint64) (Value, error) {
	if err := tx.live("Tx"); err != nil {
		return None, err
	}
	v, err := tx.t.Open(id)
	return tx.val(v), err
}
