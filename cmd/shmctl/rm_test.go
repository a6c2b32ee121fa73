//go:build linux && (amd64 || arm64)

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
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
