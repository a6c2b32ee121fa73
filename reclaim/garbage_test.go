package reclaim

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
)

// A batch damaged after it was retired is dropped, not trusted: nothing it
// claims to list is freed, and nothing crashes.
func TestDamagedBatch(t *testing.T) {
	e := newEnv(t)
	h := e.lease()
	xs := e.blocks(h, 2, 64)
	b := e.batch(h, blockEntries(xs...)...)
	require.NoError(t, e.r.Retire(h, b, 1))
	raw, err := e.a.Resolve(b)
	require.NoError(t, err)
	*word(raw, 0) = uint64(batchMagic)<<32 | 1<<30 // a count far beyond the block
	e.r.Each(func(hd handle.Handle, _ uint8) { t.Errorf("damaged batch reported: %v", hd) })
	freed, err := e.r.Collect(h)
	require.ErrorIs(t, err, ErrBadBatch)
	require.Zero(t, freed)
	require.Zero(t, e.held(), "dropped")
	e.requireLive(append(xs, b)...) // leaked rather than trusted
	for _, hd := range append(xs, b) {
		require.NoError(t, h.Free(hd))
	}
	e.requireClean()
}

// Garbage inside a batch: handles that do not resolve, a block that is not
// a batch listed as one, a batch listing itself, a deep chain. The batch
// and what is real in it are freed; the rest is skipped.
func TestGarbageEntries(t *testing.T) {
	e := newEnv(t)
	h := e.lease()
	used0 := e.used()
	e.r.SetFinalizer(2, func(fh alloc.Heap, obj handle.Handle) error {
		if err := fh.Free(obj); err != nil && !isStaleOrBad(err) {
			return err
		}
		return nil
	})
	notBatch := e.blocks(h, 1, 64)[0]
	real := e.blocks(h, 3, 64)
	self := e.batch(h, Entry{real[0], KindBlock}, Entry{0, KindBlock})
	raw, err := e.a.Resolve(self)
	require.NoError(t, err)
	*word(raw, batchHeader+batchEntrySize) = uint64(self) // entry 1 := itself, as a batch
	*word(raw, batchHeader+batchEntrySize+8) = uint64(KindBatch)

	// A chain deeper than pathDepth.
	chain := e.batch(h, Entry{real[1], KindBlock})
	var links []handle.Handle
	for i := 0; i < 3*pathDepth; i++ {
		links = append(links, chain)
		chain = e.batch(h, Entry{chain, KindBatch}, Entry{handle.Make(1, 8, 3), KindBatch})
	}
	top := e.batch(h,
		Entry{handle.Make(0xdead, 1, 1), KindBlock},
		Entry{handle.Make(1, 0, 1), KindBatch},
		Entry{handle.Null, KindBatch},
		Entry{notBatch, KindBatch},
		Entry{self, KindBatch},
		Entry{chain, KindBatch},
		Entry{handle.Make(0x7777, 16, 5), 2},
		Entry{real[2], 2},
	)
	require.NoError(t, e.r.Retire(h, top, 1))
	count := 0
	e.r.Each(func(handle.Handle, uint8) { count++ })
	require.Equal(t, 6+len(links), count, "top, self, real[0], chain, the links, real[1], real[2]")
	freed, err := e.r.Collect(h)
	require.ErrorIs(t, err, ErrBadBatch, "garbage is reported")
	require.Equal(t, 1, freed)
	e.requireFreed(real...)
	e.requireFreed(append(links, top, self, chain)...)
	e.requireLive(notBatch)
	require.NoError(t, h.Free(notBatch))
	require.Equal(t, used0, e.used())
	e.requireClean()
}

func isStaleOrBad(err error) bool {
	return err != nil && (errors.Is(err, handle.ErrStaleHandle) || errors.Is(err, handle.ErrBadHandle))
}

// Random words in the ring of a slot nobody owns and in the overflow
// ring: Collect adopts them,
// finds no batch, and carries on; Held and Each stay in bounds.
func TestGarbageRing(t *testing.T) {
	e := newEnv(t)
	h := e.lease()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	victim := -1
	for i := 0; i < e.st.NumSlots(); i++ {
		if e.st.Slot(i).Owner.Load() == 0 {
			victim = i
			break
		}
	}
	require.GreaterOrEqual(t, victim, 0)
	for round := 0; round < 20; round++ {
		for _, rp := range []*ring{&e.r.part(victim).ring, &e.r.g.overflow} {
			rp.hn.Store(rng.Uint64())
			for i := range rp.slots {
				rp.slots[i].batch.Store(rng.Uint64())
				rp.slots[i].epoch.Store(rng.Uint64() % 4)
			}
		}
		n, _ := e.r.Held(victim)
		require.LessOrEqual(t, n, RingCap)
		n, _ = e.r.HeldOverflow()
		require.LessOrEqual(t, n, RingCap)
		e.r.Each(func(hd handle.Handle, _ uint8) { t.Errorf("garbage reported: %v", hd) })
		for pass := 0; pass < 3; pass++ {
			_, err := e.r.Collect(h)
			if err != nil {
				require.ErrorIs(t, err, ErrBadBatch)
			}
		}
		require.Zero(t, e.held())
		n, _ = e.r.HeldOverflow()
		require.Zero(t, n)
	}
	e.requireClean()
}

// FuzzBatchBytes retires a batch whose bytes are arbitrary (after a valid
// header, or not): collecting it never crashes and never frees a block
// that the bytes do not name.
func FuzzBatchBytes(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0, 0x52, 0x42, 0x41, 0x54, 1, 2, 3, 4, 5, 6, 7, 8, 0}, true)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, true)
	f.Add([]byte{}, false)
	f.Add([]byte{2, 0, 0, 0, 0x52, 0x42, 0x41, 0x54, 1, 0, 1, 0, 0, 0, 1, 0, 1}, false)
	e := newEnv(f)
	h := e.lease()
	keep := e.blocks(h, 1, 64)[0]
	for k := 2; k < 256; k++ {
		e.r.SetFinalizer(uint8(k), func(fh alloc.Heap, obj handle.Handle) error {
			_ = fh.Free(obj)
			return nil
		})
	}
	f.Fuzz(func(t *testing.T, data []byte, header bool) {
		n := max(len(data), 8)
		hd, b, err := h.Alloc(batchHeader + n)
		if err != nil {
			t.Skip(err)
		}
		h.ForgetLog()
		copy(b[batchHeader:], data)
		if header {
			*word(b, 0) = uint64(batchMagic)<<32 | uint64(len(data)/batchEntrySize)
		} else {
			copy(b, data)
		}
		if err := e.r.Retire(h, hd, 1); err != nil {
			require.NoError(t, h.Free(hd))
			return
		}
		e.r.Each(func(handle.Handle, uint8) {})
		for pass := 0; e.held() > 0; pass++ {
			require.Less(t, pass, 3)
			_, _ = e.r.Collect(h)
		}
		_ = h.Free(hd)
		if !bytes.Contains(data, binary.LittleEndian.AppendUint64(nil, uint64(keep))) {
			_, err := e.a.Resolve(keep)
			require.NoError(t, err, "a block the batch does not name was freed")
		}
	})
}
