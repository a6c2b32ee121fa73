package handle_test

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
	"github.com/shmstore/shmstore/shm/shmtest"
)

// FuzzResolve feeds arbitrary 64-bit values to the allocator's resolution
// in a store holding live and freed blocks of every kind. No value may
// crash the process, and none may resolve to a freed block: whatever
// resolves must be one of the live blocks, with the content written there.
// The seed corpus (live, freed, and near-miss handles) runs in every
// `go test`; `go test -fuzz=FuzzResolve ./handle/` explores further.
func FuzzResolve(f *testing.F) {
	dir := shmtest.Dir(f)
	st, err := shm.Open("fuzz", shm.Options{Dir: dir, RegionSize: 16 << 20, MaxSize: 512 << 20})
	if err != nil {
		f.Fatal(err)
	}
	a, err := alloc.New(st)
	if err != nil {
		f.Fatal(err)
	}
	h, err := a.Lease()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { h.Release(); _ = st.Close() })

	seed := uint64(rand.Int64())
	f.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 2))
	live := map[handle.Handle]bool{}
	var freed []handle.Handle
	for i := 0; i < 3000; i++ {
		n := 16 + r.IntN(3000)
		switch i % 50 {
		case 0:
			n = alloc.MaxSmall + r.IntN(300<<10) // a large block
		case 1, 2, 3:
			n = 16<<10 + r.IntN(alloc.MaxSmall-16<<10) // a class spanning superblocks
		}
		hd, b, err := h.Alloc(n)
		if err != nil {
			f.Fatal(err)
		}
		binary.LittleEndian.PutUint64(b, uint64(hd))
		live[hd] = true
	}
	h.ForgetLog()
	for hd := range live {
		if r.IntN(2) == 0 {
			if err := h.Free(hd); err != nil {
				f.Fatal(err)
			}
			delete(live, hd)
			freed = append(freed, hd)
		}
	}
	// Reuse some freed blocks: their old handles must stay stale.
	for i := 0; i < 500; i++ {
		hd, b, err := h.Alloc(16 + r.IntN(3000))
		if err != nil {
			f.Fatal(err)
		}
		binary.LittleEndian.PutUint64(b, uint64(hd))
		live[hd] = true
	}
	h.ForgetLog()

	add := func(v uint64) { f.Add(v) }
	for _, hd := range freed[:min(len(freed), 200)] {
		add(uint64(hd))
		add(uint64(hd) + 1<<16)   // next granule
		add(uint64(hd) ^ 2)       // another odd generation
		add(uint64(hd) + 1<<48)   // next region
		add(uint64(hd) &^ 0xffff) // generation 0
	}
	k := 0
	for hd := range live {
		if k++; k > 200 {
			break
		}
		add(uint64(hd))
		add(uint64(hd) - 8<<16) // a granule into the previous block
		add(uint64(hd) + 2<<16)
	}
	for _, v := range []uint64{0, 1, ^uint64(0), 1 << 48, 1<<48 | 1, 0xffff << 48, 1<<48 | 0xffffffff<<16 | 1} {
		add(v)
	}

	f.Fuzz(func(t *testing.T, v uint64) {
		hd := handle.Handle(v)
		b, err := a.Resolve(hd)
		if err != nil {
			if !errors.Is(err, handle.ErrBadHandle) && !errors.Is(err, handle.ErrStaleHandle) {
				t.Fatalf("Resolve(%v): %v wraps neither ErrBadHandle nor ErrStaleHandle", hd, err)
			}
			if live[hd] {
				t.Fatalf("live block %v does not resolve: %v", hd, err)
			}
			return
		}
		if !live[hd] {
			t.Fatalf("Resolve(%v) succeeded for a handle that names no live block", hd)
		}
		if got := binary.LittleEndian.Uint64(b); got != v {
			t.Fatalf("Resolve(%v) gives a block tagged %#x", hd, got)
		}
	})
}
