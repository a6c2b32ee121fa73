//go:build linux && (amd64 || arm64)

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCreate(t *testing.T) {
	t.Parallel()
	dir := testDir(t)

	out := mustRun(t, "--dir", dir, "create", "plain")
	require.Equal(t, `created store "plain" in `+filepath.Join(dir, "plain")+
		": regions of 64 MiB, at most 4 GiB (64 regions), mode 0600\n", out)
	fi, err := os.Stat(filepath.Join(dir, "plain", "control"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	var rep createReport
	runJSON(t, &rep, "create", "wide", "--dir", dir, "--region-size", "2M", "--max-size", "10MiB", "--mode", "0660")
	require.Equal(t, createReport{Name: "wide", Dir: filepath.Join(dir, "wide"), RegionSize: 2 << 20,
		MaxRegions: 5, MaxSize: 10 << 20, Mode: "0660", Procs: 64, Slots: 256}, rep)
	fi, err = os.Stat(filepath.Join(dir, "wide", "control"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o660), fi.Mode().Perm())

	// The max size is rounded down to whole regions.
	runJSON(t, &rep, "--dir", dir, "create", "round", "--region-size", "4MiB", "--max-size", "10MiB")
	require.Equal(t, 2, rep.MaxRegions)
	require.Equal(t, uint64(8<<20), rep.MaxSize)

	r := shmctl(t, "--dir", dir, "create", "wide")
	requireOneLineError(t, r, 1, `store "wide" already exists`)
	var info infoReport
	runJSON(t, &info, "--dir", dir, "info", "wide")
	require.Equal(t, uint64(2<<20), info.RegionSize, "a failed create changes nothing")
}

func TestCreateFlagsAnywhere(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	// Global flags after the command, flags after the name, "--" before a
	// name that looks like a flag.
	out := mustRun(t, "create", "--region-size=1MiB", "a", "--dir", dir, "--max-size", "1MiB")
	require.True(t, strings.HasPrefix(out, `created store "a"`), out)
	out = mustRun(t, "--dir", dir, "create", "--max-size", "1MiB", "--region-size", "1MiB", "--", "-dash")
	require.True(t, strings.HasPrefix(out, `created store "-dash"`), out)
}

// TestCreateMaxProcs: --max-procs sets the size of the process table.
func TestCreateMaxProcs(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	var rep createReport
	runJSON(t, &rep, "--dir", dir, "create", "few", "--max-size", "64MiB", "--max-procs", "3")
	require.Equal(t, 3, rep.Procs)
	var info infoReport
	runJSON(t, &info, "--dir", dir, "info", "few")
	require.Equal(t, 3, info.ProcTable)
	runJSON(t, &rep, "--dir", dir, "create", "many", "--max-size", "64MiB", "--max-procs", "1023")
	require.Equal(t, 1023, rep.Procs)
	for _, n := range []string{"0", "1024", "-1"} {
		requireOneLineError(t, shmctl(t, "--dir", dir, "create", "bad", "--max-procs", n), 2,
			"create: max procs "+n+": want 1 to 1023")
	}
	requireOneLineError(t, shmctl(t, "--dir", dir, "create", "bad", "--max-procs", "lots"), 2,
		`create: invalid argument "lots" for "--max-procs" flag`)
	require.Contains(t, mustRun(t, "help", "create"), "--max-procs N")
}

// TestCreateDir: create makes the store's own directory and nothing
// above it: a --dir that does not exist, or is not a directory, is said
// so, and nothing is made.
func TestCreateDir(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	missing := filepath.Join(dir, "missing", "deeper")
	requireOneLineError(t, shmctl(t, "--dir", missing, "create", "s"), 1,
		"create: directory "+missing+" (--dir) does not exist; create makes only the store's own directory: make it first (mkdir -p "+missing+")")
	_, err := os.Stat(filepath.Join(dir, "missing"))
	require.ErrorIs(t, err, os.ErrNotExist, "create made a parent")

	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	requireOneLineError(t, shmctl(t, "--dir", file, "create", "s"), 1, "create: "+file+" (--dir) is not a directory")

	out := mustRun(t, "--dir", dir, "create", "s", "--max-size", "64MiB")
	require.True(t, strings.HasPrefix(out, `created store "s" in `+filepath.Join(dir, "s")+":"), out)
}
