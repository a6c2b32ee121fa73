//go:build linux && (amd64 || arm64)

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCheckClean(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "ok")
	require.Equal(t, "store \"ok\": ok\n", mustRun(t, "--dir", dir, "check", "ok"))
	var rep checkReport
	runJSON(t, &rep, "--dir", dir, "check", "ok")
	require.Equal(t, checkReport{Name: "ok", LiveProcs: []int{}, Problems: []string{}, OK: true}, rep)
	// check detached again: no process is left in the table.
	var info infoReport
	runJSON(t, &info, "--dir", dir, "info", "ok")
	require.Empty(t, info.Processes)
}

func TestCheckRecoversDeadProcess(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "crash")
	var info infoReport
	runJSON(t, &info, "--dir", dir, "info", "crash")
	rootBytes := info.UsedBytes // the root Dict, made at create
	holder := startHolder(t, dir, "crash")
	killed, err := holder.Kill()
	require.NoError(t, err)
	require.True(t, killed)

	runJSON(t, &info, "--dir", dir, "info", "crash")
	require.Len(t, info.Processes, 1)
	require.False(t, info.Processes[0].Alive)
	require.Greater(t, info.UsedBytes, rootBytes, "the dead process's blocks are still allocated")

	var rep checkReport
	runJSON(t, &rep, "--dir", dir, "check", "crash")
	require.Equal(t, checkReport{Name: "crash", Recovered: 1, LiveProcs: []int{}, Problems: []string{}, OK: true}, rep)

	runJSON(t, &info, "--dir", dir, "info", "crash")
	require.Empty(t, info.Processes)
	require.Equal(t, uint64(1), info.Recovered)
	require.Equal(t, rootBytes, info.UsedBytes, "recovery freed the unhanded blocks")
	require.Equal(t, "store \"crash\": ok\n", mustRun(t, "--dir", dir, "check", "crash"))
}

func TestCheckProblems(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "bad")
	// A region file far beyond the published count is a problem.
	stray := filepath.Join(dir, "bad", "region-00009")
	require.NoError(t, os.WriteFile(stray, nil, 0o600))

	r := shmctl(t, "--dir", dir, "check", "bad")
	require.Equal(t, 1, r.code)
	require.Equal(t, "shmctl: check: store \"bad\" has 1 problems\n", r.stderr)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, lines, 2, r.stdout)
	require.Equal(t, `store "bad": 1 problems:`, lines[0])
	require.Contains(t, lines[1], stray)

	r = shmctl(t, "--dir", dir, "check", "bad", "--json")
	require.Equal(t, 1, r.code)
	require.Equal(t, "shmctl: check: store \"bad\" has 1 problems\n", r.stderr)
	var rep checkReport
	require.NoError(t, decodeStrict(r.stdout, &rep))
	require.False(t, rep.OK)
	require.Len(t, rep.Problems, 1)
	require.Contains(t, rep.Problems[0], "beyond the 1 published regions") // the root Dict's
}

func TestCheckNotesLiveProcesses(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "live")
	holder := startHolder(t, dir, "live")
	var rep checkReport
	runJSON(t, &rep, "--dir", dir, "check", "live")
	require.Equal(t, checkReport{Name: "live", LiveProcs: []int{holder.Pid()}, Problems: []string{}, OK: true}, rep)
	out := mustRun(t, "--dir", dir, "check", "live")
	require.Equal(t, fmt.Sprintf("store \"live\": ok\nnote: 1 other live processes attached (pids %d); "+
		"problems seen while they work may be transient\n", holder.Pid()), out)
}
