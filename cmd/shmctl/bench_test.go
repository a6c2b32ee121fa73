//go:build linux && (amd64 || arm64)

package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// decodeStrict decodes JSON output, refusing fields the struct lacks.
func decodeStrict(s string, v any) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// buildShmctl builds the shmctl binary into the test's temporary
// directory and returns its path.
func buildShmctl(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "shmctl")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// createBenchStore creates a store roomy enough for a bench run.
func createBenchStore(t *testing.T, dir, name string) {
	t.Helper()
	mustRun(t, "--dir", dir, "create", name, "--region-size", "4MiB", "--max-size", "256MiB")
}

// requireBenchReport checks a bench report of procs workers that ran.
func requireBenchReport(t *testing.T, rep benchReport, procs int) {
	t.Helper()
	require.Equal(t, procs, rep.Procs)
	require.Len(t, rep.Workers, procs)
	for i, w := range rep.Workers {
		require.Equal(t, i+1, w.Worker)
		require.NotZero(t, w.PID)
		require.NotZero(t, w.Allocs)
		require.NotZero(t, w.Frees)
		require.Equal(t, w.Allocs+w.Frees, w.Ops)
		require.Greater(t, w.OpsPerSec, 0.0)
		require.Greater(t, w.Seconds, 0.0)
	}
	tot := rep.Total
	require.Greater(t, tot.Allocs, uint64(0))
	require.Greater(t, tot.Frees, uint64(0))
	require.Greater(t, tot.Ops, uint64(0))
	require.Greater(t, tot.OpsPerSec, 0.0)
	require.Greater(t, tot.Bytes, uint64(0))
	require.Greater(t, tot.RemoteFrees, uint64(0), "blocks moved between processes")
	require.Greater(t, tot.RemoteFreeFraction, 0.0)
	require.LessOrEqual(t, tot.RemoteFreeFraction, 1.0)
	require.Equal(t, 0, rep.StaleHandles)
	require.Equal(t, 0, rep.Recovered)
	require.NotZero(t, rep.Seed)
}

// TestBenchBinary runs the built shmctl as a real process: bench starts two
// real workers (the binary re-executed), and the store checks clean after.
func TestBenchBinary(t *testing.T) {
	t.Parallel()
	bin := buildShmctl(t)
	dir := testDir(t)
	createBenchStore(t, dir, "b")
	var info infoReport
	runJSON(t, &info, "--dir", dir, "info", "b")
	rootBytes := info.UsedBytes // the root Dict, made at create

	cmd := exec.Command(bin, "--dir", dir, "bench", "b", "--procs", "2", "--duration", "1s",
		"--min-size", "16", "--max-size", "2KiB", "--mailbox", "256", "--json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "stderr: %s", stderr.String())
	require.Empty(t, stderr.String())
	var rep benchReport
	require.NoError(t, decodeStrict(stdout.String(), &rep), stdout.String())
	requireBenchReport(t, rep, 2)
	require.Equal(t, "b", rep.Store)
	require.Equal(t, int64(16), rep.MinSize)
	require.Equal(t, int64(2<<10), rep.MaxSize)
	require.Equal(t, 256, rep.Mailbox)
	require.InDelta(t, 1.0, rep.Total.Seconds, 0.5)

	var chk checkReport
	runJSON(t, &chk, "--dir", dir, "check", "b")
	require.Equal(t, checkReport{Name: "b", LiveProcs: []int{}, Problems: []string{}, OK: true}, chk)
	runJSON(t, &info, "--dir", dir, "info", "b")
	require.Empty(t, info.Processes, "workers and bench detached")
	require.Equal(t, rootBytes, info.UsedBytes, "the mailbox and its blocks were freed")
}

// TestBenchText runs bench in-process (its workers are this test binary,
// see TestMain) and checks the table.
func TestBenchText(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createBenchStore(t, dir, "bt")
	out := mustRun(t, "--dir", dir, "bench", "bt", "--procs", "2", "--duration", "300ms", "--seed", "7")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 8, out)
	require.Equal(t, `bench "bt": 2 workers for 300ms, sizes 16 B to 4 KiB, mailbox of 1024 cells, seed 7`, lines[0])
	require.Empty(t, lines[1])
	require.Regexp(t, `^WORKER +PID +ALLOCS +FREES +REMOTE FREES +REMOTE +SECONDS +OPS/S$`, lines[2])
	require.Regexp(t, `^1 +\d+ +[1-9]\d* +[1-9]\d* +\d+ +\d+\.\d% +0\.\d\d +[1-9]\d*$`, lines[3])
	require.Regexp(t, `^2 +\d+ +[1-9]\d* +[1-9]\d* +\d+ +\d+\.\d% +0\.\d\d +[1-9]\d*$`, lines[4])
	require.Regexp(t, `^total +[1-9]\d* +[1-9]\d* +[1-9]\d* +\d+\.\d% +0\.\d\d +[1-9]\d*$`, lines[5])
	require.Empty(t, lines[6])
	require.Equal(t, "mailbox drained (0 stale handles); 0 dead workers recovered", lines[7])
	require.Equal(t, "store \"bt\": ok\n", mustRun(t, "--dir", dir, "check", "bt"))
}

