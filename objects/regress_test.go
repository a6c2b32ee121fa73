//go:build linux && (amd64 || arm64)

package objects

import (
	"encoding/binary"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/handle"
)

// TestFailedSetChangesNothing: a Set whose new value cannot be resolved
// fails before it records anything; in particular not the old value's
// reference drop, which a function that handles the error and commits
// would otherwise apply (freeing the List still under "a").
func TestFailedSetChangesNothing(t *testing.T) {
	s := newSpace(t)
	require.NoError(t, s.Update(func(tx *Tx) error {
		l, err := tx.Root().List("a")
		if err != nil {
			return err
		}
		return l.Append(1)
	}))
	// A Dict from an attempt that aborted: its block is freed (a closure
	// variable kept across retries is the usual way to get one).
	var stale *Dict
	boom := errors.New("boom")
	err := s.Update(func(tx *Tx) error {
		d, err := tx.NewDict()
		if err != nil {
			return err
		}
		stale = d
		return boom
	})
	require.ErrorIs(t, err, boom)

	require.NoError(t, s.Update(func(tx *Tx) error {
		if err := tx.Root().Set("a", stale); err == nil {
			return errors.New("Set of a freed Dict succeeded")
		}
		return tx.Root().Set("b", 1) // the error was handled; go on
	}))
	require.NoError(t, s.Engine().Collect())
	err = s.View(func(tx *Tx) error {
		l, err := tx.Root().GetList("a")
		if err != nil {
			return err
		}
		_, err = l.Len()
		return err
	})
	require.NoError(t, err, "root[\"a\"] names a List that was freed")
}

// TestTornReadCopiesNoBlob: overwrite() changes an entry in place with two
// stores (meta, then val); a reader between them sees the new kind
// (String) with the old word (an Int chosen by the user). Readers decode
// only (kind, word) inside the read window and copy blobs after it held,
// so this state costs nothing (it once copied up to the rest of the
// region). The test builds exactly that state and runs the optimistic
// reader's read of the key (peekKey: the stripe's window, then the entry's).
func TestTornReadCopiesNoBlob(t *testing.T) {
	s := newSpace(t)
	payload := make([]byte, 32)
	binary.LittleEndian.PutUint64(payload[8:], 6<<20) // 6 MiB, in an 8 MiB region
	require.NoError(t, s.Update(func(tx *Tx) error { return tx.Root().Set("blob", payload) }))
	var fake handle.Handle
	require.NoError(t, s.View(func(tx *Tx) error {
		k := String("blob")
		var f found
		if err := tx.Root().lookupCommitted(k, Hash(k), &f); err != nil {
			return err
		}
		ep, _, err := s.block(f.ent)
		if err != nil {
			return err
		}
		b := handle.Handle(load(ep, offEntryVal))
		fake = handle.Make(b.Region(), b.Granule()+uint32(16/handle.Granule), b.Gen()) // points at payload[8:]
		return nil
	}))
	// "k" holds an Int whose bits happen to be that handle.
	require.NoError(t, s.Update(func(tx *Tx) error { return tx.Root().Set("k", int64(fake)) }))

	// The state between overwrite's two stores of `Set("k", "x")`.
	k := String("k")
	hash := Hash(k)
	var ent handle.Handle
	require.NoError(t, s.View(func(tx *Tx) error {
		var f found
		err := tx.Root().lookupCommitted(k, hash, &f)
		ent = f.ent
		return err
	}))
	ep, _, err := s.block(ent)
	require.NoError(t, err)
	meta := word(ep, 8)
	old := atomic.LoadUint64(meta)
	atomic.StoreUint64(meta, old&^0xff|uint64(KindString))
	defer atomic.StoreUint64(meta, old)

	root, err := (&Tx{s: s}).dictAt(s.root)
	require.NoError(t, err)
	var wins [windowsPerKey]peekWindow
	v, _, _ := s.peekKey(root.p, k, &wins)
	require.Less(t, len(v.s), 1<<20, "a torn read copied %d bytes", len(v.s))
}

// TestFinalizerOfBigContainerRuns: a List with more container children
// than one transaction's redo log can release at once (~175k) is
// finalized in steps of releaseChunk (it once failed on every
// collection, holding its ring back forever). About a second and ~20 MB
// of store.
func TestFinalizerOfBigContainerRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds 180k Counters")
	}
	s := newSpace(t)
	const n, per = 180_000, 20_000
	for done := 0; done < n; done += per {
		require.NoError(t, s.Update(func(tx *Tx) error {
			l, err := tx.Root().List("big")
			if err != nil {
				return err
			}
			for range per {
				c, err := tx.NewCounter()
				if err != nil {
					return err
				}
				if err := l.Append(c); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	require.NoError(t, s.Update(func(tx *Tx) error { return tx.Root().Delete("big") }))
	err := s.Engine().Collect()
	require.NoError(t, err, "the finalizer of the deleted List cannot run")
}
