//go:build linux && (amd64 || arm64)

package e2e

// Reclamation across processes: rounds of "insert many keys, delete them
// all" from two processes; after every round the store uses what it used
// before it (DESIGN.md sections 4 and 8: nothing leaks, unlinked memory is
// freed once no transaction can see it).

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/internal/layers"
	"github.com/shmstore/shmstore/reclaim"
	"github.com/shmstore/shmstore/txn"
)

const (
	reclaimDict      = "r"
	reclaimRoundEnv  = "SHMSTORE_RECLAIM_ROUND"
	reclaimKeysEnv   = "SHMSTORE_RECLAIM_KEYS" // per worker
	reclaimBatchEnv  = "SHMSTORE_RECLAIM_BATCH"
	reclaimWorkers   = 2
	reclaimRounds    = 10
	reclaimTotalKeys = 100_000 // per round, over all workers
	reclaimBatch     = 1000    // keys per Update
)

type reclaimWorkerResult struct {
	Insert   time.Duration `json:"insert"`
	Delete   time.Duration `json:"delete"`
	PeakUsed uint64        `json:"peak_used"` // used bytes after this worker's inserts
	Aborts   uint64        `json:"aborts"`    // of this worker's slots
}

func reclaimKey(round, worker, i int) string { return fmt.Sprintf("r%d-w%d-%06d", round, worker, i) }

// reclaimWorker inserts its keys in batches, one Update each, then deletes
// them in batches.
func reclaimWorker(st *shmstore.Store, w roleEnvironment) (any, error) {
	round, err := w.int(reclaimRoundEnv)
	if err != nil {
		return nil, err
	}
	keys, err := w.int(reclaimKeysEnv)
	if err != nil {
		return nil, err
	}
	batch, err := w.int(reclaimBatchEnv)
	if err != nil {
		return nil, err
	}
	var res reclaimWorkerResult
	run := func(del bool) error {
		for lo := 0; lo < int(keys); lo += int(batch) {
			hi := min(lo+int(batch), int(keys))
			err := st.Update(func(tx *shmstore.Tx) error {
				d, err := tx.Root().GetDict(reclaimDict)
				if err != nil {
					return err
				}
				for i := lo; i < hi; i++ {
					k := reclaimKey(int(round), w.Worker, i)
					if del {
						err = d.Delete(k)
					} else {
						err = d.Set(k, "value-"+k)
					}
					if err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("round %d, delete %v, keys %d to %d: %w", round, del, lo, hi, err)
			}
		}
		return nil
	}
	t := time.Now()
	if err := run(false); err != nil {
		return nil, err
	}
	res.Insert = time.Since(t)
	stats, err := st.Stats()
	if err != nil {
		return nil, err
	}
	res.PeakUsed = stats.UsedBytes
	t = time.Now()
	if err := run(true); err != nil {
		return nil, err
	}
	res.Delete = time.Since(t)
	for _, s := range layers.Of(st).Engine.Slots() {
		if s.PID == uint32(os.Getpid()) {
			res.Aborts += s.Aborts
		}
	}
	return res, nil
}

// TestReclamation: 10 rounds of 100k keys inserted and deleted by two
// processes (each its half, 1000 keys per Update). After each round, once
// the workers exited and reclamation is driven, used memory is back within
// 10% of where it started.
func TestReclamation(t *testing.T) {
	seed := testSeed(t)
	dir, st := newStore(t)
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		_, err := tx.Root().Dict(reclaimDict)
		return err
	}))
	used0, held := driveReclamation(t, st)
	require.Zero(t, held)
	t.Logf("baseline: %d bytes used", used0)
	perWorker := reclaimTotalKeys / reclaimWorkers
	start := time.Now()
	for round := 0; round < reclaimRounds; round++ {
		rs := time.Now()
		var ws []*proc
		for w := 1; w <= reclaimWorkers; w++ {
			ws = append(ws, startProc(t, dir, "reclaim-worker", w, seed,
				reclaimRoundEnv+"="+strconv.Itoa(round),
				reclaimKeysEnv+"="+strconv.Itoa(perWorker),
				reclaimBatchEnv+"="+strconv.Itoa(reclaimBatch)))
		}
		var peak uint64
		var ins, del []time.Duration
		for _, p := range ws {
			var res reclaimWorkerResult
			p.Result(&res)
			peak = max(peak, res.PeakUsed)
			ins = append(ins, res.Insert.Round(time.Millisecond))
			del = append(del, res.Delete.Round(time.Millisecond))
		}
		workers := time.Since(rs)
		require.NoError(t, st.View(func(tx *shmstore.Tx) error {
			d, err := tx.Root().GetDict(reclaimDict)
			if err != nil {
				return err
			}
			n, err := d.Len()
			if err == nil && n != 0 {
				err = fmt.Errorf("%d keys left", n)
			}
			return err
		}))
		before := mustStats(t, st).UsedBytes
		used, held := driveReclamation(t, st)
		s := mustStats(t, st)
		t.Logf("round %d: workers %v (insert %v, delete %v), peak %d bytes used; when they exited %d; after driving reclamation %d (baseline %d, %+d), %d retired entries held, %d regions",
			round, workers.Round(time.Millisecond), ins, del, peak, before, used, used0, int64(used)-int64(used0), held, s.Regions)
		require.Zero(t, held, "round %d: retired memory held back on a quiet store", round)
		require.InDelta(t, float64(used0), float64(used), float64(used0)/10,
			"round %d: used bytes %d, baseline %d (peak %d)", round, used, used0, peak)
		requireQuiet(t, st)
	}
	t.Logf("%d rounds of %d keys in %v", reclaimRounds, reclaimTotalKeys, time.Since(start).Round(time.Millisecond))
	require.NoError(t, st.Check())
}

