package reclaim

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
)

// The protocol of the essay, played by goroutines: writers replace the
// handle in a shared cell (the unlinking store), take a version from a
// clock and retire the old block at it; readers publish the clock with
// Enter, then follow the cells. A reader must never find a block it
// followed freed, or reused, while it is active. Writers collect as they
// go; at the end everything unlinked is freed.
func TestReadersNeverSeeFreedBlocks(t *testing.T) {
	e := newEnv(t)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	h0 := e.lease()
	used0 := e.used()

	var clock atomic.Uint64
	var cells [4]atomic.Uint64
	newBlock := func(h interface {
		Alloc(int) (handle.Handle, []byte, error)
	}) (handle.Handle, error) {
		hd, b, err := h.Alloc(64)
		if err != nil {
			return 0, err
		}
		*(*uint64)(unsafe.Pointer(&b[0])) = uint64(hd) // the block names itself
		return hd, nil
	}
	for i := range cells {
		hd, err := newBlock(h0)
		require.NoError(t, err)
		cells[i].Store(uint64(hd))
	}
	h0.ForgetLog()

	const writers, readers, iters = 3, 3, 400
	var heaps []alloc.Heap
	var wg sync.WaitGroup
	var stop atomic.Bool
	errs := make(chan error, writers+readers)
	fail := func(err error) { errs <- err; stop.Store(true) }
	for w := 0; w < writers; w++ {
		h := e.lease()
		heaps = append(heaps, h)
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < iters && !stop.Load(); k++ {
				e.r.Enter(h.Slot(), clock.Load())
				nb, err := newBlock(h)
				if err != nil {
					fail(err)
					return
				}
				old := handle.Handle(cells[rng.IntN(len(cells))].Swap(uint64(nb))) // unlink
				wv := clock.Add(1)
				b, err := e.r.NewBatch(h, []Entry{{old, KindBlock}})
				if err != nil {
					fail(err)
					return
				}
				h.ForgetLog() // commit: the new block and the batch are handed over
				if err := e.r.Retire(h, b, wv); err != nil {
					fail(err)
					return
				}
				e.r.Exit(h.Slot())
				if k%2 == 1 {
					if _, err := e.r.Collect(h); err != nil {
						fail(err)
						return
					}
				}
			}
		}()
	}
	var reads atomic.Int64
	for rd := 0; rd < readers; rd++ {
		slot := e.lease().Slot()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 4*iters && !stop.Load(); k++ {
				e.r.Enter(slot, clock.Load())
				var seen [len(cells)]handle.Handle
				for i := range cells {
					hd := handle.Handle(cells[i].Load())
					b, err := e.a.Resolve(hd)
					if err != nil {
						fail(fmt.Errorf("reader: block %v freed under an active reader: %w", hd, err))
						return
					}
					if v := atomic.LoadUint64((*uint64)(unsafe.Pointer(&b[0]))); v != uint64(hd) {
						fail(fmt.Errorf("reader: block %v holds %#x: reused under an active reader", hd, v))
						return
					}
					seen[i] = hd
				}
				for range 3 {
					runtime.Gosched() // a longer transaction: writers commit and collect meanwhile
				}
				for _, hd := range seen { // still there at the end of the transaction
					if _, err := e.a.Resolve(hd); err != nil {
						fail(fmt.Errorf("reader: block %v freed before the reader exited: %w", hd, err))
						return
					}
				}
				reads.Add(1)
				e.r.Exit(slot)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	require.Positive(t, reads.Load())
	for _, h := range heaps { // a writer's ring is its own to collect
		_, err := e.r.Collect(h)
		require.NoError(t, err)
	}
	require.Zero(t, e.held())
	require.Equal(t, used0+uint64(len(cells))*64, e.used(), "everything unlinked is freed")
	for i := range cells {
		require.NoError(t, h0.Free(handle.Handle(cells[i].Load())))
	}
	e.requireClean()
}
