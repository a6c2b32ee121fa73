//go:build linux && (amd64 || arm64)

package objects

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// convert turns a Go map, slice or struct into new shared containers: the
// value is encoded with msgpack (which honours `msgpack` struct tags) and
// the stream decoded generically, so no reflection is written here. Maps
// and structs become Dicts, arrays become Lists.
func (tx *Tx) convert(x any) (Value, error) {
	b, err := msgpack.Marshal(x)
	if err != nil {
		return None, fmt.Errorf("objects: %T cannot be stored: %v: %w", x, err, ErrTypeMismatch)
	}
	var g any
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	dec.UseLooseInterfaceDecoding(true)
	if err := dec.Decode(&g); err != nil {
		return None, fmt.Errorf("objects: %T cannot be stored: %v: %w", x, err, ErrTypeMismatch)
	}
	return tx.FromGeneric(g)
}

// FromGeneric stores a generic Go value as msgpack decodes it (nil, bool,
// integers, floats, string, []byte, []any, map[string]any, map[any]any):
// scalars become values, maps new Dicts, slices new Lists.
func (tx *Tx) FromGeneric(g any) (Value, error) {
	switch g := g.(type) {
	case []any:
		l, err := tx.NewList()
		if err != nil {
			return None, err
		}
		for _, x := range g {
			v, err := tx.FromGeneric(x)
			if err != nil {
				return None, err
			}
			if err := l.Append(v); err != nil {
				return None, err
			}
		}
		return l.Value(), nil
	case map[string]any:
		return dictFrom(tx, g)
	case map[any]any:
		return dictFrom(tx, g)
	}
	return ScalarOf(g)
}

// dictFrom stores a generic map as a new Dict.
func dictFrom[K comparable](tx *Tx, g map[K]any) (Value, error) {
	d, err := tx.NewDict()
	if err != nil {
		return None, err
	}
	for k, x := range g {
		v, err := tx.FromGeneric(x)
		if err != nil {
			return None, err
		}
		if err := d.Set(k, v); err != nil {
			return None, err
		}
	}
	return d.Value(), nil
}

// Export copies a value out of shared memory into generic Go values:
// Dicts become map[string]any when every key is a String (else
// map[any]any), Lists []any, Records map[string]any of their fields,
// Counters int64, scalars as Value.Scalar.
func (tx *Tx) Export(v Value) (any, error) {
	switch v.kind {
	case KindDict:
		d, err := tx.dictAt(v.h)
		if err != nil {
			return nil, err
		}
		type kv struct {
			k Value
			v any
		}
		var items []kv
		allStrings := true
		var ierr error
		err = d.Range(func(k, x Value) bool {
			g, err := tx.Export(x)
			if err != nil {
				ierr = err
				return false
			}
			allStrings = allStrings && k.kind == KindString
			items = append(items, kv{k, g})
			return true
		})
		if err == nil {
			err = ierr
		}
		if err != nil {
			return nil, err
		}
		if allStrings {
			m := make(map[string]any, len(items))
			for _, it := range items {
				m[it.k.s] = it.v
			}
			return m, nil
		}
		// Bytes keys become strings (a []byte cannot be a map key); a
		// String key with the same bytes would collide, and is refused.
		m := make(map[any]any, len(items))
		for _, it := range items {
			k := it.k.Scalar()
			if it.k.kind == KindBytes {
				k = it.k.s
			}
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("objects: export: keys %v collide as Go map keys: %w", it.k, ErrTypeMismatch)
			}
			m[k] = it.v
		}
		return m, nil
	case KindList:
		l, err := tx.listAt(v.h)
		if err != nil {
			return nil, err
		}
		vals, err := l.Items()
		if err != nil {
			return nil, err
		}
		out := make([]any, len(vals))
		for i, x := range vals {
			if out[i], err = tx.Export(x); err != nil {
				return nil, err
			}
		}
		return out, nil
	case KindRecord:
		r, err := tx.recordAt(v.h)
		if err != nil {
			return nil, err
		}
		m := make(map[string]any, len(r.fields))
		for _, f := range r.fields {
			x, err := r.Get(f)
			if err != nil {
				return nil, err
			}
			if m[f], err = tx.Export(x); err != nil {
				return nil, err
			}
		}
		return m, nil
	case KindCounter:
		c, err := tx.counterAt(v.h)
		if err != nil {
			return nil, err
		}
		return c.Get()
	}
	return v.Scalar(), nil
}

// Decode copies a value into the Go value out points to (a struct with
// msgpack tags, a map, a slice, a scalar), through msgpack.
func (tx *Tx) Decode(v Value, out any) error {
	g, err := tx.Export(v)
	if err != nil {
		return err
	}
	b, err := msgpack.Marshal(g)
	if err != nil {
		return fmt.Errorf("objects: decode %v: %w", v.kind, err)
	}
	if err := msgpack.Unmarshal(b, out); err != nil {
		return fmt.Errorf("objects: decode %v into %T: %v: %w", v.kind, out, err, ErrTypeMismatch)
	}
	return nil
}

// SortedKeys orders keys for stable output (kind, then content).
func SortedKeys(ks []Value) { slices.SortFunc(ks, CompareKeys) }

// CompareKeys orders two keys for stable output: by kind, then content.
func CompareKeys(a, b Value) int {
	if a.kind != b.kind {
		return cmp.Compare(a.kind, b.kind)
	}
	if a.kind == KindInt {
		return cmp.Compare(int64(a.n), int64(b.n))
	}
	if c := strings.Compare(a.s, b.s); c != 0 {
		return c
	}
	return cmp.Compare(a.n, b.n)
}
