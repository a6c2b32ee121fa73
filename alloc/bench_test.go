package alloc

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
)

var benchSizes = []int{16, 64, 1 << 10, 64 << 10}

// allocFree is one benchmarked operation: allocate n bytes, hand the block
// over (ForgetLog, as a caller that links it does), free it.
func allocFree(b *testing.B, h Heap, n int) {
	hd, _, err := h.Alloc(n)
	if err != nil {
		b.Fatal(err)
	}
	h.ForgetLog()
	if err := h.Free(hd); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkAllocFree: an allocation and its free from one slot, the log
// handed over each time (what a caller that links the block does).
func BenchmarkAllocFree(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			_, a := openTest(b, testDir(b), shm.Options{})
			h := lease(b, a)
			b.ReportAllocs()
			for b.Loop() {
				allocFree(b, h, n)
			}
		})
	}
}

// BenchmarkAllocFreeAtMax: the same pair once the store has reached its
// maximum size (no allocation starved): the heap keeps its superblock.
func BenchmarkAllocFreeAtMax(b *testing.B) {
	_, a := openTest(b, testDir(b), shm.Options{})
	h := lease(b, a)
	a.g.atMax.Store(1)
	for b.Loop() {
		allocFree(b, h, 64)
	}
}

var sink []byte

// BenchmarkGoMake is the in-process baseline: Go's own allocator for the
// same sizes (the garbage collector does the freeing).
func BenchmarkGoMake(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sink = make([]byte, n)
			}
		})
	}
}

// BenchmarkRemoteFree: freeing blocks another slot allocated (one CAS and
// one atomic add). The allocations are made outside the timer.
func BenchmarkRemoteFree(b *testing.B) {
	_, a := openTest(b, testDir(b), shm.Options{})
	owner, freer := lease(b, a), lease(b, a)
	const batch = 4096
	hds := make([]handle.Handle, 0, batch)
	b.ReportAllocs()
	b.StopTimer()
	for i := 0; i < b.N; i += batch {
		hds = hds[:0]
		for k := 0; k < batch && i+k < b.N; k++ {
			hd, _, err := owner.Alloc(64)
			if err != nil {
				b.Fatal(err)
			}
			hds = append(hds, hd)
		}
		owner.ForgetLog()
		b.StartTimer()
		for _, hd := range hds {
			if err := freer.Free(hd); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
	}
}

// BenchmarkEfficiency reports reserved bytes (superblocks in use) over
// requested bytes for mixed workloads held live at once: small objects
// (16 B to 4 KiB, log-uniform) and the stress mix (16 B to 256 KiB,
// log-uniform), each after a churn that frees a random half.
func BenchmarkEfficiency(b *testing.B) {
	for _, mix := range []struct {
		name   string
		lo, hi float64
		total  int
	}{{"small_16B-4KiB", 16, 4 << 10, 64 << 20}, {"mixed_16B-256KiB", 16, 256 << 10, 256 << 20}} {
		b.Run(mix.name, func(b *testing.B) {
			var ratio float64
			for b.Loop() {
				ratio = efficiency(b, mix.lo, mix.hi, mix.total)
			}
			b.ReportMetric(ratio, "reserved/requested")
		})
	}
}

func efficiency(b *testing.B, lo, hi float64, total int) float64 {
	_, a := openTest(b, testDir(b), shm.Options{})
	h := lease(b, a)
	defer h.Release()
	r := rand.New(rand.NewPCG(1, 2))
	type blk struct {
		hd handle.Handle
		n  int
	}
	var live []blk
	requested := 0
	alloc := func() {
		n := int(math.Exp(math.Log(lo) + r.Float64()*(math.Log(hi)-math.Log(lo))))
		hd, _, err := h.Alloc(n)
		if err != nil {
			b.Fatal(err)
		}
		h.ForgetLog()
		live = append(live, blk{hd, n})
		requested += n
	}
	for requested < total {
		alloc()
	}
	// Free a random half, then fill up again: fragmentation as it is after
	// some life, not right after a bulk load.
	r.Shuffle(len(live), func(i, j int) { live[i], live[j] = live[j], live[i] })
	half := len(live) / 2
	for _, x := range live[half:] {
		if err := h.Free(x.hd); err != nil {
			b.Fatal(err)
		}
		requested -= x.n
	}
	live = live[:half]
	for requested < total {
		alloc()
	}
	return float64(a.Stats().ReservedBytes) / float64(requested)
}

// BenchmarkLeaseAllocFreeRelease: a lease per operation (what each
// transaction will do), with the store at its maximum size and memory not
// short: the heap keeps its superblocks between leases.
func BenchmarkLeaseAllocFreeRelease(b *testing.B) {
	_, a := openTest(b, testDir(b), shm.Options{})
	a.g.atMax.Store(1)
	a.g.poolFree.Store(1 << 20)
	for b.Loop() {
		h, err := a.Lease()
		if err != nil {
			b.Fatal(err)
		}
		allocFree(b, h, 64)
		if err := h.Release(); err != nil {
			b.Fatal(err)
		}
	}
}
