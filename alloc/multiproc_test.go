package alloc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
)

// Multi-process tests re-execute the test binary with a role in the
// environment; TestMain runs the role instead of the tests.
const roleEnv = "SHMSTORE_TEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "churn":
		os.Exit(churnWorker())
	case "hog":
		os.Exit(hogWorker())
	}
	os.Exit(m.Run())
}

// churnWorker opens the store named by the environment, runs Churn and
// prints its statistics as JSON.
func churnWorker() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "churn worker:", err)
		return 1
	}
	mb, err := handle.Parse(os.Getenv("SHMSTORE_TEST_MAILBOX"))
	if err != nil {
		return fail(err)
	}
	worker, _ := strconv.ParseUint(os.Getenv("SHMSTORE_TEST_WORKER"), 10, 32)
	seed, _ := strconv.ParseUint(os.Getenv("SHMSTORE_TEST_SEED"), 10, 64)
	dur, err := time.ParseDuration(os.Getenv("SHMSTORE_TEST_DURATION"))
	if err != nil {
		return fail(err)
	}
	st, err := shm.Open("t", shm.Options{Dir: os.Getenv("SHMSTORE_TEST_DIR"), Create: shm.MustExist})
	if err != nil {
		return fail(err)
	}
	a, err := New(st)
	if err != nil {
		return fail(err)
	}
	h, err := a.Lease()
	if err != nil {
		return fail(err)
	}
	// Paced so that 4 workers on 2 cores interleave finely, as they would
	// on 4 cores: most frees are then of blocks another process allocated.
	s, err := Churn(h, ChurnOptions{Mailbox: mb, Worker: worker, Duration: dur, MinSize: 16, MaxSize: 256 << 10, Seed: seed,
		PauseEvery: 64, Pause: 50 * time.Microsecond})
	if err != nil {
		return fail(err)
	}
	h.Release()
	if err := st.Close(); err != nil {
		return fail(err)
	}
	_ = json.NewEncoder(os.Stdout).Encode(s)
	return 0
}

type worker struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

// startChurners starts n worker processes on the store in dir. They are
// killed (by pid) at cleanup if still running.
func startChurners(t *testing.T, dir string, mb handle.Handle, n int, dur time.Duration, seed uint64) []*worker {
	t.Helper()
	var ws []*worker
	for i := 1; i <= n; i++ {
		w := &worker{cmd: exec.Command(os.Args[0], "-test.run=^$")}
		w.cmd.Env = append(os.Environ(), roleEnv+"=churn",
			"SHMSTORE_TEST_DIR="+dir,
			"SHMSTORE_TEST_MAILBOX="+mb.String(),
			"SHMSTORE_TEST_WORKER="+strconv.Itoa(i),
			"SHMSTORE_TEST_SEED="+strconv.FormatUint(seed, 10),
			"SHMSTORE_TEST_DURATION="+dur.String())
		w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
		require.NoError(t, w.cmd.Start())
		t.Cleanup(func() {
			if w.cmd.ProcessState == nil {
				_ = syscall.Kill(w.cmd.Process.Pid, syscall.SIGKILL)
				_ = w.cmd.Wait()
			}
		})
		ws = append(ws, w)
	}
	return ws
}

// stressSetup opens a store and its mailbox; it returns the used bytes
// before the mailbox, to compare with at the end.
func stressSetup(t *testing.T) (dir string, st *shm.Store, a *Allocator, h Heap, mb handle.Handle, used0 uint64, seed uint64) {
	dir = testDir(t)
	st, a = openTest(t, dir, shm.Options{RegionSize: 8 << 20, MaxSize: 1 << 30})
	h = lease(t, a)
	used0 = a.Stats().UsedBytes
	mb, err := NewMailbox(h, 256)
	require.NoError(t, err)
	seed = uint64(rand.Int64())
	t.Logf("seed %d", seed)
	return
}

func sumStats(t *testing.T, ws []*worker) ChurnStats {
	t.Helper()
	var total ChurnStats
	for i, w := range ws {
		var s ChurnStats
		require.NoError(t, json.Unmarshal(w.out.Bytes(), &s), "worker %d said: %s", i+1, w.out.String())
		total.Allocs += s.Allocs
		total.Frees += s.Frees
		total.RemoteFrees += s.RemoteFrees
		total.Bytes += s.Bytes
	}
	return total
}