// TestReclamationPooledSlot: memory retired by a transaction whose slot
// then sits idle in the engine's pool is freed all the same, while the
// process goes on with its other slot.
//
// A reader keeps slot A busy, so a writer leases a second slot B and
// deletes a Dict there: its collection cannot free it yet (the reader's
// snapshot may still see it). The writer returns B to the pool, then the
// reader returns A; the pool hands out A (last in, first out) from then
// on, so only A's collections can free what B's ring holds (by adopting
// idle rings). Before reclaim adopted idle rings, found by
// TestBankInProcess, B's ring was never collected until Close.
//
// The Dict is kept small enough (40 keys) that no commit grows a redo log
// chunk: a chunk stays with its slot (64 KiB) and would count as used.
func TestReclamationPooledSlot(t *testing.T) {
	_, st := newStore(t)
	used0, held := driveReclamation(t, st)
	require.Zero(t, held)
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		d, err := tx.Root().Dict("big")
		if err != nil {
			return err
		}
		for i := 0; i < 40; i++ {
			if err := d.Set(i, fmt.Sprintf("value %d %0900d", i, i)); err != nil {
				return err
			}
		}
		return nil
	}))
	usedBig := mustStats(t, st).UsedBytes

	inView, endView, viewDone := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		viewDone <- st.View(func(tx *shmstore.Tx) error {
			close(inView)
			<-endView
			return nil
		})
	}()
	<-inView
	require.NoError(t, st.Delete("big")) // on a second slot, while the View holds the first
	close(endView)
	require.NoError(t, <-viewDone)

	used, held := driveReclamation(t, st)
	for _, s := range layers.Of(st).Engine.Slots() {
		t.Logf("slot %d: leased %v, %d commits, %d retired batches held (oldest epoch %d)", s.Slot, s.Leased, s.Commits, s.Retired, s.Oldest)
	}
	t.Logf("used bytes: baseline %d, with the Dict %d, after deleting it and driving reclamation %d; %d retired batches held", used0, usedBig, used, held)
	require.Zero(t, held, "nothing can see the deleted Dict any more")
	require.Equal(t, used0, used, "the deleted Dict is freed")
	require.NoError(t, st.Check())
}

