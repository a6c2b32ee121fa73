package alloc

import (
	"testing"

	"github.com/shmstore/shmstore/shm/shmtest"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/shm"
)

// testDir is shmtest.Dir: a tmpfs directory removed when the test ends.
func testDir(t testing.TB) string { return shmtest.Dir(t) }

// openTest opens (creating) a store in dir with an allocator.
func openTest(t testing.TB, dir string, o shm.Options) (*shm.Store, *Allocator) {
	t.Helper()
	o.Dir = dir
	st, err := shm.Open("t", o)
	require.NoError(t, err)
	a, err := New(st)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st, a
}

// requireClean fails the test with every problem Check finds.
func requireClean(t testing.TB, st *shm.Store, a *Allocator) {
	t.Helper()
	probs := append(st.Check(), a.Check()...)
	require.Empty(t, probs, "store check")
}
