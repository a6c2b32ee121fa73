//go:build linux && (amd64 || arm64)

package shmstore_test

// The harness of the multi-process tests (DESIGN.md section 10): the test
// binary is re-executed with a role in the environment, and TestMain runs
// that role instead of the tests. A role opens the store named by the
// environment, does its work, closes the store and prints its result as
// one JSON object on stdout; on error it prints to stderr and exits 1.
// The parent ends only the processes it started, by pid, and removes the
// store with the test (shmtest.Dir).

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/internal/layers"
	"github.com/shmstore/shmstore/reclaim"
	"github.com/shmstore/shmstore/shm/shmtest"
)

const (
	roleEnv   = "SHMSTORE_TEST_ROLE"
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
}

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	os.Exit(m.Run())
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

// runRole runs role in this (re-executed) process and returns the exit
// status.
func runRole(role string) int {
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "%s (pid %d): %v\n", role, os.Getpid(), err)
		return 1
	}
	fn, ok := roles[role]
	if !ok {
		return fail(fmt.Errorf("unknown role"))
	}
	var w roleEnvironment
	n, err := w.int(workerEnv)
	if err != nil {
		return fail(err)
	}
	w.Worker = int(n)
	if w.Seed, err = strconv.ParseUint(os.Getenv(seedEnv), 10, 64); err != nil {
		return fail(fmt.Errorf("environment %s: %w", seedEnv, err))
	}
	st, err := shmstore.Open(storeName, storeOptions(os.Getenv(dirEnv), shmstore.MustExist))
	if err != nil {
		return fail(err)
	}
	fmt.Fprintln(os.Stderr, attachedMark) // the parent knows it attached (and needs recovery if killed)
	res, err := fn(st, w)
	if cerr := st.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close: %w", cerr)
	}
	if err != nil {
		return fail(err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return fail(err)
	}
	return 0
}

// storeOptions are the options of every multi-process test store.
func storeOptions(dir string, create shmstore.CreateMode) shmstore.Options {
	return shmstore.Options{Dir: dir, RegionSize: 16 << 20, MaxSize: 512 << 20, Create: create}
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

// proc is a worker process this test started.
type proc struct {
	role   string
	worker int
	cmd    *exec.Cmd
	out    bytes.Buffer
	errb   bytes.Buffer
	killed bool // the test SIGKILLed it
	err    error
	exited bool
}

// startProc starts the test binary as role with the given worker number
// and extra environment. It is SIGKILLed (by pid) at cleanup if still
// running.
func startProc(t *testing.T, dir, role string, worker int, seed uint64, env ...string) *proc {
	t.Helper()
	return startProcWith(t, dir, role, worker, seed, nil, env...)
}

// startProcWith is startProc with setup, if not nil, called on the command
// before it starts (for pipes of its own).
func startProcWith(t *testing.T, dir, role string, worker int, seed uint64, setup func(*exec.Cmd), env ...string) *proc {
	t.Helper()
	p := &proc{role: role, worker: worker, cmd: exec.Command(os.Args[0], "-test.run=^$")}
	p.cmd.Env = append(os.Environ(), roleEnv+"="+role, dirEnv+"="+dir,
		workerEnv+"="+strconv.Itoa(worker), seedEnv+"="+strconv.FormatUint(seed, 10))
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.errb
	if setup != nil {
		setup(p.cmd)
	}
	require.NoError(t, p.cmd.Start())
	t.Cleanup(func() {
		if !p.exited {
			_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
			_ = p.cmd.Wait()
		}
	})
	return p
}

// wait waits for p to exit and records how.
func (p *proc) wait() error {
	if !p.exited {
		p.err = p.cmd.Wait()
		p.exited = true
	}
	return p.err
}

// kill SIGKILLs p (by pid) and reaps it. It reports whether p was still
// running: if it had exited on its own already, its status stands.
func (p *proc) kill() (bool, error) {
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		return false, err
	}
	err := p.wait()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			p.killed = true
			return true, nil
		}
	}
	return false, nil
}

// result waits for p to exit successfully and decodes its JSON result
// into out.
func (p *proc) result(t *testing.T, out any) {
	t.Helper()
	require.NoError(t, p.wait(), "%s %d (pid %d) failed; stderr:\n%s", p.role, p.worker, p.cmd.Process.Pid, p.errb.String())
	require.NoError(t, json.Unmarshal(p.out.Bytes(), out), "%s %d said: %s\nstderr:\n%s", p.role, p.worker, p.out.String(), p.errb.String())
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
	return st.Stats().UsedBytes, held
}

// requireQuiet checks that after every worker exited, once the dead are
// recovered, no slot is mid-transaction or holds a lock, and no dead
// process owns a slot.
func requireQuiet(t *testing.T, st *shmstore.Store) {
	t.Helper()
	_, err := st.Recover()
	require.NoError(t, err)
	require.Empty(t, layers.Of(st).Shm.DeadProcs(), "every dead process is recovered")
	for _, s := range layers.Of(st).Engine.Slots() {
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
