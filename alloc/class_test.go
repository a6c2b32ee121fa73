package alloc

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSizeClasses(t *testing.T) {
	prev := uint32(0)
	for c := 1; c <= NumClasses; c++ {
		cl := Classes[c]
		require.Greater(t, cl.Size, prev, "class %d", c)
		require.Zero(t, cl.Size%8, "class %d size %d not 8-aligned", c, cl.Size)
		require.NotZero(t, cl.Blocks)
		statesBytes := uint32(0)
		if !cl.StatesDesc {
			statesBytes = 4 * cl.Blocks
			require.Zero(t, cl.BlockStart%8)
		} else {
			require.LessOrEqual(t, cl.Blocks, uint32(descStates))
		}
		require.GreaterOrEqual(t, cl.BlockStart, statesBytes)
		span := cl.Span * SuperblockSize
		require.True(t, cl.Span >= 1 && cl.Span <= maxSpan, "class %d span %d", c, cl.Span)
		if cl.Size <= SuperblockSize/4 {
			require.Equal(t, uint32(1), cl.Span, "classes up to a quarter superblock live in one")
		}
		require.LessOrEqual(t, cl.BlockStart+cl.Blocks*cl.Size, span, "class %d overflows", c)
		if cl.StatesDesc {
			require.Equal(t, min(span/cl.Size, descStates), cl.Blocks)
		} else {
			// The span could not hold one more block.
			require.Greater(t, cl.BlockStart+(cl.Blocks+1)*cl.Size+4, span, "class %d wastes a block", c)
		}
		require.GreaterOrEqual(t, use(cl), 0.75, "class %d uses %.2f of its span", c, use(cl))
		prev = cl.Size
	}
	require.Equal(t, uint32(16), Classes[1].Size)
	require.Equal(t, uint32(MaxSmall), Classes[NumClasses].Size)
	// At least four classes per doubling from 32 bytes on.
	for lo := uint32(32); lo < MaxSmall; lo *= 2 {
		n := 0
		for c := 1; c <= NumClasses; c++ {
			if Classes[c].Size > lo && Classes[c].Size <= 2*lo {
				n++
			}
		}
		require.GreaterOrEqual(t, n, 4, "classes in (%d, %d]", lo, 2*lo)
	}
}

func TestClassOf(t *testing.T) {
	for n := 1; n <= MaxSmall; n++ {
		c := ClassOf(n)
		require.True(t, c >= 1 && c <= NumClasses, "n=%d", n)
		require.GreaterOrEqual(t, Classes[c].Size, uint32(n), "n=%d", n)
		if c > 1 {
			require.Less(t, Classes[c-1].Size, uint32(n), "n=%d: a smaller class fits", n)
		}
		waste := float64(Classes[c].Size-uint32(n)) / float64(Classes[c].Size)
		if n > 24 {
			require.LessOrEqual(t, waste, 0.25, "n=%d wastes %.2f", n, waste)
		}
	}
}

func TestFindZeroRun(t *testing.T) {
	bm := []uint64{^uint64(0), 0b1011, 0}
	i, ok := findZeroRun(bm, 192, 1)
	require.True(t, ok)
	require.Equal(t, uint32(66), i)
	i, ok = findZeroRun(bm, 192, 3)
	require.True(t, ok)
	require.Equal(t, uint32(68), i)
	_, ok = findZeroRun([]uint64{^uint64(0)}, 64, 1)
	require.False(t, ok)
	i, ok = findZeroRun([]uint64{^uint64(0) >> 1}, 64, 1)
	require.True(t, ok)
	require.Equal(t, uint32(63), i)
	_, ok = findZeroRun([]uint64{^uint64(0) >> 1}, 63, 1)
	require.False(t, ok, "bits past nbits do not count")
}

func TestReciprocal(t *testing.T) {
	for c := 1; c <= NumClasses; c++ {
		cl := &Classes[c]
		for rel := uint32(0); rel < cl.Span*SuperblockSize; rel++ {
			if got := cl.blockIndex(rel); got != rel/cl.Size {
				t.Fatalf("class %d (%d bytes): blockIndex(%d) = %d, want %d", c, cl.Size, rel, got, rel/cl.Size)
			}
		}
	}
}

func TestFindLastZero(t *testing.T) {
	bm := []uint64{0b0110, ^uint64(0), 0}
	i, ok := findLastZero(bm, 130)
	require.True(t, ok)
	require.Equal(t, uint32(129), i, "bits past nbits do not count")
	i, ok = findLastZero(bm, 128)
	require.True(t, ok)
	require.Equal(t, uint32(63), i)
	bm[0] = ^uint64(0) &^ 1
	i, ok = findLastZero(bm, 128)
	require.True(t, ok)
	require.Equal(t, uint32(0), i)
	_, ok = findLastZero([]uint64{^uint64(0) >> 1}, 63)
	require.False(t, ok)
	i, ok = placeRun([]uint64{0, 0}, 100, 1)
	require.True(t, ok)
	require.Equal(t, uint32(99), i, "a single superblock goes on top")
	i, ok = placeRun([]uint64{0, 0}, 100, 3)
	require.True(t, ok)
	require.Equal(t, uint32(0), i, "a run at the bottom")
}
