//go:build linux && (amd64 || arm64)

package shm

import (
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// dirState lists the files of a store directory with their modes, sizes
// and a hash of their contents, so a test can tell that nothing changed.
func dirState(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var st []string
	for _, e := range ents {
		fi, err := e.Info()
		require.NoError(t, err)
		h := fnv.New64a()
		if fi.Mode().IsRegular() && fi.Size() <= 1<<20 {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			require.NoError(t, err)
			h.Write(b)
		}
		st = append(st, fmt.Sprintf("%s %v %d %x", e.Name(), fi.Mode(), fi.Size(), h.Sum64()))
	}
	sort.Strings(st)
	return st
}

// makeStore creates store name in dir with two regions and closes it.
func makeStore(t *testing.T, dir, name string) string {
	t.Helper()
	s, err := Open(name, smallOpts(dir))
	require.NoError(t, err)
	for i := uint32(0); i < 2; i++ {
		_, err := s.Grow(i)
		require.NoError(t, err)
	}
	require.NoError(t, s.Close())
	return filepath.Join(dir, name)
}

// TestDamagedStores damages a store in each way Open must name, and checks
// Open's answer in every create mode, then Remove without and with force.
func TestDamagedStores(t *testing.T) {
	const hdrSize = unsafe.Sizeof(Header{})
	const regionSize = 1 << 20
	ctlSize := int64(computeLayout(4, 8, 8).size) // smallOpts
	truncate := func(file string, size int64) func(*testing.T, string) {
		return func(t *testing.T, sdir string) { require.NoError(t, os.Truncate(filepath.Join(sdir, file), size)) }
	}
	remove := func(files ...string) func(*testing.T, string) {
		return func(t *testing.T, sdir string) {
			for _, f := range files {
				require.NoError(t, os.Remove(filepath.Join(sdir, f)))
			}
		}
	}
	cases := []struct {
		name   string
		damage func(t *testing.T, sdir string)
		msg    string // in Open's error, and Remove's without force
		// notFound: Open (must exist, read-only) says ErrNotFound and
		// CreateIfMissing creates the store (a creator died before
		// publishing); Remove still calls it damaged.
		notFound bool
	}{
		{"control zeroed", func(t *testing.T, sdir string) {
			require.NoError(t, os.WriteFile(filepath.Join(sdir, "control"), make([]byte, ctlSize), 0))
		}, fmt.Sprintf("control file is zeroed (%d bytes, no header)", ctlSize), false},
		{"control magic zeroed", func(t *testing.T, sdir string) {
			patchFile(t, filepath.Join(sdir, "control"), unsafe.Offsetof(hdrProbe.Magic), uint64(0))
		}, fmt.Sprintf("control file has no magic (%d bytes)", ctlSize), false},
		{"control truncated to zero", truncate("control", 0), fmt.Sprintf("control file is 0 bytes, want at least %d", hdrSize), false},
		{"control shorter than its magic", truncate("control", 5), fmt.Sprintf("control file is 5 bytes, want at least %d", hdrSize), false},
		{"control truncated within the header", truncate("control", 100), fmt.Sprintf("control file is 100 bytes, want at least %d", hdrSize), false},
		{"control truncated partway", truncate("control", ctlSize/2), fmt.Sprintf("control file is %d bytes, its header wants %d", ctlSize/2, ctlSize), false},
		{"lock file missing", remove("lock"), "lock file is missing", false},
		{"control file missing beside regions", remove("control"), "control file is missing but region-00001 is there", false},
		{"control file missing, lock and control.new left", func(t *testing.T, sdir string) {
			remove("control", "region-00001", "region-00002")(t, sdir)
			require.NoError(t, os.WriteFile(filepath.Join(sdir, "control.new"), make([]byte, 4096), 0o600))
		}, "control file is missing (its creation never finished, or it was deleted)", true},
		{"control and lock missing beside regions", remove("control", "lock"), "control file is missing but region-00001 is there", false},
		{"region truncated", truncate("region-00002", 4096), fmt.Sprintf("region-00002 is 4096 bytes, want %d", regionSize), false},
		{"region truncated to zero", truncate("region-00001", 0), fmt.Sprintf("region-00001 is 0 bytes, want %d", regionSize), false},
		{"region missing", remove("region-00002"), fmt.Sprintf("region-00002 is missing, want %d bytes", regionSize), false},
		{"region too long", truncate("region-00001", 2*regionSize), fmt.Sprintf("region-00001 is %d bytes, want %d", 2*regionSize, regionSize), false},
	}
	dir := testDir(t)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := fmt.Sprintf("damaged-%d", i)
			sdir := makeStore(t, dir, name)
			c.damage(t, sdir)
			before := dirState(t, sdir)

			for _, mode := range []struct {
				what string
				o    Options
			}{
				{"must exist", Options{Dir: dir, Create: MustExist}},
				{"read-only", Options{Dir: dir, ReadOnly: true}},
				{"create if missing", smallOpts(dir)},
			} {
				if c.notFound && mode.o.Create == CreateIfMissing && !mode.o.ReadOnly {
					continue // it would create the store: see TestCreatorDiedBeforePublishing
				}
				s, err := Open(name, mode.o)
				if s != nil {
					_ = s.Close()
				}
				if c.notFound {
					require.ErrorIs(t, err, ErrNotFound, mode.what)
					continue
				}
				require.ErrorIs(t, err, ErrDamaged, mode.what)
				require.ErrorIs(t, err, ErrLayout, mode.what)
				require.NotErrorIs(t, err, ErrNotFound, mode.what)
				require.NotContains(t, err.Error(), "not found", mode.what)
				require.Contains(t, err.Error(), fmt.Sprintf("store %q: %s: the store is damaged: remove it with shmctl rm --force", name, c.msg), mode.what)
				require.Equal(t, before, dirState(t, sdir), "%s: a refused Open changed the store", mode.what)
			}
			if !c.notFound {
				_, err := Open(name, Options{Dir: dir, Create: MustCreate})
				require.Error(t, err, "MustCreate over a damaged store")
				require.Equal(t, before, dirState(t, sdir))
			}

			err := Remove(name, Options{Dir: dir}, false)
			require.ErrorIs(t, err, ErrDamaged)
			require.Contains(t, err.Error(), fmt.Sprintf("store %q: %s: the store is damaged: remove it with shmctl rm --force", name, c.msg))
			require.Equal(t, before, dirState(t, sdir), "a refused Remove changed the store")

			require.NoError(t, Remove(name, Options{Dir: dir}, true))
			require.NoDirExists(t, sdir)
			require.ErrorIs(t, Remove(name, Options{Dir: dir}, true), ErrNotFound)

			// The name is free again.
			s := openT(t, name, smallOpts(dir))
			require.Empty(t, s.Check())
		})
	}
	names, err := List(Options{Dir: dir})
	require.NoError(t, err)
	require.Len(t, names, len(cases), "only the re-created stores: %q", names)
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, ents, len(cases), "nothing left behind by the removals")
}

