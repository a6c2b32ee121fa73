//go:build linux && (amd64 || arm64)

package shmstore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"reflect"
)

// Watch yields the value at path, copied out as Export gives it, now and
// then each time a commit changes it (anything under it, for a
// container), until ctx ends or the loop stops:
//
//	for v, err := range st.Watch(ctx, "config") {
//		if errors.Is(err, shmstore.ErrKeyNotFound) {
//			continue // absent for now: the next change will tell
//		}
//		if err != nil {
//			return err // ctx ended, or the store failed
//		}
//		apply(v)
//	}
//
// Between changes it sleeps in Retry: no polling, no memory held back.
// Changes that come faster than the loop takes them are seen as one (the
// latest state), and a commit that writes the same value again is not a
// change. An absent path is a state too (a key on the way missing, or
// holding something else than a Dict): it yields (nil, an error wrapping
// ErrKeyNotFound) and the watch goes on. Any other error ends it.
func (s *Store) Watch(ctx context.Context, path string) iter.Seq2[any, error] {
	return s.WatchFunc(ctx, func(tx *Tx) (any, error) {
		v, err := lookupPath(tx, path)
		if errors.Is(err, ErrTypeMismatch) {
			// Something else than a Dict on the way: no value at path
			// now, as when a key on the way is missing.
			return nil, fmt.Errorf("%w (%w)", err, ErrKeyNotFound)
		}
		if err != nil {
			return nil, err
		}
		return tx.Export(v)
	})
}

// WatchFunc is Watch for any value derived from the store: read runs in a
// read-only transaction, and its result (compared with reflect.DeepEqual)
// is yielded now and each time a commit to something it read changes it.
// read's ErrKeyNotFound is a state, yielded with a nil value; any other
// error of read ends the watch. read may run more than once per change,
// as any transaction's function.
func (s *Store) WatchFunc(ctx context.Context, read func(tx *Tx) (any, error)) iter.Seq2[any, error] {
	return func(yield func(any, error) bool) {
		if read == nil {
			yield(nil, fmt.Errorf("shmstore: WatchFunc of a nil function: %w", ErrBadArgument))
			return
		}
		var last any
		var lastErr error
		for first := true; ; first = false {
			var cur any
			var curErr error
			err := s.ViewContext(ctx, func(tx *Tx) error {
				x, err := read(tx)
				absent := errors.Is(err, ErrKeyNotFound)
				if err != nil && !absent {
					return err
				}
				if !first && absent == errors.Is(lastErr, ErrKeyNotFound) && reflect.DeepEqual(x, last) {
					return tx.Retry() // unchanged: wait for a commit to what this read
				}
				cur, curErr = x, err
				return nil
			})
			if err != nil {
				yield(nil, err)
				return
			}
			last, lastErr = cur, curErr
			if !yield(cur, curErr) {
				return
			}
		}
	}
}
