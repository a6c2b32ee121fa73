//go:build linux && (amd64 || arm64)

package main

import (
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
