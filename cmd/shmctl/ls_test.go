//go:build linux && (amd64 || arm64)

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/internal/layers"
)

const lsHeader = "NAME  REGIONS  SIZE  MAX SIZE  LIVE  DEAD  CREATED\n"

func TestLsEmpty(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	require.Equal(t, lsHeader, mustRun(t, "--dir", dir, "ls"))
	require.Equal(t, "[]\n", mustRun(t, "--dir", dir, "ls", "--json"))
	require.Equal(t, "[]\n", mustRun(t, "--json", "--dir", dir, "ls"))
}

// TestLsMissingDir: a --dir that does not exist, or is not a directory,
// is said so (it used to list nothing), and ls creates nothing.
func TestLsMissingDir(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	missing := filepath.Join(dir, "missing")
	for _, args := range [][]string{{"ls"}, {"ls", "--json"}, {"--json", "ls"}} {
		requireOneLineError(t, shmctl(t, append([]string{"--dir", missing}, args...)...), 1,
			"ls: directory "+missing+" (--dir) does not exist")
	}
	_, err := os.Stat(missing)
	require.ErrorIs(t, err, os.ErrNotExist, "ls creates nothing")
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	requireOneLineError(t, shmctl(t, "--dir", file, "ls"), 1, "ls: "+file+" (--dir) is not a directory")
}

func TestLs(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "beta")
	mustRun(t, "--dir", dir, "create", "alpha", "--region-size", "2MiB", "--max-size", "8MiB")
	require.NoError(t, os.Mkdir(filepath.Join(dir, "not-a-store"), 0o700))

	st := openAttached(t, dir, "beta")
	h, err := layers.Of(st).Alloc.Lease()
	require.NoError(t, err)
	_, _, err = h.Alloc(64)
	require.NoError(t, err)
	h.ForgetLog()
	h.Release()

	before := fingerprint(t, dir)
	out := mustRun(t, "--dir", dir, "ls")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 3, out)
	require.Regexp(t, `^NAME +REGIONS +SIZE +MAX SIZE +LIVE +DEAD +CREATED$`, lines[0])
	// create made the root Dict, in the first region.
	require.Regexp(t, `^alpha +1/4 +2 MiB +8 MiB +0 +0 +\d{4}-`, lines[1])
	require.Regexp(t, `^beta +1/16 +1 MiB +16 MiB +1 +0 +\d{4}-`, lines[2])

	var entries []lsEntry
	runJSON(t, &entries, "--dir", dir, "ls")
	require.Len(t, entries, 2)
	require.Equal(t, "alpha", entries[0].Name)
	require.Equal(t, 1, entries[0].Regions)
	require.Equal(t, 4, entries[0].MaxRegions)
	require.Equal(t, uint64(8<<20), entries[0].MaxSize)
	require.Equal(t, 0, entries[0].LiveProcs)
	b := entries[1]
	require.Equal(t, "beta", b.Name)
	require.Equal(t, 1, b.Regions)
	require.Equal(t, uint64(1<<20), b.MappedBytes)
	require.Equal(t, 1, b.LiveProcs)
	require.Equal(t, 0, b.DeadProcs)
	require.Empty(t, b.Error)
	require.False(t, b.Created.IsZero())
	require.Equal(t, before, fingerprint(t, dir), "ls wrote to a store")
}

func TestLsBrokenStore(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "good")
	require.NoError(t, os.Mkdir(filepath.Join(dir, "bad"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad", "control"), bytes.Repeat([]byte("not a store "), 400), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad", "lock"), nil, 0o600))

	out := mustRun(t, "--dir", dir, "ls")
	require.Regexp(t, `(?m)^bad +- +- +- +- +- +error: .*magic`, out)
	require.Regexp(t, `(?m)^good +1/16 `, out)
	var entries []lsEntry
	runJSON(t, &entries, "--dir", dir, "ls")
	require.Len(t, entries, 2)
	require.Contains(t, entries[0].Error, "magic")
	require.Empty(t, entries[1].Error)
}

// Not parallel: it sets the environment.
func TestLsEnvDir(t *testing.T) {
	dir := testDir(t)
	createStore(t, dir, "env")
	t.Setenv("SHMSTORE_DIR", dir)
	var entries []lsEntry
	runJSON(t, &entries, "ls")
	require.Len(t, entries, 1)
	require.Equal(t, "env", entries[0].Name)
	// --dir wins over the environment.
	elsewhere := filepath.Join(dir, "elsewhere")
	require.NoError(t, os.Mkdir(elsewhere, 0o700))
	require.Equal(t, "[]\n", mustRun(t, "ls", "--json", "--dir", elsewhere))
	// A $SHMSTORE_DIR that does not exist is said so, as --dir is.
	t.Setenv("SHMSTORE_DIR", filepath.Join(dir, "missing"))
	requireOneLineError(t, shmctl(t, "ls"), 1, "ls: directory "+filepath.Join(dir, "missing")+" ($SHMSTORE_DIR) does not exist")
}
