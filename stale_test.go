//go:build linux && (amd64 || arm64)

package shmstore_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
)

// TestStoringAnUnlinkedContainerFails: a container's handle kept from an
// earlier transaction (Store.Get returns containers as handles) and
// stored after the container was deleted (retired, not yet freed) fails
// with ErrStaleHandle; it must not be retried as a conflict, which no
// retry could resolve (it once spun until a collection freed the object).
func TestStoringAnUnlinkedContainerFails(t *testing.T) {
	st := openTest(t)
	require.NoError(t, st.Set("a/x", 1)) // root["a"] is a Dict
	v, err := st.Get("a")
	require.NoError(t, err)
	require.NoError(t, st.Delete("a")) // its rc goes to 0: retired, not freed yet

	done := make(chan error, 1)
	go func() { done <- st.Set("b", v) }()
	var spun bool
	select {
	case err = <-done:
	case <-time.After(time.Second):
		spun = true
		require.NoError(t, layers.Of(st).Engine.Collect()) // frees the Dict: the Set then fails
		err = <-done
	}
	require.False(t, spun, "Set of a deleted container's handle retried for 1 s instead of failing")
	require.ErrorIs(t, err, shmstore.ErrStaleHandle)
}
