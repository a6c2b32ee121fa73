//go:build linux && (amd64 || arm64)

package shm

import (
	"fmt"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRegions(t *testing.T) {
	withUmask(t, 0o022)
	dir := testDir(t)
	o := smallOpts(dir)
	o.MaxSize = 3<<20 + 1<<19 // rounded down to 3 regions
	s := openT(t, "reg", o)
	require.Equal(t, uint32(3), s.MaxRegions())
	require.Equal(t, uint32(0), s.Regions())

	for _, id := range []uint16{0, 1, 4, 1<<16 - 1} {
		_, err := s.Region(id)
		require.ErrorIs(t, err, ErrNoRegion, "region %d before any growth", id)
		require.Nil(t, s.MappedRegion(id))
	}
	require.True(t, s.RegionCreated(1).IsZero())

	n, err := s.Grow(0)
	require.NoError(t, err)
	require.Equal(t, uint32(1), n)
	require.False(t, s.RegionCreated(1).IsZero())
	_, err = s.Region(2)
	require.ErrorIs(t, err, ErrNoRegion, "region n+1")
	require.Contains(t, err.Error(), "not created")

	// Another attachment maps region 1 only when asked, and shares its bytes.
	s2 := openT(t, "reg", o)
	require.Nil(t, s2.MappedRegion(1))
	p1, err := regionBytes(s, 1)
	require.NoError(t, err)
	require.Len(t, p1, 1<<20)
	p1[0], p1[len(p1)-1] = 0xab, 0xcd
	require.Nil(t, s2.MappedRegion(1), "not mapped until asked")
	p2, err := regionBytes(s2, 1)
	require.NoError(t, err)
	require.NotNil(t, s2.MappedRegion(1))
	require.Equal(t, &p2[0], (*byte)(s2.MappedRegion(1)))
	require.NotSame(t, &p1[0], &p2[0], "each attachment has its own mapping")
	require.Equal(t, byte(0xab), p2[0])
	require.Equal(t, byte(0xcd), p2[len(p2)-1])
	p2[12345] = 0x77
	require.Equal(t, byte(0x77), p1[12345])
	again, err := s2.Region(1)
	require.NoError(t, err)
	require.Equal(t, s2.MappedRegion(1), again, "mapped once")

	// Grow with a stale count does not grow; then up to the maximum.
	n, err = s2.Grow(0)
	require.NoError(t, err)
	require.Equal(t, uint32(1), n)
	require.Equal(t, uint32(1), s.Regions())
	for want := uint32(2); want <= 3; want++ {
		n, err = s.Grow(want - 1)
		require.NoError(t, err)
		require.Equal(t, want, n)
	}
	n, err = s.Grow(3)
	require.ErrorIs(t, err, ErrStoreFull)
	require.Equal(t, uint32(3), n)
	n, err = s2.Grow(3)
	require.ErrorIs(t, err, ErrStoreFull)
	require.Equal(t, uint32(3), n)
	require.Equal(t, uint32(3), s2.Regions())
	for id := uint16(1); id <= 3; id++ {
		requireMode(t, s.RegionPath(id), 0o600)
		fi, err := os.Stat(s.RegionPath(id))
		require.NoError(t, err)
		require.Equal(t, int64(1<<20), fi.Size())
		require.False(t, s2.RegionCreated(id).IsZero())
	}
	_, err = os.Stat(s.RegionPath(4))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = s2.Region(4)
	require.ErrorIs(t, err, ErrNoRegion, "beyond the maximum")
	_, err = s2.Region(0)
	require.ErrorIs(t, err, ErrNoRegion)
	p3, err := regionBytes(s2, 3)
	require.NoError(t, err)
	require.Zero(t, p3[0], "a new region reads zero")
	require.Empty(t, s.Check())
}

// TestCheckFindsProblems damages the tables and files in the ways Check
// knows about.
func TestCheckFindsProblems(t *testing.T) {
	dir := testDir(t)
	o := smallOpts(dir)
	s := openT(t, "chk", o)
	for i := uint32(0); i < 3; i++ {
		_, err := s.Grow(i)
		require.NoError(t, err)
	}
	require.Empty(t, s.Check())
	s2 := openT(t, "chk", o) // maps no region yet

	// A slot owned by a free entry.
	s.Slot(5).Owner.Store(4)
	// A region of the wrong size, a missing one, a leftover of a dead
	// grower (region n+1: no problem) and a stray file beyond it.
	require.NoError(t, os.Truncate(s.RegionPath(1), 4096))
	require.NoError(t, os.Remove(s.RegionPath(2)))
	require.NoError(t, os.WriteFile(s.RegionPath(4), nil, 0o600))
	require.NoError(t, os.WriteFile(s.RegionPath(9), nil, 0o600))

	probs := s.Check()
	require.Len(t, probs, 4, "%q", probs)
	require.Contains(t, probs, "slot 5 owned by process entry 3, which is free")
	require.Contains(t, probs, fmt.Sprintf("region 1 is 4096 bytes, want %d", 1<<20))
	require.Contains(t, probs, fmt.Sprintf("region file %s beyond the 3 published regions", s.RegionPath(9)))
	var missing bool
	for _, p := range probs {
		if len(p) > 9 && p[:9] == "region 2:" {
			missing = true
		}
	}
	require.True(t, missing, "missing region 2 not reported: %q", probs)

	// A wrongly sized or missing region is refused when mapped, and the
	// store is refused at Open.
	_, err := s2.Region(1)
	require.ErrorIs(t, err, ErrDamaged)
	require.Contains(t, err.Error(), fmt.Sprintf("region-00001 is 4096 bytes, want %d", 1<<20))
	_, err = s2.Region(2)
	require.ErrorIs(t, err, ErrDamaged)
	require.Contains(t, err.Error(), fmt.Sprintf("region-00002 is missing, want %d bytes", 1<<20))
	_, err = Open("chk", o)
	require.ErrorIs(t, err, ErrDamaged)
	require.Contains(t, err.Error(), "region-00001 is 4096 bytes")

	s.Slot(5).Owner.Store(0)
	require.NoError(t, os.Truncate(s.RegionPath(1), 1<<20))
	require.NoError(t, os.WriteFile(s.RegionPath(2), nil, 0o600))
	require.NoError(t, os.Truncate(s.RegionPath(2), 1<<20))
	require.NoError(t, os.Remove(s.RegionPath(9)))
	require.Empty(t, s.Check())

	// The next grower reuses the leftover region file.
	n, err := s.Grow(3)
	require.NoError(t, err)
	require.Equal(t, uint32(4), n)
	fi, err := os.Stat(s.RegionPath(4))
	require.NoError(t, err)
	require.Equal(t, int64(1<<20), fi.Size())
	require.Empty(t, s.Check())
	n, err = s.Grow(4)
	require.ErrorIs(t, err, ErrStoreFull)
	require.Equal(t, uint32(4), n)
}