// TestBenchOps runs workers bounded by an operation count.
func TestBenchOps(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createBenchStore(t, dir, "bo")
	var rep benchReport
	runJSON(t, &rep, "--dir", dir, "bench", "bo", "--procs", "3", "--ops", "2000", "--duration", "10s",
		"--min-size", "16", "--max-size", "64KiB", "--mailbox", "64")
	require.Len(t, rep.Workers, 3)
	for _, w := range rep.Workers {
		require.Equal(t, uint64(2000), w.Allocs)
	}
	require.Equal(t, uint64(6000), rep.Total.Allocs)
	require.Less(t, rep.Total.Seconds, 10.0)
	require.Equal(t, "store \"bo\": ok\n", mustRun(t, "--dir", dir, "check", "bo"))
}

// TestBenchKeep leaves the mailbox and its blocks allocated: info shows
// them in use, check reports each as leaked (nothing in the store links
// to them), and a later bench runs as usual.
func TestBenchKeep(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createBenchStore(t, dir, "bk")
	var rep benchReport
	runJSON(t, &rep, "--dir", dir, "bench", "bk", "--procs", "2", "--ops", "1000", "--mailbox", "64", "--keep")
	require.NotEmpty(t, rep.KeptMailbox)
	var info infoReport
	runJSON(t, &info, "--dir", dir, "info", "bk")
	require.Greater(t, info.UsedBytes, uint64(64*16), "the mailbox's blocks are still allocated")
	r := shmctl(t, "--dir", dir, "check", "bk", "--json")
	require.Equal(t, 1, r.code, r.stderr)
	var chk checkReport
	require.NoError(t, decodeStrict(r.stdout, &chk))
	require.False(t, chk.OK)
	require.NotEmpty(t, chk.Problems)
	require.LessOrEqual(t, len(chk.Problems), 1+64, "the mailbox and a block per cell")
	mailbox := false
	for _, p := range chk.Problems {
		require.Contains(t, p, "is allocated but neither reachable, retired nor logged (leaked)")
		mailbox = mailbox || strings.Contains(p, "block "+rep.KeptMailbox+" ")
	}
	require.True(t, mailbox, "the mailbox is among the leaks: %q", chk.Problems)
	out := mustRun(t, "--dir", dir, "bench", "bk", "--procs", "1", "--ops", "10", "--mailbox", "8")
	require.Contains(t, out, "mailbox drained")
}

// TestBenchRefusesBlocksBeyondTheLargest: a --max-size, or a --mailbox
// (one block of 8 bytes a cell and 8 more), larger than the largest block
// the store allocates (a region less its metadata: 960KiB, or 122879
// mailbox cells, in 1MiB regions) is refused before any worker starts,
// exit 2, in one line that names the flag, the limit and the largest
// value allowed (every worker used to start and fail on its first such
// request, or the mailbox failed with the allocator's "allocation larger
// than a region", exit 1). The largest values themselves run, and leave
// the store clean.
func TestBenchRefusesBlocksBeyondTheLargest(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "bm") // 1MiB regions
	for _, c := range []struct{ flag, value, most string }{
		{"--max-size", "1GiB", "960KiB"},
		{"--max-size", "983041", "960KiB"}, // one byte beyond 960KiB (983040 bytes)
		{"--mailbox", "122880", "122879"},
		{"--mailbox", "1048576", "122879"},
	} {
		r := shmctl(t, "--dir", dir, "bench", "bm", c.flag, c.value, "--procs", "2", "--duration", "5s")
		requireOneLineError(t, r, 2, "bench: "+c.flag+" "+c.value+": ", `store "bm" allocates at most 960KiB in one block`,
			"regions of 1 MiB", "give "+c.flag+" "+c.most+" or less")
		require.NotContains(t, r.stderr, "allocation larger than a region")
		require.NotContains(t, r.stderr, "worker")
	}
	// Both too large: --max-size is said first.
	requireOneLineError(t, shmctl(t, "--dir", dir, "bench", "bm", "--mailbox", "122880", "--max-size", "1GiB"), 2,
		"bench: --max-size 1GiB: ", "give --max-size 960KiB or less")
	// --min-size alone beyond the default --max-size is the order check's.
	requireOneLineError(t, shmctl(t, "--dir", dir, "bench", "bm", "--min-size", "1MiB"), 2,
		"bench: max size 4096 is below the min size 1048576")
	// Exactly the largest: every request takes a whole region; the
	// largest mailbox is made and drained.
	var rep benchReport
	runJSON(t, &rep, "--dir", dir, "bench", "bm", "--procs", "1", "--ops", "20", "--mailbox", "4",
		"--min-size", "960KiB", "--max-size", "960KiB")
	require.Equal(t, uint64(20), rep.Total.Allocs)
	runJSON(t, &rep, "--dir", dir, "bench", "bm", "--procs", "1", "--ops", "20", "--mailbox", "122879")
	require.Equal(t, 122879, rep.Mailbox)
	require.Equal(t, uint64(20), rep.Total.Allocs)
	require.Equal(t, "store \"bm\": ok\n", mustRun(t, "--dir", dir, "check", "bm"))
}
