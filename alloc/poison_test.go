//go:build invariants

package alloc

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/shm"
)

// In invariant builds a freed block is poisoned, and a write into it
// through a stale slice is caught when the block is handed out again.
func TestPoisonCatchesWriteAfterFree(t *testing.T) {
	_, a := openTest(t, testDir(t), shm.Options{})
	h := lease(t, a)
	hd, b, err := h.Alloc(64)
	require.NoError(t, err)
	h.ForgetLog()
	require.NoError(t, h.Free(hd))
	for i := 4; i < 64; i++ {
		require.Equal(t, byte(poisonByte), b[i], "freed memory is poisoned")
	}
	// An untouched freed block is handed out again without complaint.
	hd, b, err = h.Alloc(64)
	require.NoError(t, err)
	h.ForgetLog()
	require.NoError(t, h.Free(hd))
	b[40] = 1 // use after free
	var caught any
	func() {
		defer func() { caught = recover() }()
		_, _, _ = h.Alloc(64) // hands the same block out again
	}()
	require.NotNil(t, caught, "the write after free is caught")
	require.Contains(t, caught, "written after it was freed: byte 40")
}