// fullRingScenario: a commit whose retire ring is full collects it from
// inside the commit (reclaim.Retire, called by txn's commit after the
// stores are applied and before the locks are released). When what it may
// free by then lists an unlinked container with children, the container's
// finalizer runs its small transaction through txn.Engine.RunOn on the
// same slot, and so on the very transaction that is still committing.
//
// Setup: View 1 holds its snapshot on slot A while this goroutine, on slot
// B, commits reclaim.RingCap Updates that each replace a Dict holding a
// Counter (each retires one batch listing the old Dict; none can be freed
// while View 1 runs): B's ring is full. View 1 ends; View 2 takes slot A
// (the engine's pool is last in, first out) and holds it, so that the
// next Update runs on B: its Retire finds the ring full, and everything in
// it free to go (View 2 started after those commits).
func fullRingScenario(st *shmstore.Store) error {
	replace := func(i int) error {
		return st.Update(func(tx *shmstore.Tx) error {
			d, err := tx.NewDict()
			if err != nil {
				return err
			}
			c, err := d.Counter("c") // a child: finalizing d releases it in a transaction
			if err != nil {
				return err
			}
			if err := c.AddBlind(int64(i)); err != nil {
				return err
			}
			return tx.Root().Set("x", d)
		})
	}
	hold := func() (release func() error) {
		in, end, done := make(chan struct{}), make(chan struct{}), make(chan error)
		go func() {
			done <- st.View(func(tx *shmstore.Tx) error {
				close(in)
				<-end
				return nil
			})
		}()
		<-in
		return func() error { close(end); return <-done }
	}
	if err := replace(0); err != nil {
		return err
	}
	release1 := hold()
	for i := 1; i <= reclaim.RingCap; i++ {
		if err := replace(i); err != nil {
			return err
		}
	}
	held := 0
	for _, s := range layers.Of(st).Engine.Slots() {
		held += s.Retired
	}
	if held != reclaim.RingCap {
		return fmt.Errorf("setup: %d retired batches held, want a full ring (%d)", held, reclaim.RingCap)
	}
	if err := release1(); err != nil {
		return err
	}
	release2 := hold()
	fmt.Fprintln(os.Stderr, "the ring is full; the next commit collects it")
	if err := replace(reclaim.RingCap + 1); err != nil {
		return err
	}
	if err := release2(); err != nil {
		return err
	}
	if err := replace(reclaim.RingCap + 2); err != nil {
		return err
	}
	n, err := st.Export("x/c")
	if err != nil {
		return err
	}
	if n != int64(reclaim.RingCap+2) {
		return fmt.Errorf("x/c is %v, want %d", n, reclaim.RingCap+2)
	}
	return st.Check()
}

func fullRingWorker(st *shmstore.Store, _ roleEnvironment) (any, error) {
	return "ok", fullRingScenario(st)
}

// TestReclamationFullRingAtCommit runs fullRingScenario in a process of
// its own (so that a hang there cannot take the test binary with it): the
// commits complete, and the store checks clean.
func TestReclamationFullRingAtCommit(t *testing.T) {
	dir, st := newStore(t)
	p := startProc(t, dir, "full-ring", 1, 0)
	select {
	case <-p.Done():
		require.NoError(t, p.Wait(), "stderr:\n%s", p.Stderr())
	case <-time.After(10 * time.Second): // a liveness guard: the scenario takes milliseconds
		_, err := p.Kill()
		require.NoError(t, err)
		t.Errorf("the scenario hangs (killed after 10 s); its stderr:\n%s", p.Stderr())
		// What the hung commit leaves, once its process is recovered.
		_, err = st.Recover()
		require.NoError(t, err)
	}
	requireQuiet(t, st)
	_, held := driveReclamation(t, st)
	require.Zero(t, held)
	require.NoError(t, st.Check())
	within(t, 30*time.Second, "an Update of what the scenario wrote", func() error { return st.Set("x", 1) })
	require.NoError(t, st.Check())
}

