//go:build linux && (amd64 || arm64)

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// fleetTestCommand makes this test binary (see TestMain) a fleet worker
// of fleetTestWorker's kind.
const fleetTestCommand = "__fleettest"

// fleetTestEnv is set by the tests' fleetSpec.env, and reported back.
const fleetTestEnv = "SHMCTL_TEST_FLEET"

// fleetTestResult is what a test worker reports.
type fleetTestResult struct {
	Worker int    `json:"worker"`
	PID    int    `json:"pid"`
	Env    string `json:"env"`
}

// fleetTestWorker is a worker for the fleet's tests: `__fleettest --gate
// MODE ID TAG`. TAG marks the test's processes for requireNoneLeft. In
// MODE "early" it fails before it is ready; in every other mode it says
// ready and waits at the gate, then: "ok" reports after 300ms, "fail"
// fails, "block" blocks until a signal ends it, "stubborn" does so too but
// ignores SIGTERM.
func fleetTestWorker(args []string) int {
	if len(args) != 4 || args[0] != "--gate" {
		fmt.Fprintf(os.Stderr, "shmctl: bad test worker arguments %q\n", args)
		return 2
	}
	mode, id := args[1], args[2]
	if mode == "early" {
		fmt.Fprintf(os.Stderr, "shmctl: worker %s: cannot attach\n", id)
		return 1
	}
	if mode == "stubborn" {
		signal.Ignore(syscall.SIGTERM)
	}
	waitAtGate(os.Stdout)
	switch mode {
	case "ok":
		time.Sleep(300 * time.Millisecond)
		n, _ := strconv.Atoi(id)
		b, _ := json.Marshal(fleetTestResult{Worker: n, PID: os.Getpid(), Env: os.Getenv(fleetTestEnv)})
		fmt.Println(string(b))
		return 0
	case "fail":
		fmt.Fprintf(os.Stderr, "shmctl: worker %s: boom\n", id)
		return 1
	}
	time.Sleep(time.Hour) // block: a signal ends it
	return 1
}

// testFleetSpec is a fleet of test workers, worker id running modes[id-1].
func testFleetSpec(t *testing.T, timeout time.Duration, modes ...string) fleetSpec {
	return fleetSpec{procs: len(modes), command: fleetTestCommand, timeout: timeout,
		env:  []string{fleetTestEnv + "=" + t.Name()},
		args: func(id int) []string { return []string{modes[id-1], strconv.Itoa(id), fleetTag(t)} }}
}

// fleetTag marks the processes of test t.
func fleetTag(t *testing.T) string { return "fleet-tag-" + t.Name() }

// requireNoneLeft checks that no process of test t is left: none of this
// test binary's children has its tag on its command line (the fleet waits
// for every process, so none is even a zombie).
func requireNoneLeft(t *testing.T) {
	t.Helper()
	paths, err := filepath.Glob("/proc/[0-9]*/cmdline")
	require.NoError(t, err)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // ended meanwhile
		}
		require.NotContains(t, string(b), "\x00"+fleetTag(t)+"\x00", p)
	}
}

// requireGone checks that no process has pid (the fleet waited for it, so
// it is not even a zombie).
func requireGone(t *testing.T, pid int) {
	t.Helper()
	require.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "pid %d", pid)
}

// TestFleetFailure: of two workers, one reports and one fails after the
// gate: its error names it and says what it wrote on stderr.
func TestFleetFailure(t *testing.T) {
	t.Parallel()
	f, err := startFleet(context.Background(), testFleetSpec(t, time.Minute, "ok", "fail"))
	require.NoError(t, err)
	pids := f.pids()
	require.Len(t, pids, 2)
	f.openGate()
	rs, err := fleetResults[fleetTestResult](f)
	require.EqualError(t, err, fmt.Sprintf("worker 2 (pid %d) failed: worker 2: boom", pids[1]))
	require.Equal(t, []fleetTestResult{{Worker: 1, PID: pids[0], Env: t.Name()}}, rs)
	require.False(t, f.wasInterrupted())
	_, err = f.restart(1)
	require.EqualError(t, err, "restart worker 1: every worker ended")
	requireNoneLeft(t)
}

// TestFleetStartFailure: a worker that fails before it is ready fails the
// start, with its stderr; the worker already waiting at the gate is
// killed and waited for.
func TestFleetStartFailure(t *testing.T) {
	t.Parallel()
	f, err := startFleet(context.Background(), testFleetSpec(t, time.Minute, "block", "early"))
	require.Nil(t, f)
	require.Regexp(t, `^worker 2 \(pid \d+\) failed: worker 2: cannot attach$`, err.Error())
	requireNoneLeft(t)

	// A context that ended already starts nothing.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = startFleet(ctx, testFleetSpec(t, time.Minute, "ok"))
	require.EqualError(t, err, "interrupted before the workers started")
}

