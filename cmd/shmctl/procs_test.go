//go:build linux && (amd64 || arm64)

package main

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/shm"
)

// procByPID finds a process in a procs report.
func procByPID(t *testing.T, rep procsReport, pid int) shm.ProcInfo {
	t.Helper()
	for _, p := range rep.Processes {
		if p.PID == pid {
			return p
		}
	}
	require.Failf(t, "no such process", "pid %d in %+v", pid, rep.Processes)
	return shm.ProcInfo{}
}

func TestProcs(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "p")
	require.Equal(t, "store \"p\": no process attached\n", mustRun(t, "--dir", dir, "procs", "p"))
	var rep procsReport
	runJSON(t, &rep, "--dir", dir, "procs", "p")
	require.Equal(t, procsReport{Name: "p", Processes: []shm.ProcInfo{}}, rep)

	st := openAttached(t, dir, "p")
	require.NoError(t, st.Set("x", 1)) // leases a slot, kept
	holder := startHolder(t, dir, "p")
	before := fingerprint(t, dir)
	runJSON(t, &rep, "--dir", dir, "procs", "p")
	require.Len(t, rep.Processes, 2, "procs does not list itself")
	own := procByPID(t, rep, os.Getpid())
	require.True(t, own.Alive)
	require.Equal(t, "alive", own.State)
	require.Len(t, own.Slots, 1)
	require.WithinDuration(t, time.Now(), own.Attached, time.Minute)
	h := procByPID(t, rep, holder.Pid())
	require.Equal(t, "alive", h.State)
	require.Len(t, h.Slots, 1)

	killed, err := holder.Kill()
	require.NoError(t, err)
	require.True(t, killed)
	runJSON(t, &rep, "--dir", dir, "procs", "p")
	h = procByPID(t, rep, holder.Pid())
	require.False(t, h.Alive)
	require.Equal(t, "dead", h.State, "procs does not recover")

	out := mustRun(t, "--dir", dir, "procs", "p")
	require.Regexp(t, `^PROC +PID +STATE +ATTACHED +FOR +SLOTS\n`, out)
	require.Regexp(t, fmt.Sprintf(`(?m)^%d +%d +alive +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +[0-9.]+(µs|ms|s) +%d$`,
		own.Index, own.PID, own.Slots[0]), out)
	require.Regexp(t, fmt.Sprintf(`(?m)^%d +%d +dead +\d{4}-.* %d$`, h.Index, h.PID, h.Slots[0]), out)
	require.Equal(t, before, fingerprint(t, dir), "procs wrote to the store")

	// check recovers the dead one; procs then lists only this process.
	mustRun(t, "--dir", dir, "check", "p")
	runJSON(t, &rep, "--dir", dir, "procs", "p")
	require.Len(t, rep.Processes, 1)
	require.Equal(t, os.Getpid(), rep.Processes[0].PID)
}
