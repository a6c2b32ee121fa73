package reclaim

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
	"github.com/shmstore/shmstore/shm/shmtest"
)

// testOptions keep stores small: few slots (MinActive scans them all) and
// small regions.
var testOptions = shm.Options{RegionSize: 4 << 20, MaxSize: 64 << 20, Slots: 16, SlotsPerProc: 8}

// env is one attached process's view of a test store.
type env struct {
	t  testing.TB
	st *shm.Store
	a  *alloc.Allocator
	r  *Reclaimer
}

// openEnv opens (creating) the store in dir with an allocator and a
// reclaimer; the store is closed when the test ends, unless the test
// closed it.
func openEnv(t testing.TB, dir string) *env {
	t.Helper()
	o := testOptions
	o.Dir = dir
	st, err := shm.Open("t", o)
	require.NoError(t, err)
	a, err := alloc.New(st)
	require.NoError(t, err)
	r, err := New(st, a)
	require.NoError(t, err)
	t.Cleanup(func() {
		if st.Guard() == nil {
			_ = st.Close()
		}
	})
	return &env{t: t, st: st, a: a, r: r}
}

func newEnv(t testing.TB) *env { return openEnv(t, shmtest.Dir(t)) }

// lease leases a heap, released when the test ends (if still leased).
func (e *env) lease() alloc.Heap {
	e.t.Helper()
	h, err := e.a.Lease()
	require.NoError(e.t, err)
	e.t.Cleanup(func() {
		if e.st.Guard() == nil {
			_ = h.Release()
		}
	})
	return h
}

// blocks allocates n blocks of size bytes and hands them over (as if a
// commit linked them into shared data).
func (e *env) blocks(h alloc.Heap, n, size int) []handle.Handle {
	e.t.Helper()
	out := make([]handle.Handle, n)
	for i := range out {
		hd, b, err := h.Alloc(size)
		require.NoError(e.t, err)
		b[0] = byte(i)
		out[i] = hd
	}
	h.ForgetLog()
	return out
}

// batch builds a batch and hands it over.
func (e *env) batch(h alloc.Heap, entries ...Entry) handle.Handle {
	e.t.Helper()
	hd, err := e.r.NewBatch(h, entries)
	require.NoError(e.t, err)
	h.ForgetLog()
	return hd
}

func blockEntries(hds ...handle.Handle) []Entry {
	out := make([]Entry, len(hds))
	for i, hd := range hds {
		out[i] = Entry{H: hd, Kind: KindBlock}
	}
	return out
}

func (e *env) requireLive(hds ...handle.Handle) {
	e.t.Helper()
	for _, hd := range hds {
		_, err := e.a.Resolve(hd)
		require.NoError(e.t, err, "block %v should still be allocated", hd)
	}
}

func (e *env) requireFreed(hds ...handle.Handle) {
	e.t.Helper()
	for _, hd := range hds {
		_, err := e.a.Resolve(hd)
		require.ErrorIs(e.t, err, handle.ErrStaleHandle, "block %v should be freed", hd)
	}
}

func (e *env) used() uint64 { return e.a.Stats().UsedBytes }

// requireClean fails the test with every problem the store's and the
// allocator's checks find.
func (e *env) requireClean() {
	e.t.Helper()
	probs := append(e.st.Check(), e.a.Check()...)
	require.Empty(e.t, probs, "store check")
}

// held sums Held over all slots.
func (e *env) held() int {
	n := 0
	for i := 0; i < e.st.NumSlots(); i++ {
		k, _ := e.r.Held(i)
		n += k
	}
	return n
}
