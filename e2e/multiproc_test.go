//go:build linux && (amd64 || arm64)

package e2e

// The multi-process tests' roles and helpers (DESIGN.md section 10): the
// test binary is re-executed with a role in the environment
// (internal/proctest), and TestMain runs that role instead of the tests.
// A role here opens the store named by the environment, does its work,
// closes the store and prints its result as one JSON object on stdout; on
// error it prints to stderr and exits 1. The test ends only the processes
// it started, by pid, and removes the store with the test (shmtest.Dir).

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/internal/layers"
	"github.com/shmstore/shmstore/internal/proctest"
	"github.com/shmstore/shmstore/reclaim"
	"github.com/shmstore/shmstore/shm/shmtest"
	"github.com/shmstore/shmstore/txn"
)

const (
	dirEnv    = "SHMSTORE_TEST_DIR"
	workerEnv = "SHMSTORE_TEST_WORKER"
	seedEnv   = "SHMSTORE_TEST_SEED"
	// storeName is the name of every test store (each test has its own
	// directory).
	storeName = "t"
	// attachedMark is what a role prints on stderr once it has attached.
	attachedMark = "attached"
)

// roles maps a role name to what the re-executed binary does.
var roles = map[string]func(st *shmstore.Store, w roleEnvironment) (any, error){
	"bank-worker":    bankWorker,
	"bank-summer":    bankSummer,
	"lin-worker":     linWorker,
	"reclaim-worker": reclaimWorker,
	"full-ring":      fullRingWorker,
	"merge-worker":   mergeWorker,
	"refill-worker":  refillWorker,
}

func TestMain(m *testing.M) { proctest.Main(m) }

func init() {
	for role, fn := range roles {
		proctest.Register(role, func() int { return runRole(fn) })
	}
}

// roleEnvironment is what every role reads from its environment.
type roleEnvironment struct {
	Worker int
	Seed   uint64
}

func (w roleEnvironment) int(name string) (int64, error) {
	n, err := strconv.ParseInt(os.Getenv(name), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("environment %s=%q: %w", name, os.Getenv(name), err)
	}
	return n, nil
}

// runRole runs the role fn in this (re-executed) process and returns the
// exit status.
func runRole(fn func(st *shmstore.Store, w roleEnvironment) (any, error)) int {
	var w roleEnvironment
	n, err := w.int(workerEnv)
	if err != nil {
		return proctest.Fail(err)
	}
	w.Worker = int(n)
	if w.Seed, err = strconv.ParseUint(os.Getenv(seedEnv), 10, 64); err != nil {
		return proctest.Fail(fmt.Errorf("environment %s: %w", seedEnv, err))
	}
	st, err := shmstore.Open(storeName, storeOptions(os.Getenv(dirEnv), shmstore.MustExist))
	if err != nil {
		return proctest.Fail(err)
	}
	fmt.Fprintln(os.Stderr, attachedMark) // the parent knows it attached (and needs recovery if killed)
	res, err := fn(st, w)
	if cerr := st.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	if err != nil {
		return proctest.Fail(err)
	}
	if err := proctest.Emit(res); err != nil {
		return proctest.Fail(err)
	}
	return 0
}

// storeOptions are the options of every multi-process test store.
func storeOptions(dir string, create shmstore.CreateMode) shmstore.Options {
	return shmstore.Options{Dir: dir, RegionSize: 16 << 20, MaxSize: 512 << 20, Create: create}
}

// mustStats is st.Stats, failing the test on an error.
func mustStats(tb testing.TB, st *shmstore.Store) shmstore.Stats {
	tb.Helper()
	s, err := st.Stats()
	require.NoError(tb, err)
	return s
}

// newStore makes a store in a fresh directory (removed with the test) and
// opens it in the test process.
func newStore(t *testing.T) (string, *shmstore.Store) {
	t.Helper()
	dir := shmtest.Dir(t)
	st, err := shmstore.Open(storeName, storeOptions(dir, shmstore.MustCreate))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return dir, st
}

// testSeed is the seed of a randomized test: SHMSTORE_TEST_SEED if set (to
// replay a failure), else random. It is logged.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := rand.Uint64()
	if s := os.Getenv(seedEnv); s != "" {
		var err error
		seed, err = strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "%s", seedEnv)
	}
	t.Logf("seed %d (replay with %s=%d)", seed, seedEnv, seed)
	return seed
}

// proc is a worker process a test started.
type proc = proctest.Proc

// startProc starts the test binary as role with the given worker number
// and extra environment (internal/proctest: it is SIGKILLed, by pid, at
// cleanup if still running).
func startProc(t *testing.T, dir, role string, worker int, seed uint64, env ...string) *proctest.Proc {
	t.Helper()
	return startProcWith(t, dir, role, worker, seed, proctest.Options{}, env...)
}

// startProcWith is startProc with options of its own (extra files).
func startProcWith(t *testing.T, dir, role string, worker int, seed uint64, o proctest.Options, env ...string) *proctest.Proc {
	t.Helper()
	o.Name = fmt.Sprintf("%s %d", role, worker)
	o.Env = append([]string{dirEnv + "=" + dir,
		workerEnv + "=" + strconv.Itoa(worker), seedEnv + "=" + strconv.FormatUint(seed, 10)}, env...)
	return proctest.Start(t, role, o)
}

// gcKey is a root key the test process overwrites to drive reclamation.
const gcKey = "gc"

