//go:build linux && (amd64 || arm64)

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/shm"
)

func TestRm(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "gone")
	createStore(t, dir, "kept")
	out := mustRun(t, "--dir", dir, "rm", "gone")
	require.Equal(t, fmt.Sprintf("removed store %q (%s)\n", "gone", filepath.Join(dir, "gone")), out)
	_, err := os.Stat(filepath.Join(dir, "gone"))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = os.Stat(filepath.Join(dir, "kept", "control"))
	require.NoError(t, err, "rm removed only its store")

	requireOneLineError(t, shmctl(t, "--dir", dir, "rm", "gone"), 1, `rm: no store "gone"`)

	var rep rmReport
	runJSON(t, &rep, "--dir", dir, "rm", "kept")
	require.Equal(t, rmReport{Name: "kept", Dir: filepath.Join(dir, "kept"), Removed: true, LivePIDs: []int{}}, rep)
	require.Equal(t, lsHeader, mustRun(t, "--dir", dir, "ls"))
}

func TestRmRefusesWhileAttached(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "busy")
	st := openAttached(t, dir, "busy")

	r := shmctl(t, "--dir", dir, "rm", "busy")
	requireOneLineError(t, r, 1, `store "busy" has live processes attached`, fmt.Sprint(os.Getpid()), "--force")
	_, err := os.Stat(filepath.Join(dir, "busy", "control"))
	require.NoError(t, err, "refused rm removed nothing")

	var rep rmReport
	runJSON(t, &rep, "--dir", dir, "rm", "busy", "--force")
	require.True(t, rep.Removed)
	require.True(t, rep.Forced)
	require.Equal(t, []int{os.Getpid()}, rep.LivePIDs)
	_, err = os.Stat(filepath.Join(dir, "busy"))
	require.ErrorIs(t, err, os.ErrNotExist)

	// The attached process keeps its mapping until it detaches.
	require.NoError(t, st.Close())
}

// TestRmDamaged: a store that cannot be opened is removed only with
// --force.
func TestRmDamaged(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "bad"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad", "control"), bytes.Repeat([]byte("not a store "), 400), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad", "lock"), nil, 0o600))

	requireOneLineError(t, shmctl(t, "--dir", dir, "rm", "bad"), 1, `rm: store "bad" cannot be opened`, "magic", "--force")
	require.DirExists(t, filepath.Join(dir, "bad"))
	var rep rmReport
	runJSON(t, &rep, "--dir", dir, "rm", "bad", "--force")
	require.Equal(t, rmReport{Name: "bad", Dir: filepath.Join(dir, "bad"), Removed: true, Forced: true, LivePIDs: []int{}}, rep)
	require.NoDirExists(t, filepath.Join(dir, "bad"))
}

// TestRmDamagedStores damages a store in each way shm names: rm refuses
// with one line that says what is damaged and to use --force, and removes
// it with --force.
func TestRmDamagedStores(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	hdr := unsafe.Sizeof(shm.Header{})
	createStore(t, dir, "model")
	fi, err := os.Stat(filepath.Join(dir, "model", "control"))
	require.NoError(t, err)
	ctlSize := fi.Size()
	mustRun(t, "--dir", dir, "rm", "model")
	cases := []struct {
		name   string
		damage func(t *testing.T, sdir string)
		msg    string
	}{
		{"zeroed", func(t *testing.T, sdir string) {
			fi, err := os.Stat(filepath.Join(sdir, "control"))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(sdir, "control"), make([]byte, fi.Size()), 0))
		}, "control file is zeroed ("},
		{"empty", func(t *testing.T, sdir string) {
			require.NoError(t, os.Truncate(filepath.Join(sdir, "control"), 0))
		}, fmt.Sprintf("control file is 0 bytes, want at least %d", hdr)},
		{"halved", func(t *testing.T, sdir string) {
			require.NoError(t, os.Truncate(filepath.Join(sdir, "control"), ctlSize/2))
		}, fmt.Sprintf("control file is %d bytes, its header wants %d", ctlSize/2, ctlSize)},
		{"nolock", func(t *testing.T, sdir string) {
			require.NoError(t, os.Remove(filepath.Join(sdir, "lock")))
		}, "lock file is missing"},
		{"nocontrol", func(t *testing.T, sdir string) {
			require.NoError(t, os.Remove(filepath.Join(sdir, "control")))
		}, "control file is missing but region-00001 is there"},
		{"lockonly", func(t *testing.T, sdir string) {
			require.NoError(t, os.Remove(filepath.Join(sdir, "control")))
			require.NoError(t, os.Remove(filepath.Join(sdir, "region-00001")))
		}, "control file is missing (its creation never finished, or it was deleted)"},
		{"shortregion", func(t *testing.T, sdir string) {
			require.NoError(t, os.Truncate(filepath.Join(sdir, "region-00001"), 4096))
		}, "region-00001 is 4096 bytes, want 1048576"},
		{"noregion", func(t *testing.T, sdir string) {
			require.NoError(t, os.Remove(filepath.Join(sdir, "region-00001")))
		}, "region-00001 is missing, want 1048576 bytes"},
	}
	for _, c := range cases {
		createStore(t, dir, c.name)
		sdir := filepath.Join(dir, c.name)
		_, err := os.Stat(filepath.Join(sdir, "region-00001"))
		require.NoError(t, err, "create makes the first region")
		c.damage(t, sdir)

		r := shmctl(t, "--dir", dir, "rm", c.name)
		requireOneLineError(t, r, 1, fmt.Sprintf(`shmctl: rm: shm: store %q: %s`, c.name, c.msg),
			": the store is damaged: remove it with shmctl rm --force\n")
		require.DirExists(t, sdir, "%s: refused rm removed it", c.name)

		var rep rmReport
		runJSON(t, &rep, "--dir", dir, "rm", c.name, "--force")
		require.Equal(t, rmReport{Name: c.name, Dir: sdir, Removed: true, Forced: true, LivePIDs: []int{}}, rep)
		require.NoDirExists(t, sdir, c.name)
		requireOneLineError(t, shmctl(t, "--dir", dir, "rm", c.name, "--force"), 1, fmt.Sprintf(`rm: no store %q`, c.name))
	}
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, ents, "nothing left behind")
}

// TestRmNotAStore: a directory that is not a store's is never removed,
// even with --force.
func TestRmNotAStore(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	require.NoError(t, os.Mkdir(filepath.Join(dir, "empty"), 0o700))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "photos"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "photos", "cat.jpg"), []byte("meow"), 0o600))
	createStore(t, dir, "mixed")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "mixed", "notes.txt"), []byte("mine"), 0o600))
	for _, c := range []struct{ name, msg string }{
		{"empty", "holds no control, lock or region file: not a store; not removed"},
		{"photos", `holds "cat.jpg", which no store has: not a store; not removed`},
		{"mixed", `holds "notes.txt", which no store has: not a store; not removed`},
	} {
		for _, force := range []bool{false, true} {
			args := []string{"--dir", dir, "rm", c.name}
			if force {
				args = append(args, "--force")
			}
			requireOneLineError(t, shmctl(t, args...), 1,
				fmt.Sprintf(`shmctl: rm: shm: remove %q: %s %s`, c.name, filepath.Join(dir, c.name), c.msg))
			require.DirExists(t, filepath.Join(dir, c.name))
		}
	}
	require.FileExists(t, filepath.Join(dir, "photos", "cat.jpg"))
	require.FileExists(t, filepath.Join(dir, "mixed", "control"))
}
