package reclaim

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/internal/proctest"
	"github.com/shmstore/shmstore/shm"
)

// Multi-process tests re-execute the test binary with a role in the
// environment (internal/proctest); TestMain runs the role instead of the
// tests. dirEnv names the directory of the store.
const dirEnv = "SHMSTORE_TEST_DIR"

func TestMain(m *testing.M) { proctest.Main(m) }

func init() { proctest.Register("die-mid-merge", dieMidMerge) }

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
	o := testOptions
	o.Dir, o.Create = os.Getenv(dirEnv), shm.MustExist
	st, err := shm.Open("t", o)
	if err != nil {
		return proctest.Fail(err)
	}
	a, err := alloc.New(st)
	if err != nil {
		return proctest.Fail(err)
	}
	r, err := New(st, a)
	if err != nil {
		return proctest.Fail(err)
	}
	h, err := a.Lease()
	if err != nil {
		return proctest.Fail(err)
	}
	rep := dieReport{Slot: h.Slot()}
	r.Enter(h.Slot(), 1)
	for i := 0; i < 3; i++ {
		hd, _, err := h.Alloc(100)
		if err != nil {
			return proctest.Fail(err)
		}
		rep.Blocks = append(rep.Blocks, hd)
	}
	if rep.Batch, err = r.NewBatch(h, blockEntries(rep.Blocks...)); err != nil {
		return proctest.Fail(err)
	}
	h.ForgetLog()
	if err := r.Retire(h, rep.Batch, 5); err != nil {
		return proctest.Fail(err)
	}
	if rep.Pending, err = r.NewBatch(h, []Entry{{rep.Batch, KindBatch}}); err != nil {
		return proctest.Fail(err)
	}
	rp := &r.part(h.Slot()).ring
	r.lockRing(rp)
	rp.pending.Store(uint64(rep.Pending))
	h.ForgetLog() // the merge batch is out of the log: only pending names it
	if err := proctest.Emit(rep); err != nil {
		return proctest.Fail(err)
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

	p := proctest.Start(t, "die-mid-merge", proctest.Options{Env: []string{dirEnv + "=" + filepath.Dir(e.st.Dir())}})
	var rep dieReport
	p.Result(&rep)

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