// TestRemoveRefusesNonStores: Remove deletes only a store's directory,
// even with force.
func TestRemoveRefusesNonStores(t *testing.T) {
	dir := testDir(t)
	makeStore(t, dir, "target")
	for _, c := range []struct {
		name  string
		setup func(t *testing.T, path string)
		msg   string
	}{
		{"empty directory", func(t *testing.T, path string) {
			require.NoError(t, os.Mkdir(path, 0o700))
		}, "holds no control, lock or region file: not a store; not removed"},
		{"foreign files only", func(t *testing.T, path string) {
			require.NoError(t, os.Mkdir(path, 0o700))
			require.NoError(t, os.WriteFile(filepath.Join(path, "notes.txt"), []byte("mine"), 0o600))
		}, `holds "notes.txt", which no store has: not a store; not removed`},
		{"a store with a foreign file", func(t *testing.T, path string) {
			makeStore(t, dir, filepath.Base(path))
			require.NoError(t, os.WriteFile(filepath.Join(path, "notes.txt"), []byte("mine"), 0o600))
		}, `holds "notes.txt", which no store has`},
		{"a damaged store with a foreign file", func(t *testing.T, path string) {
			makeStore(t, dir, filepath.Base(path))
			require.NoError(t, os.Truncate(filepath.Join(path, "control"), 0))
			require.NoError(t, os.WriteFile(filepath.Join(path, "region-1"), []byte("mine"), 0o600))
		}, `holds "region-1", which no store has`},
		{"a directory named like a region file", func(t *testing.T, path string) {
			require.NoError(t, os.Mkdir(path, 0o700))
			require.NoError(t, os.WriteFile(filepath.Join(path, "lock"), nil, 0o600))
			require.NoError(t, os.Mkdir(filepath.Join(path, "region-00001"), 0o700))
		}, `holds "region-00001", which no store has`},
		{"a plain file", func(t *testing.T, path string) {
			require.NoError(t, os.WriteFile(path, []byte("mine"), 0o600))
		}, "is not a directory: not a store; not removed"},
		{"a symbolic link to a store", func(t *testing.T, path string) {
			require.NoError(t, os.Symlink(filepath.Join(dir, "target"), path))
		}, "is not a directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := "x-" + filepath.Base(t.Name())
			path := filepath.Join(dir, name)
			c.setup(t, path)
			fi, err := os.Lstat(path)
			require.NoError(t, err)
			for _, force := range []bool{false, true} {
				err := Remove(name, Options{Dir: dir}, force)
				require.ErrorIs(t, err, ErrNotStore, "force %v", force)
				require.Contains(t, err.Error(), fmt.Sprintf("shm: remove %q: %s", name, path))
				require.Contains(t, err.Error(), c.msg)
				after, err := os.Lstat(path)
				require.NoError(t, err, "force %v: removed", force)
				require.True(t, os.SameFile(fi, after))
			}
		})
	}
	require.FileExists(t, filepath.Join(dir, "target", "control"), "the symbolic link's target is intact")
	require.ErrorIs(t, Remove("absent", Options{Dir: dir}, true), ErrNotFound)
}

