//go:build linux && (amd64 || arm64)

package shmstore_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
)

// TestSingleOpsAllocateNothing: a Get or a Set of a scalar at a path of
// the root, a Delete, and an Update that reads and writes keys of a
// nested Dict allocate nothing on the Go heap once warm. (The *Tx each
// Update hands its function is new each time, so that one kept past its
// transaction can never pass for a later one's; they are cut from a slab
// of 64: under one allocation per call on average.)
func TestSingleOpsAllocateNothing(t *testing.T) {
	if raceOn {
		t.Skip("the race detector changes allocations")
	}
	st := openTest(t)
	require.NoError(t, st.SetInt("k", 1))
	require.NoError(t, st.SetInt("d/x", 1))
	var err error
	for _, c := range []struct {
		name string
		max  float64
		call func()
	}{
		{"GetInt", 0, func() { _, err = st.GetInt("k") }},
		{"SetInt", 0, func() { err = st.SetInt("k", 2) }},
		{"Delete and SetInt", 0, func() {
			if err = st.Delete("k"); err == nil {
				err = st.SetInt("k", 3)
			}
		}},
		{"Update of a nested Dict", 0, func() {
			err = st.Update(func(tx *shmstore.Tx) error {
				d, err := tx.Root().GetDict("d")
				if err != nil {
					return err
				}
				n, err := d.GetInt("x")
				if err != nil {
					return err
				}
				return d.SetInt("x", n+1)
			})
		}},
	} {
		c.call() // warm: the slot's buffers grow once
		require.NoError(t, err, c.name)
		if got := testing.AllocsPerRun(200, c.call); got > c.max {
			t.Errorf("%s: %v allocations per call, want at most %v", c.name, got, c.max)
		}
		require.NoError(t, err, c.name)
	}
}