// TestFleetCancel: the end of the context stops every worker (SIGTERM),
// whether at the gate or running; the timeout kills one that ignores
// SIGTERM. No process is left.
func TestFleetCancel(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f, err := startFleet(ctx, testFleetSpec(t, time.Minute, "block", "block", "block"))
	require.NoError(t, err)
	pids := f.pids()
	f.openGate()
	cancel()
	select {
	case <-f.ended():
	case <-time.After(20 * time.Second):
		t.Fatal("the workers did not end")
	}
	rs, err := fleetResults[fleetTestResult](f)
	require.Empty(t, rs)
	var want []string
	for i, pid := range pids {
		want = append(want, fmt.Sprintf("worker %d (pid %d) stopped: interrupted", i+1, pid))
		requireGone(t, pid)
	}
	require.EqualError(t, err, strings.Join(want, "\n"))
	require.True(t, f.wasInterrupted())
	_, err = f.restart(1)
	require.Error(t, err)
	requireNoneLeft(t)

	// Cancelled while still at the gate, and one ignores SIGTERM: the
	// timeout kills it.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	f, err = startFleet(ctx, testFleetSpec(t, 2*time.Second, "block", "stubborn"))
	require.NoError(t, err)
	pids = f.pids()
	cancel()
	_, err = fleetResults[fleetTestResult](f)
	require.EqualError(t, err, fmt.Sprintf("worker 1 (pid %d) stopped: interrupted\n"+
		"worker 2 (pid %d) did not finish in time and was killed", pids[0], pids[1]))
	requireNoneLeft(t)
}

// TestFleetRestart kills a worker and starts it anew, once before the
// gate opens and once after: each worker reports from its last process.
func TestFleetRestart(t *testing.T) {
	t.Parallel()
	f, err := startFleet(context.Background(), testFleetSpec(t, time.Minute, "ok", "ok"))
	require.NoError(t, err)
	first := f.pids()

	pid1, err := f.restart(1) // it waits at the gate again
	require.NoError(t, err)
	require.NotEqual(t, first[0], pid1)
	requireGone(t, first[0])
	f.openGate()
	pid2, err := f.restart(2) // it goes at once
	require.NoError(t, err)
	require.NotEqual(t, first[1], pid2)
	requireGone(t, first[1])
	require.Equal(t, []int{pid1, pid2}, f.pids())
	_, err = f.restart(3)
	require.EqualError(t, err, "restart worker 3: there are workers 1 to 2")

	rs, err := fleetResults[fleetTestResult](f)
	require.NoError(t, err)
	require.Equal(t, []fleetTestResult{{Worker: 1, PID: pid1, Env: t.Name()}, {Worker: 2, PID: pid2, Env: t.Name()}}, rs)
	requireNoneLeft(t)
}

// TestWorkersBeyondProcTable: bench and bank refuse, before any worker
// starts, more workers than the store's process table holds besides
// themselves (exit 2), or than it has free now (exit 1).
func TestWorkersBeyondProcTable(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	mustRun(t, "--dir", dir, "create", "small", "--region-size", "4MiB", "--max-size", "64MiB", "--max-procs", "3")
	for _, c := range []string{"bench", "bank"} {
		r := shmctl(t, "--dir", dir, c, "small", "--procs", "3", "--duration", "100ms")
		requireOneLineError(t, r, 2, c+`: --procs 3: store "small" has a process table of 3 entries and `+c+
			` takes one, so at most 2 workers fit; make a store with a larger table (shmctl create --max-procs N)`)
	}
	startHolder(t, dir, "small")
	for _, c := range []string{"bench", "bank"} {
		r := shmctl(t, "--dir", dir, c, "small", "--procs", "2", "--duration", "100ms")
		requireOneLineError(t, r, 1, c+`: --procs 2: only 1 of the 3 entries of store "small"'s process table are free (`+c+
			` and 1 other processes hold the rest); run fewer workers or make a store with a larger table`)
	}
	// Nothing ran: no accounts, no mailbox left, only the holder attached.
	requireOneLineError(t, shmctl(t, "--dir", dir, "get", "small", "accounts"), 1, `no key "accounts"`)
	var procs procsReport
	runJSON(t, &procs, "--dir", dir, "procs", "small")
	require.Len(t, procs.Processes, 1)
	// One worker fits beside bank and the holder.
	var rep bankReport
	runJSON(t, &rep, "--dir", dir, "bank", "small", "--procs", "1", "--duration", "100ms", "--accounts", "10")
	require.True(t, rep.OK)
}
