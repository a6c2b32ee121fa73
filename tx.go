//go:build linux && (amd64 || arm64)

package shmstore

import (
	"fmt"
	"strings"

	"github.com/shmstore/shmstore/objects"
)

// Tx is a transaction: the view of the store that the function passed to
// Update or View works on. It is valid only inside that function.
type Tx = objects.Tx

// Shared object kinds, as a transaction sees them.
type (
	// Dict is a shared hash table.
	Dict = objects.Dict
	// List is a shared sequence.
	List = objects.List
	// Record is a shared object with a class and named fields.
	Record = objects.Record
	// Counter is a shared int64 with a commutative Add.
	Counter = objects.Counter
	// Value is one value copied out of the store, or a container's handle.
	Value = objects.Value
	// Kind is the kind of a Value.
	Kind = objects.Kind
)

var errNoSpace = fmt.Errorf("shmstore: store opened read-only before it had a root: %w", ErrKeyNotFound)

// Update runs fn in a read-write transaction and commits it. On a conflict
// with another transaction it runs fn again (after waiting for what it
// conflicted on to change), so fn must have no effects outside the
// transaction. An error from fn aborts: nothing fn did is kept, and the
// error is returned. A panic in fn aborts too, and goes on.
//
// As in bbolt, do not start a transaction from inside another's function:
// the outer one may hold what the inner one waits for.
func (s *Store) Update(fn func(tx *Tx) error) error {
	if s.sp == nil {
		return errNoSpace
	}
	return s.sp.Update(fn)
}

// View runs fn in a read-only transaction: it sees one consistent
// snapshot and writes fail with ErrReadOnly. It takes no locks, with one
// exception that bounds its attempts: a View that a stream of writes has
// made abort 8 times locks what it read so far (without changing it) for
// its next run of fn, so writers of those objects wait for it then.
func (s *Store) View(fn func(tx *Tx) error) error {
	if s.sp == nil {
		return errNoSpace
	}
	return s.sp.View(fn)
}

// SplitPath splits a path such as "accounts/alice" into its String keys;
// "" and "/" are the root (no keys). An empty key ("a//b") is refused.
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
func walk(tx *Tx, path string, create bool) (*Dict, string, error) {
	if path != "" && strings.IndexByte(path, '/') < 0 {
		return tx.Root(), path, nil
	}
	keys, err := SplitPath(path)
	if err != nil {
		return nil, "", err
	}
	if len(keys) == 0 {
		return nil, "", fmt.Errorf("shmstore: empty path: %w", ErrTypeMismatch)
	}
	d := tx.Root()
	for _, k := range keys[:len(keys)-1] {
		if create {
			d, err = d.Dict(k)
		} else {
			d, err = d.GetDict(k)
		}
		if err != nil {
			return nil, "", fmt.Errorf("shmstore: path %q at %q: %w", path, k, err)
		}
	}
	return d, keys[len(keys)-1], nil
}

// Get reads the value at path ("accounts/alice": key alice of the Dict
// under key accounts of the root) in its own small transaction.
// Containers come back as handles; Export copies a subtree out.
func (s *Store) Get(path string) (Value, error) {
	var v Value
	err := s.View(func(tx *Tx) error {
		d, k, err := walk(tx, path, false)
		if err != nil {
			return err
		}
		v, err = d.GetKey(objects.String(k)) // a Value key: no boxing
		return err
	})
	return v, err
}

// GetInt reads the Int (or the Counter) at path.
func (s *Store) GetInt(path string) (int64, error) {
	var n int64
	err := s.View(func(tx *Tx) error {
		d, k, err := walk(tx, path, false)
		if err != nil {
			return err
		}
		v, err := d.GetKey(objects.String(k))
		if err != nil {
			return err
		}
		n, err = tx.IntOf(v)
		return err
	})
	return n, err
}

// Set stores val at path in its own small transaction, making missing
// Dicts on the way. val is as for Dict.Set: a scalar, or a Go map, slice
// or struct, which becomes shared containers.
func (s *Store) Set(path string, val any) error {
	return s.Update(func(tx *Tx) error {
		d, k, err := walk(tx, path, true)
		if err != nil {
			return err
		}
		return d.Set(k, val)
	})
}

// Delete removes the value at path in its own small transaction.
func (s *Store) Delete(path string) error {
	return s.Update(func(tx *Tx) error {
		d, k, err := walk(tx, path, false)
		if err != nil {
			return err
		}
		return d.Delete(k)
	})
}

// Add adds n to the Counter at path (made at zero if missing) in its own
// small transaction, which never conflicts with other adds.
func (s *Store) Add(path string, n int64) error {
	return s.Update(func(tx *Tx) error {
		d, k, err := walk(tx, path, true)
		if err != nil {
			return err
		}
		c, err := d.Counter(k)
		if err != nil {
			return err
		}
		return c.Add(n)
	})
}

// Export copies the value or subtree at path out of the store as generic
// Go values (maps, slices, scalars); the empty path exports the root.
func (s *Store) Export(path string) (any, error) {
	var out any
	err := s.View(func(tx *Tx) error {
		v, err := lookupPath(tx, path)
		if err != nil {
			return err
		}
		out, err = tx.Export(v)
		return err
	})
	return out, err
}

// Decode copies the value or subtree at path into out (a pointer to a
// struct with msgpack tags, a map, a slice or a scalar).
func (s *Store) Decode(path string, out any) error {
	return s.View(func(tx *Tx) error {
		v, err := lookupPath(tx, path)
		if err != nil {
			return err
		}
		return tx.Decode(v, out)
	})
}

// lookupPath returns the value at path (the root for "").
func lookupPath(tx *Tx, path string) (Value, error) {
	if strings.Trim(path, "/") == "" {
		return tx.Root().Value(), nil
	}
	d, k, err := walk(tx, path, false)
	if err != nil {
		return objects.None, err
	}
	return d.Get(k)
}
