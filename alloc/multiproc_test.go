package alloc_test

// The allocator under the churn workload (internal/churn) from several
// processes. These tests are in package alloc_test because churn imports
// alloc; export_test.go lends them the package's test helpers.

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/internal/churn"
	"github.com/shmstore/shmstore/internal/proctest"
	"github.com/shmstore/shmstore/shm"
	"github.com/shmstore/shmstore/shm/shmtest"
)

// Multi-process tests re-execute the test binary with a role in the
// environment (internal/proctest); TestMain runs the role instead of the
// tests. The roles: "churn" here, "hog" in hog_test.go.
func TestMain(m *testing.M) { proctest.Main(m) }

func init() { proctest.Register("churn", churnWorker) }

// churnWorker opens the store named by the environment, runs the churn
// workload and prints its statistics as JSON.
func churnWorker() int {
	mb, err := handle.Parse(os.Getenv("SHMSTORE_TEST_MAILBOX"))
	if err != nil {
		return proctest.Fail(err)
	}
	worker, _ := strconv.ParseUint(os.Getenv("SHMSTORE_TEST_WORKER"), 10, 32)
	seed, _ := strconv.ParseUint(os.Getenv("SHMSTORE_TEST_SEED"), 10, 64)
	dur, err := time.ParseDuration(os.Getenv("SHMSTORE_TEST_DURATION"))
	if err != nil {
		return proctest.Fail(err)
	}
	st, err := shm.Open("t", shm.Options{Dir: os.Getenv("SHMSTORE_TEST_DIR"), Create: shm.MustExist})
	if err != nil {
		return proctest.Fail(err)
	}
	a, err := alloc.New(st)
	if err != nil {
		return proctest.Fail(err)
	}
	h, err := a.Lease()
	if err != nil {
		return proctest.Fail(err)
	}
	// Paced so that 4 workers on 2 cores interleave finely, as they would
	// on 4 cores: most frees are then of blocks another process allocated.
	s, err := churn.Run(h, churn.Options{Mailbox: mb, Worker: worker, Duration: dur, MinSize: 16, MaxSize: 256 << 10, Seed: seed,
		PauseEvery: 64, Pause: 50 * time.Microsecond})
	if err != nil {
		return proctest.Fail(err)
	}
	h.Release()
	if err := st.Close(); err != nil {
		return proctest.Fail(err)
	}
	if err := proctest.Emit(s); err != nil {
		return proctest.Fail(err)
	}
	return 0
}

// startChurners starts n worker processes on the store in dir. They are
// killed (by pid) at cleanup if still running.
func startChurners(t *testing.T, dir string, mb handle.Handle, n int, dur time.Duration, seed uint64) []*proctest.Proc {
	t.Helper()
	var ws []*proctest.Proc
	for i := 1; i <= n; i++ {
		ws = append(ws, proctest.Start(t, "churn", proctest.Options{
			Name: "churn worker " + strconv.Itoa(i),
			Env: []string{
				"SHMSTORE_TEST_DIR=" + dir,
				"SHMSTORE_TEST_MAILBOX=" + mb.String(),
				"SHMSTORE_TEST_WORKER=" + strconv.Itoa(i),
				"SHMSTORE_TEST_SEED=" + strconv.FormatUint(seed, 10),
				"SHMSTORE_TEST_DURATION=" + dur.String(),
			},
		}))
	}
	return ws
}

// stressSetup opens a store and its mailbox; it returns the used bytes
// before the mailbox, to compare with at the end.
func stressSetup(t *testing.T) (dir string, st *shm.Store, a *alloc.Allocator, h alloc.Heap, mb handle.Handle, used0 uint64, seed uint64) {
	dir = shmtest.Dir(t)
	st, a = alloc.OpenTest(t, dir, shm.Options{RegionSize: 8 << 20, MaxSize: 1 << 30})
	h = alloc.LeaseTest(t, a)
	used0 = a.Stats().UsedBytes
	mb, err := churn.NewMailbox(h, 256)
	require.NoError(t, err)
	seed = uint64(rand.Int64())
	t.Logf("seed %d", seed)
	return
}

// sumStats waits for the workers to exit successfully and adds up their
// statistics.
func sumStats(t *testing.T, ws []*proctest.Proc) churn.Stats {
	t.Helper()
	var total churn.Stats
	for _, w := range ws {
		var s churn.Stats
		w.Result(&s)
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
		require.NoError(t, w.Wait(), "worker %d: %s", i+1, w.Stderr())
	}
	total := sumStats(t, ws)
	t.Logf("4 processes: %d allocs, %d frees, %.0f%% remote", total.Allocs, total.Frees, 100*float64(total.RemoteFrees)/float64(total.Frees))
	require.Greater(t, total.Frees, uint64(1000))
	require.GreaterOrEqual(t, float64(total.RemoteFrees)/float64(total.Frees), 0.30, "at least 30% of frees are remote")
	alloc.RequireClean(t, st, a)
	stale, err := churn.DrainMailbox(h, mb)
	require.NoError(t, err)
	require.Zero(t, stale, "no worker died: every mailbox handle is live")
	require.Equal(t, used0, a.Stats().UsedBytes, "used memory back to its starting value")
	alloc.RequireClean(t, st, a)
}

func TestMultiProcessStressKill(t *testing.T) {
	dir, st, a, h, mb, used0, seed := stressSetup(t)
	ws := startChurners(t, dir, mb, 4, 3*time.Second, seed)
	time.Sleep(time.Duration(500+rand.IntN(1000)) * time.Millisecond)
	victim := ws[0]
	killed, err := victim.Kill()
	require.NoError(t, err)
	require.True(t, killed, "the victim was killed")
	for i, w := range ws[1:] {
		require.NoError(t, w.Wait(), "worker %d: %s", i+2, w.Stderr())
	}
	total := sumStats(t, ws[1:])
	require.Greater(t, total.Frees, uint64(1000))

	_, err = st.RecoverDead()
	require.NoError(t, err)
	// A survivor that found a lock held by the victim may have recovered
	// it already; either way it was recovered exactly once.
	require.Equal(t, uint64(1), st.Header().Recovered.Load(), "the killed worker is recovered")
	require.Empty(t, st.DeadProcs())
	alloc.RequireClean(t, st, a)
	stale, err := churn.DrainMailbox(h, mb)
	require.NoError(t, err)
	require.LessOrEqual(t, stale, 1, "at most the cell the victim was handing over names a block recovery freed")
	require.Equal(t, used0, a.Stats().UsedBytes, "nothing the victim held is leaked")
	alloc.RequireClean(t, st, a)

	// Its memory is reusable: the survivors' store serves a new round.
	mb2, err := churn.NewMailbox(h, 256)
	require.NoError(t, err)
	ws = startChurners(t, dir, mb2, 2, time.Second, seed+1)
	for i, w := range ws {
		require.NoError(t, w.Wait(), "worker %d: %s", i+1, w.Stderr())
	}
	stale, err = churn.DrainMailbox(h, mb2)
	require.NoError(t, err)
	require.Zero(t, stale)
	require.Equal(t, used0, a.Stats().UsedBytes)
	alloc.RequireClean(t, st, a)
}
