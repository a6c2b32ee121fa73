//go:build linux && (amd64 || arm64)

package shm

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestOptionsValidation(t *testing.T) {
	dir := testDir(t)
	const mib = 1 << 20
	cases := []struct {
		name string
		opts Options
		msg  string // part of the error message
	}{
		{"region size below 1 MiB", Options{RegionSize: mib - 1}, "region size"},
		{"region size not a MiB multiple", Options{RegionSize: mib + mib/2}, "region size"},
		{"region size odd bytes", Options{RegionSize: 2*mib + 1}, "region size"},
		{"region size above 4 GiB", Options{RegionSize: 8 << 30, MaxSize: 8 << 30}, "region size"},
		{"region size negative", Options{RegionSize: -mib}, "region size"},
		{"max below region", Options{RegionSize: 2 * mib, MaxSize: mib}, "max size"},
		{"max negative", Options{MaxSize: -1}, "max size"},
		{"too many regions", Options{RegionSize: mib, MaxSize: 1 << 36}, "65535 regions"},
		{"mode without owner write", Options{Mode: 0o400}, "mode"},
		{"mode without owner read", Options{Mode: 0o200}, "mode"},
		{"mode with setuid-like bits", Options{Mode: 0o4600}, "mode"},
		{"mode with go dir bit", Options{Mode: fs.ModeDir | 0o600}, "mode"},
		{"procs negative", Options{Procs: -1}, "procs"},
		{"procs too many", Options{Procs: maxProcs + 1}, "procs"},
		{"slots negative", Options{Slots: -1}, "slots"},
		{"slots too many", Options{Slots: 1<<16 + 1}, "slots"},
		{"slots per proc negative", Options{SlotsPerProc: -1}, "slots per process"},
		{"slots per proc above slots", Options{Slots: 4, SlotsPerProc: 5}, "slots per process"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.opts
			o.Dir = dir
			_, err := o.withDefaults()
			require.ErrorIs(t, err, ErrBadOption)
			require.Contains(t, err.Error(), c.msg)
			s, err := Open("bad", o)
			require.ErrorIs(t, err, ErrBadOption)
			require.Nil(t, s)
			require.Contains(t, err.Error(), `"bad"`, "the error names the store")
			_, serr := os.Stat(filepath.Join(dir, "bad"))
			require.ErrorIs(t, serr, fs.ErrNotExist, "a bad option must not create anything")
		})
	}

	// The limits themselves are accepted.
	for _, o := range []Options{
		{RegionSize: mib, MaxSize: mib},
		{RegionSize: 4 << 30, MaxSize: 4 << 30},
		{RegionSize: mib, MaxSize: (1<<16 - 1) * mib},
		{Mode: 0o600}, {Mode: 0o777},
		{Procs: 1}, {Procs: maxProcs},
		{Slots: 1, SlotsPerProc: 1}, {Slots: 1 << 16, SlotsPerProc: 1 << 16},
	} {
		_, err := o.withDefaults()
		require.NoError(t, err, "%+v", o)
	}
}

func TestValidName(t *testing.T) {
	bad := []string{"", "../x", "..", ".", ".hidden", "a/b", "/abs", "a b", "a\x00b", "tab\t", "é",
		strings.Repeat("a", 201)}
	dir := testDir(t)
	for _, name := range bad {
		err := ValidName(name)
		require.ErrorIs(t, err, ErrBadOption, "name %q", name)
		_, err = Open(name, Options{Dir: dir})
		require.ErrorIs(t, err, ErrBadOption, "Open(%q)", name)
		require.ErrorIs(t, Remove(name, Options{Dir: dir}, true), ErrBadOption, "Remove(%q)", name)
	}
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, ents, "bad names must not create anything")
	_, err = os.Stat(filepath.Join(filepath.Dir(dir), "x"))
	require.ErrorIs(t, err, fs.ErrNotExist)

	for _, name := range []string{"a", "Z", "0", "a.b", "a-b_c.1", "x.", strings.Repeat("n", 200)} {
		require.NoError(t, ValidName(name), "name %q", name)
	}
}

func TestOptionsDefaults(t *testing.T) {
	o, err := Options{}.withDefaults()
	require.NoError(t, err)
	require.Equal(t, int64(DefaultRegionSize), o.RegionSize)
	require.Equal(t, int64(DefaultMaxSize), o.MaxSize)
	require.Equal(t, DefaultMode, o.Mode)
	require.Equal(t, DefaultProcs, o.Procs)
	require.Equal(t, DefaultSlots, o.Slots)
	require.Equal(t, DefaultSlotsPerProc, o.SlotsPerProc)
	require.Equal(t, CreateIfMissing, o.Create)

	// Set fields are kept.
	o, err = Options{RegionSize: 2 << 20, MaxSize: 8 << 20, Mode: 0o640, Procs: 3, Slots: 5, SlotsPerProc: 4}.withDefaults()
	require.NoError(t, err)
	require.Equal(t, Options{RegionSize: 2 << 20, MaxSize: 8 << 20, Mode: 0o640, Procs: 3, Slots: 5, SlotsPerProc: 4}, o)

	// The base directory: Dir, else $SHMSTORE_DIR, else DefaultDir.
	dir := testDir(t)
	t.Setenv("SHMSTORE_DIR", "")
	require.Equal(t, DefaultDir, Options{}.BaseDir())
	t.Setenv("SHMSTORE_DIR", dir)
	require.Equal(t, dir, Options{}.BaseDir())
	require.Equal(t, "/elsewhere", Options{Dir: "/elsewhere"}.BaseDir())

	// A store created with zero Options (in $SHMSTORE_DIR) has the defaults.
	s := openT(t, "defaults", Options{})
	require.Equal(t, filepath.Join(dir, "defaults"), s.Dir())
	require.Equal(t, "defaults", s.Name())
	h := s.Header()
	require.Equal(t, Magic, h.Magic.Load())
	require.Equal(t, LayoutVersion, h.Version)
	require.Equal(t, layoutStamp(), h.Stamp)
	require.Equal(t, uint64(DefaultRegionSize), s.RegionSize())
	require.Equal(t, uint32(DefaultMaxSize/DefaultRegionSize), s.MaxRegions())
	require.Equal(t, DefaultProcs, s.NumProcs())
	require.Equal(t, DefaultSlots, s.NumSlots())
	require.Equal(t, uint32(DefaultSlotsPerProc), h.SlotsPerProc)
	require.Equal(t, uint32(DefaultMode), h.Mode)
	require.Equal(t, uint32(0), s.Regions())
	fi, err := os.Stat(filepath.Join(s.Dir(), "control"))
	require.NoError(t, err)
	require.Equal(t, int64(s.ControlBytes()), fi.Size())
	require.Equal(t, h.ControlSize, s.ControlBytes())
	require.Empty(t, s.Check())

	// MaxSize is rounded down to whole regions.
	s2 := openT(t, "rounded", Options{Dir: dir, RegionSize: 1 << 20, MaxSize: 7<<19 + 5, Slots: 2, SlotsPerProc: 1})
	require.Equal(t, uint32(3), s2.MaxRegions())

	// Opening an existing store uses its own sizes, whatever the options say.
	s3 := openT(t, "rounded", Options{Dir: dir, RegionSize: 2 << 20, MaxSize: 64 << 20, Procs: 2, Slots: 9, SlotsPerProc: 9})
	require.Equal(t, uint64(1<<20), s3.RegionSize())
	require.Equal(t, uint32(3), s3.MaxRegions())
	require.Equal(t, 2, s3.NumSlots())
	require.Equal(t, DefaultProcs, s3.NumProcs())
}
