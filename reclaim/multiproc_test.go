package reclaim

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
)

// Multi-process tests re-execute the test binary with a role in the
// environment; TestMain runs the role instead of the tests.
const (
	roleEnv = "SHMSTORE_TEST_ROLE"
	dirEnv  = "SHMSTORE_TEST_DIR"
)

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "die-mid-merge":
		os.Exit(dieMidMerge())
	}
	os.Exit(m.Run())
}

// dieReport is what the dying child prints before it dies.
type dieReport struct {
	Slot    int
	Blocks  []handle.Handle
	Batch   handle.Handle
	Pending handle.Handle
}

// dieMidMerge attaches, enters a transaction at rv 1, retires a batch at
// epoch 5, then takes its ring's lock and dies in the middle of a merge:
// a merge batch in pending that the ring does not list yet. It exits
// without closing: the kernel drops its liveness lock, so it is dead with
// an active slot, a held ring lock and a half-done merge.
func dieMidMerge() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "child:", err); return 1 }
	o := testOptions
	o.Dir, o.Create = os.Getenv(dirEnv), shm.MustExist
	st, err := shm.Open("t", o)
	if err != nil {
		return fail(err)
	}
	a, err := alloc.New(st)
	if err != nil {
		return fail(err)
	}
	r, err := New(st, a)
	if err != nil {
		return fail(err)
	}
	h, err := a.Lease()
	if err != nil {
		return fail(err)
	}
	rep := dieReport{Slot: h.Slot()}
	r.Enter(h.Slot(), 1)
	for i := 0; i < 3; i++ {
		hd, _, err := h.Alloc(100)
		if err != nil {
			return fail(err)
		}
		rep.Blocks = append(rep.Blocks, hd)
	}
	if rep.Batch, err = r.NewBatch(h, blockEntries(rep.Blocks...)); err != nil {
		return fail(err)
	}
	h.ForgetLog()
	if err := r.Retire(h, rep.Batch, 5); err != nil {
		return fail(err)
	}
	if rep.Pending, err = r.NewBatch(h, []Entry{{rep.Batch, KindBatch}}); err != nil {
		return fail(err)
	}
	rp := &r.part(h.Slot()).ring
	r.lockRing(rp)
	rp.pending.Store(uint64(rep.Pending))
	h.ForgetLog() // the merge batch is out of the log: only pending names it
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		return fail(err)
	}
	return 0 // no Close, no Unlock: dead
}

// A process dies with an active slot, its ring lock held and a merge half
// done. Until it is recovered it holds reclamation back (its rv counts);
// recovery makes its slot quiescent and repairs its ring, and the next
// Collect adopts and frees what it retired. Nothing leaks.
func TestDeadProcessRecovered(t *testing.T) {
	e := newEnv(t)
	h := e.lease()
	used0 := e.used()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"=die-mid-merge", dirEnv+"="+filepath.Dir(e.st.Dir()))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	require.NoError(t, err)
	var rep dieReport
	require.NoError(t, json.Unmarshal(out, &rep))

	require.Len(t, e.st.DeadProcs(), 1)
	rv, ok := e.r.Active(rep.Slot)
	require.True(t, ok, "a dead process's slot counts until it is recovered")
	require.Equal(t, uint64(1), rv)
	require.Equal(t, uint64(1), e.r.MinActive())
	n, oldest := e.r.Held(rep.Slot)
	require.Equal(t, 1, n)
	require.Equal(t, uint64(5), oldest)
	freed, err := e.r.Collect(h)
	require.NoError(t, err)
	require.Zero(t, freed, "the dead slot is not recovered: its ring stays")
	n, _ = e.r.Held(rep.Slot)
	require.Equal(t, 1, n)
	e.requireLive(append(rep.Blocks, rep.Batch, rep.Pending)...)

	recovered, err := e.st.RecoverDead()
	require.NoError(t, err)
	require.Equal(t, 1, recovered)
	_, ok = e.r.Active(rep.Slot)
	require.False(t, ok)
	rp := &e.r.part(rep.Slot).ring
	require.Zero(t, rp.mu.Holder(), "the dead holder's ring lock was taken over")
	require.Zero(t, rp.pending.Load())
	e.requireFreed(rep.Pending) // the ring did not list it
	n, _ = e.r.Held(rep.Slot)
	require.Equal(t, 1, n, "recovery leaves the ring for a collector")

	freed, err = e.r.Collect(h)
	require.NoError(t, err)
	require.Equal(t, 1, freed)
	e.requireFreed(append(rep.Blocks, rep.Batch)...)
	require.Zero(t, e.held())
	require.Equal(t, used0, e.used())
	e.requireClean()
}