// driveReclamation runs small Updates in the test process, each of which
// overwrites gcKey and so retires the previous entry; commits collect
// their slot's retire ring once it holds a batch's worth (txn's
// collectBatch) and then adopt the rings of idle slots and of slots no
// process owns. It stops once no slot holds retired memory back (or after
// a bounded number of rounds, past txn's every-256th-commit collection)
// and returns the used bytes then and how many retire-ring entries are
// still held.
func driveReclamation(t *testing.T, st *shmstore.Store) (used uint64, held int) {
	t.Helper()
	for i := 0; i < 1024; i++ {
		require.NoError(t, st.Set(gcKey, fmt.Sprintf("gc-%06d", i)))
		held = 0
		for _, s := range layers.Of(st).Engine.Slots() {
			held += s.Retired
		}
		if held == 0 && i >= 3 {
			break
		}
	}
	return mustStats(t, st).UsedBytes, held
}

// requireQuiet checks that, once the dead are recovered, no slot is
// mid-transaction or holds a lock, and no dead process owns a slot. Live
// workers parked in Retry publish a snapshot for a moment while they
// announce themselves again, so the slots are sampled until they are
// quiet, for a few seconds at most; the last sample is what fails.
func requireQuiet(t *testing.T, st *shmstore.Store) {
	t.Helper()
	_, err := st.Recover()
	require.NoError(t, err)
	require.Empty(t, layers.Of(st).Shm.DeadProcs(), "every dead process is recovered")
	quiet := func(s txn.SlotInfo) bool {
		return s.State == "idle" && s.Locks == 0 && !s.Active && (s.Proc < 0 || s.Alive)
	}
	slots := layers.Of(st).Engine.Slots()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if !slices.ContainsFunc(slots, func(s txn.SlotInfo) bool { return !quiet(s) }) {
			break
		}
		time.Sleep(5 * time.Millisecond)
		slots = layers.Of(st).Engine.Slots()
	}
	for _, s := range slots {
		require.Equal(t, "idle", s.State, "slot %d: %+v", s.Slot, s)
		require.Zero(t, s.Locks, "slot %d holds locks: %+v", s.Slot, s)
		require.False(t, s.Active, "slot %d is in a transaction: %+v", s.Slot, s)
		if s.Proc >= 0 {
			require.True(t, s.Alive, "slot %d is owned by a dead process: %+v", s.Slot, s)
		}
	}
}

// within runs fn, failing the test if it does not return within d: a
// liveness guard against a lock that stays held (a hang), not a speed
// assertion; d is generous.
func within(t *testing.T, d time.Duration, what string, fn func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		require.NoError(t, err, what)
	case <-time.After(d):
		t.Fatalf("%s did not finish within %v: a lock stays held?", what, d)
	}
}

// envDuration reads a duration from the environment, or returns def.
func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	d, err := time.ParseDuration(s)
	require.NoError(t, err, "%s", name)
	return d
}

// classDiff describes how the blocks in use changed, class by class.
func classDiff(a, b alloc.Stats) string {
	used := func(s alloc.Stats) map[uint32]uint64 {
		m := map[uint32]uint64{}
		for _, c := range s.Classes {
			m[c.Size] = c.BlocksUsed
		}
		return m
	}
	ua, ub := used(a), used(b)
	var out []string
	for size, n := range ub {
		if ua[size] != n {
			out = append(out, fmt.Sprintf("  %6d-byte blocks: %d -> %d", size, ua[size], n))
		}
	}
	for size, n := range ua {
		if _, ok := ub[size]; !ok {
			out = append(out, fmt.Sprintf("  %6d-byte blocks: %d -> 0", size, n))
		}
	}
	sort.Strings(out)
	out = append(out, fmt.Sprintf("  large blocks: %d (%d bytes) -> %d (%d bytes)", a.LargeBlocks, a.LargeBytes, b.LargeBlocks, b.LargeBytes))
	return strings.Join(out, "\n")
}

// describeLeaks lists the blocks Check would call leaked (allocated, but
// neither reachable, retired, logged nor a redo-log chunk), each with its
// size and first words, and says which look like retire batches (magic
// "RBAT"; a merge batch has room for a whole ring).
func describeLeaks(st *shmstore.Store) string {
	ac := layers.Of(st).Space.Account()
	owned := map[handle.Handle]bool{}
	layers.Of(st).Alloc.EachLogged(func(h handle.Handle) { owned[h] = true })
	layers.Of(st).Engine.EachChunk(func(h handle.Handle) { owned[h] = true })
	var out []string
	layers.Of(st).Alloc.EachAllocated(func(h handle.Handle) {
		if ac.Reachable[h] || ac.Retired[h] || owned[h] {
			return
		}
		b, err := layers.Of(st).Alloc.Resolve(h)
		if err != nil {
			out = append(out, fmt.Sprintf("  %v: %v", h, err))
			return
		}
		var words []string
		for off := 0; off+8 <= len(b) && off < 48; off += 8 {
			words = append(words, fmt.Sprintf("%#x", binary.LittleEndian.Uint64(b[off:])))
		}
		what := ""
		if len(b) >= 8 && binary.LittleEndian.Uint32(b[4:]) == 0x54414252 {
			n := binary.LittleEndian.Uint32(b[0:])
			what = fmt.Sprintf(" a retire batch of %d entries (a ring holds %d)", n, reclaim.RingCap)
		}
		out = append(out, fmt.Sprintf("  %v: %d bytes%s: %s", h, len(b), what, strings.Join(words, " ")))
	})
	if len(out) == 0 {
		return "  none"
	}
	return strings.Join(out, "\n")
}