// TestCreatorDiedBeforePublishing: a creator that dies midway leaves a lock
// file and control.new, never a control file; the store does not exist,
// and the next creator starts over.
func TestCreatorDiedBeforePublishing(t *testing.T) {
	dir := testDir(t)
	sdir := filepath.Join(dir, "half")
	require.NoError(t, os.Mkdir(sdir, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(sdir, "lock"), nil, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(sdir, "control.new"), []byte("half a header"), 0o600))

	for _, o := range []Options{{Dir: dir, Create: MustExist}, {Dir: dir, ReadOnly: true}} {
		_, err := Open("half", o)
		require.ErrorIs(t, err, ErrNotFound, "%+v", o)
	}
	names, err := List(Options{Dir: dir})
	require.NoError(t, err)
	require.Empty(t, names)

	s := openT(t, "half", smallOpts(dir))
	require.Equal(t, Magic, s.Header().Magic.Load())
	require.NoFileExists(t, filepath.Join(sdir, "control.new"), "published under its own name")
	fi, err := os.Stat(filepath.Join(sdir, "control"))
	require.NoError(t, err)
	require.Equal(t, int64(s.ControlBytes()), fi.Size())
	s2 := openT(t, "half", Options{Dir: dir, Create: MustExist})
	require.Equal(t, s.Header().Created, s2.Header().Created)
}

// TestCreateRefusesForeignDirectory: a store is created only in a
// directory of its own. A directory of other files that has the store's
// name, or a file, is refused with ErrNotStore and left as it was (a new
// user's trial made a store beside a photo, which Remove then refused to
// delete); an Options.Dir that is a file is a bad option. An empty
// directory is taken.
func TestCreateRefusesForeignDirectory(t *testing.T) {
	dir := testDir(t)
	photos := filepath.Join(dir, "photos")
	require.NoError(t, os.Mkdir(photos, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(photos, "cat.jpg"), []byte("x"), 0o600))
	_, err := Open("photos", Options{Dir: dir})
	require.ErrorIs(t, err, ErrNotStore)
	require.Contains(t, err.Error(), `holds "cat.jpg", which no store has`)
	ents, err := os.ReadDir(photos)
	require.NoError(t, err)
	require.Len(t, ents, 1, "wrote into a foreign directory")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "plain"), []byte("x"), 0o600))
	for _, c := range []CreateMode{CreateIfMissing, MustExist} {
		_, err = Open("plain", Options{Dir: dir, Create: c})
		require.ErrorIs(t, err, ErrNotStore, "mode %v", c)
	}

	for _, c := range []CreateMode{CreateIfMissing, MustExist} {
		_, err = Open("x", Options{Dir: filepath.Join(dir, "plain"), Create: c})
		require.ErrorIs(t, err, ErrBadOption, "mode %v", c)
		require.Contains(t, err.Error(), "is a file, not a directory")
	}

	require.NoError(t, os.Mkdir(filepath.Join(dir, "empty"), 0o700))
	st, err := Open("empty", Options{Dir: dir})
	require.NoError(t, err)
	require.NoError(t, st.Close())
	require.NoError(t, Remove("empty", Options{Dir: dir}, false))
}

// TestCheckAfterForcedRemove: a process still attached to a store that
// was removed under it (rm --force) is told so by Check, in one sentence,
// instead of a list of missing regions (a new user's trial).
func TestCheckAfterForcedRemove(t *testing.T) {
	dir := testDir(t)
	st, err := Open("gone", Options{Dir: dir})
	require.NoError(t, err)
	require.NoError(t, Remove("gone", Options{Dir: dir}, true))
	probs := st.Check()
	require.Len(t, probs, 1)
	require.Contains(t, probs[0], "the store's files are gone")
	require.NoError(t, st.Close())
}