func TestMultiProcessStress(t *testing.T) {
	dir, st, a, h, mb, used0, seed := stressSetup(t)
	ws := startChurners(t, dir, mb, 4, 3*time.Second, seed)
	// Check while they work: it must not mistake work in progress for damage.
	checks := 0
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); checks++ {
		require.Empty(t, append(st.Check(), a.Check()...), "check #%d on the busy store", checks)
	}
	t.Logf("%d checks of the busy store, all clean", checks)
	for i, w := range ws {
		require.NoError(t, w.cmd.Wait(), "worker %d: %s", i+1, w.out.String())
	}
	total := sumStats(t, ws)
	t.Logf("4 processes: %d allocs, %d frees, %.0f%% remote", total.Allocs, total.Frees, 100*float64(total.RemoteFrees)/float64(total.Frees))
	require.Greater(t, total.Frees, uint64(1000))
	require.GreaterOrEqual(t, float64(total.RemoteFrees)/float64(total.Frees), 0.30, "at least 30% of frees are remote")
	requireClean(t, st, a)
	stale, err := DrainMailbox(h, mb)
	require.NoError(t, err)
	require.Zero(t, stale, "no worker died: every mailbox handle is live")
	require.Equal(t, used0, a.Stats().UsedBytes, "used memory back to its starting value")
	requireClean(t, st, a)
}

func TestMultiProcessStressKill(t *testing.T) {
	dir, st, a, h, mb, used0, seed := stressSetup(t)
	ws := startChurners(t, dir, mb, 4, 3*time.Second, seed)
	time.Sleep(time.Duration(500+rand.IntN(1000)) * time.Millisecond)
	victim := ws[0]
	require.NoError(t, syscall.Kill(victim.cmd.Process.Pid, syscall.SIGKILL))
	require.Error(t, victim.cmd.Wait(), "the victim was killed")
	for i, w := range ws[1:] {
		require.NoError(t, w.cmd.Wait(), "worker %d: %s", i+2, w.out.String())
	}
	total := sumStats(t, ws[1:])
	require.Greater(t, total.Frees, uint64(1000))

	_, err := st.RecoverDead()
	require.NoError(t, err)
	// A survivor that found a lock held by the victim may have recovered
	// it already; either way it was recovered exactly once.
	require.Equal(t, uint64(1), st.Header().Recovered.Load(), "the killed worker is recovered")
	require.Empty(t, st.DeadProcs())
	requireClean(t, st, a)
	stale, err := DrainMailbox(h, mb)
	require.NoError(t, err)
	require.LessOrEqual(t, stale, 1, "at most the cell the victim was handing over names a block recovery freed")
	require.Equal(t, used0, a.Stats().UsedBytes, "nothing the victim held is leaked")
	requireClean(t, st, a)

	// Its memory is reusable: the survivors' store serves a new round.
	mb2, err := NewMailbox(h, 256)
	require.NoError(t, err)
	ws = startChurners(t, dir, mb2, 2, time.Second, seed+1)
	for i, w := range ws {
		require.NoError(t, w.cmd.Wait(), "worker %d: %s", i+1, w.out.String())
	}
	stale, err = DrainMailbox(h, mb2)
	require.NoError(t, err)
	require.Zero(t, stale)
	require.Equal(t, used0, a.Stats().UsedBytes)
	requireClean(t, st, a)
}

// hogWorker attaches, allocates superblock-sized blocks until the store is
// full (kept in its allocation log, so recovery frees them), says "ready"
// and waits to be killed.
func hogWorker() int {
	st, err := shm.Open("t", shm.Options{Dir: os.Getenv("SHMSTORE_TEST_DIR"), Create: shm.MustExist})
	if err != nil {
		return 1
	}
	a, err := New(st)
	if err != nil {
		return 1
	}
	h, err := a.Lease()
	if err != nil {
		return 1
	}
	for {
		if _, _, err := h.Alloc(SuperblockSize); err != nil {
			break
		}
	}
	fmt.Println("ready")
	time.Sleep(time.Hour)
	return 0
}

// killedHog starts a hog on the store in dir, waits until it holds all
// the free memory, and SIGKILLs it (by pid).
func killedHog(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=hog", "SHMSTORE_TEST_DIR="+dir)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "ready\n", line)
	require.NoError(t, syscall.Kill(cmd.Process.Pid, syscall.SIGKILL))
	_ = cmd.Wait()
}