// mergeWorker overwrites a key of its own with a new String, one Update
// after another, until the deadline: every commit retires a batch (the old
// entry and its blob). While the test holds a View open, nothing can be
// freed, so the worker's retire ring fills every RingCap commits and the
// commit's Retire merges it.
func mergeWorker(st *shmstore.Store, w roleEnvironment) (any, error) {
	until, err := w.int(untilEnv)
	if err != nil {
		return nil, err
	}
	key := fmt.Sprintf("m%d", w.Worker)
	n := 0
	for ; time.Now().UnixNano() < until; n++ {
		if err := st.Set(key, fmt.Sprintf("value %d", n)); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// TestReclamationKillMidMerge: a process killed while its commit merges
// a full retire ring leaks nothing.
//
// A worker commits one retiring Update after another while the test holds
// a View open, so that the worker's ring fills every reclaim.RingCap
// commits and the commit's Retire merges it into one new batch, allocated
// through the slot's heap (reclaim's mergeAndAppend). The test stops the
// worker (SIGSTOP) at random moments until it catches it with that merge
// batch in its allocation log (the only block of its size class the
// workload allocates), and SIGKILLs it there. After recovery, the store
// must account for every block.
func TestReclamationKillMidMerge(t *testing.T) {
	seed := testSeed(t)
	dir, st := newStore(t)
	used0, held := driveReclamation(t, st)
	require.Zero(t, held)
	mergeSize := batchClassSize(t, st)
	until := time.Now().Add(time.Minute)
	env := untilEnv + "=" + strconv.FormatInt(until.UnixNano(), 10)
	w := startProc(t, dir, "merge-worker", 1, seed, env)
	pid := w.Pid()
	rng := rand.New(rand.NewPCG(seed, 0x6d65726765))
	probes, caught := 0, false
	for deadline := time.Now().Add(40 * time.Second); !caught && time.Now().Before(deadline); {
		// A long reader for a while: nothing retired meanwhile can be
		// freed, so the worker's ring fills and merges again and again.
		release, done := make(chan struct{}), make(chan error)
		go func() { done <- st.View(func(tx *shmstore.Tx) error { <-release; return nil }) }()
		for j := 0; j < 20 && !caught; j++ {
			time.Sleep(time.Duration(rng.IntN(500)) * time.Microsecond)
			require.NoError(t, w.Signal(syscall.SIGSTOP))
			waitStopped(t, pid)
			probes++
			if loggedBlockOfSize(st, mergeSize) {
				require.NoError(t, w.Signal(syscall.SIGKILL))
				caught = true
			} else {
				require.NoError(t, w.Signal(syscall.SIGCONT))
			}
		}
		close(release)
		require.NoError(t, <-done)
	}
	if !caught {
		t.Skipf("never caught the worker mid-merge in %d probes", probes)
	}
	killed, err := w.Kill()
	require.NoError(t, err)
	require.True(t, killed)
	t.Logf("caught the worker with a merge batch in its allocation log after %d probes, and killed it", probes)
	requireQuiet(t, st)
	require.NoError(t, st.Delete("m1"))
	used, held := driveReclamation(t, st)
	t.Logf("used %d bytes (baseline %d), %d retired batches held", used, used0, held)
	if err := st.Check(); err != nil {
		t.Logf("unaccounted blocks:\n%s", describeLeaks(st))
		t.Fatal(err)
	}
	require.Zero(t, held)
	require.Equal(t, used0, used)
}

// batchClassSize is the size of the block a merge batch gets: the class of
// a batch with room for a whole ring (8-byte header, 16 bytes an entry).
func batchClassSize(t *testing.T, st *shmstore.Store) int {
	t.Helper()
	var n int
	require.NoError(t, layers.Of(st).Engine.WithTx(func(tx *txn.Tx) error {
		h, _, err := tx.Heap().Alloc(8 + 16*reclaim.RingCap)
		if err != nil {
			return err
		}
		b, err := layers.Of(st).Alloc.Resolve(h) // the whole block, as its class rounds it
		if err != nil {
			return err
		}
		n = len(b)
		tx.Heap().FreeLog()
		return nil
	}))
	return n
}

// loggedBlockOfSize reports whether some slot's allocation log holds a
// block of n bytes.
func loggedBlockOfSize(st *shmstore.Store, n int) bool {
	found := false
	layers.Of(st).Alloc.EachLogged(func(h handle.Handle) {
		if b, err := layers.Of(st).Alloc.Resolve(h); err == nil && len(b) == n {
			found = true
		}
	})
	return found
}

// waitStopped waits until process pid is stopped (state T in /proc).
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	for i := 0; ; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		require.NoError(t, err)
		// pid (comm) state ...: the state follows the last ')'.
		s := string(b)
		if k := strings.LastIndexByte(s, ')'); k >= 0 && k+2 < len(s) && s[k+2] == 'T' {
			return
		}
		require.Less(t, i, 10000, "process %d does not stop", pid)
		time.Sleep(20 * time.Microsecond)
	}
}
