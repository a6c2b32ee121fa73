//go:build linux && (amd64 || arm64)

package objects

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/handle"
)

// retiredChild makes root[key] a container built by build, deletes it
// (retired, not yet freed: nothing collects after one commit) and
// returns its handle.
func retiredChild(t *testing.T, s *Space, key string, build func(tx *Tx) (Value, error)) handle.Handle {
	t.Helper()
	var h handle.Handle
	require.NoError(t, s.Update(func(tx *Tx) error {
		v, err := build(tx)
		if err != nil {
			return err
		}
		h = v.hd()
		return tx.Root().Set(key, v)
	}))
	require.NoError(t, s.Update(func(tx *Tx) error { return tx.Root().Delete(key) }))
	_, err := s.a.Resolve(h)
	require.NoError(t, err, "retired container freed already (test setup)")
	return h
}

// TestFinalizerRerunAfterCrashInFreePhase: finalize frees the
// object's blocks one by one (FreeAny) after its release steps; a
// collector killed in that loop leaves the batch in the ring, and the
// next collector runs finalize again. The re-run's first step resolves
// the object's cells strictly (childCells -> eachEntry(strict) for a
// Dict, the items block for a List), meets the block freed before the
// crash: that means the release was done, and the re-run goes on freeing
// the rest (it once failed with ErrStaleHandle on every try, stopping the
// ring behind it forever).
func TestFinalizerRerunAfterCrashInFreePhase(t *testing.T) {
	for _, tc := range []struct {
		name  string
		build func(tx *Tx) (Value, error)
	}{
		{"dict", func(tx *Tx) (Value, error) {
			d, err := tx.NewDict()
			if err != nil {
				return None, err
			}
			return d.Value(), d.Set(int64(1), 7) // no blob: the entry is the first block listed
		}},
		{"list", func(tx *Tx) (Value, error) {
			l, err := tx.NewList()
			if err != nil {
				return None, err
			}
			return l.Value(), l.Append(int64(1)) // no blob: the items block is the only block listed
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSpace(t)
			obj := retiredChild(t, s, "x", tc.build)
			p, err := s.object(obj, KindNone)
			require.NoError(t, err)
			var blocks []handle.Handle
			require.NoError(t, s.ownedBy(obj, p, strictMode, func(Value) {}, func(b handle.Handle) { blocks = append(blocks, b) }))
			require.NotEmpty(t, blocks)
			// The collector dies right after the first FreeAny of the loop.
			require.NoError(t, s.a.FreeAny(blocks[0]))

			// Everything this slot retires afterwards is stuck behind it too.
			later := retiredChild(t, s, "y", func(tx *Tx) (Value, error) {
				c, err := tx.NewCounter()
				if err != nil {
					return None, err
				}
				return c.Value(), nil
			})
			for range 3 {
				err = s.Engine().Collect()
			}
			_, lerr := s.a.Resolve(later)
			require.NoError(t, err, "the re-run of a finalizer after a crash in its free phase fails, on every collection (later retirement still allocated: %v)", lerr == nil)
			_, err = s.a.Resolve(obj)
			require.Error(t, err, "the object was never freed")
			_, err = s.a.Resolve(later)
			require.Error(t, err, "a Counter deleted later was never freed")
			checkClean(t, s)
		})
	}
}
