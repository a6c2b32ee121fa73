package reclaim

import (
	"fmt"
	"hash/fnv"
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
)

// Sizes shm reserves for reclaim, as constants so that the structs below
// can be pinned against them at compile time; init checks that shm agrees.
const (
	slotPartSize   = 2 << 10
	globalPartSize = 4 << 10
)

// Ring geometry: ringSlots physical entries, of which at most RingCap are
// live at once. The one always free is where a merge writes its batch, so
// that the ring turns from "everything" to "the merged batch" in one store
// (see mergeLocked).
const (
	ringSlots = (slotPartSize - 2*shm.CacheLine) / 16
	// RingCap is the most batches one slot's retire ring holds.
	RingCap = ringSlots - 1
)

// slotPart is reclaim's part of a slot (2 KiB).
//
//	+--------------------------------+ 0
//	| epoch          (atomic u64)    |  0 = quiescent, rv+1 = active at rv
//	| (rest of the cache line)       |
//	+--------------------------------+ 64
//	| mu             shm.Mutex (u32) |  guards the rest of the ring
//	| collector      (atomic u32)    |  token of its collector, 0 if none
//	| hn             (atomic u64)    |  head<<32 | n: the live entries
//	| pending        (atomic u64)    |  merge batch in flight, 0 if none
//	| (rest of the cache line)       |
//	+--------------------------------+ 128
//	| slots[0]  {batch, epoch}       |  16 bytes each, ringSlots of them,
//	| ...                            |  live ones at (head+i) % ringSlots
//	| slots[ringSlots-1]             |  for i < n
//	+--------------------------------+ 2048
//
// The epoch word has its own cache line because every collector reads the
// epoch words of all slots while each owner writes only its own, on every
// Enter and Exit: sharing the line with the ring would make every Retire
// of the owner and every scan of a collector bounce it.
type slotPart struct {
	// epoch is written by the slot's leaseholder (Enter, Exit) and by
	// whoever tidies the slot when its process died (Recover) or closes
	// (Release); read by every scan (MinActive) and by inspectors. Every
	// access is sequentially consistent: the Enter store is what the
	// essay's proof rests on. A stale read by an inspector is harmless;
	// a scan reads it after the entries it judges (see the essay).
	epoch atomic.Uint64
	_     [shm.CacheLine - 8]byte
	ring  ring
}

// ring is a slot's retire ring: the batches its commits retired, oldest
// first, each with the epoch it was retired at.
//
// Every field is written only by a holder of mu: the slot's leaseholder
// (Retire appends; Collect pops), another slot's collector adopting it
// (it pops, like the owner), a recoverer retiring for a dead slot
// (RetireFor), and whoever takes mu from a dead holder (it repairs). They
// are atomics anyway so that inspectors (Held, Each) and adopters peeking
// before they lock may read them without the lock, seeing a snapshot that
// may be stale but never torn.
type ring struct {
	mu shm.Mutex
	// collector is the lock token of the process collecting this ring
	// right now (its leaseholder or an adopter, between its snapshot and
	// its last pop), 0 when none. Set and cleared under mu by the
	// collector; read under mu by other collectors, which leave the ring
	// alone while the collector is alive: a batch is freed by one
	// collector at a time. A dead collector's token is ignored (and
	// replaced by the next collector's).
	collector atomic.Uint32
	// hn packs the head index (< ringSlots) and the count (<= RingCap).
	// One store publishes an append (after the entry was written), a pop
	// (after the entry was wholly freed) or a merge: the ring is never
	// seen half-changed, whatever instruction its writer died at.
	hn atomic.Uint64
	// pending holds a merge batch between the moment the batch stops
	// being in its allocator's log and the moment the ring lists it, so
	// that it is always referenced by someone (see mergeLocked). Whoever
	// takes mu from a dead holder frees it unless the ring lists it.
	pending atomic.Uint64
	_       [shm.CacheLine - 24]byte
	slots   [ringSlots]ringEntry
}

// ringEntry is one retired batch. batch is written before the hn store
// that makes the entry live, and not changed while it is live; epoch
// likewise. Readers that hold mu, or loaded hn first, see both.
type ringEntry struct {
	batch atomic.Uint64 // a handle.Handle of a batch block
	epoch atomic.Uint64 // the retirer's commit version (wv)
}

// global is reclaim's global part (4 KiB, half of it used).
//
//	+--------------------------------+ 0
//	| stamp          (atomic u64)    |  formatStamp, set by the first opener
//	+--------------------------------+ 64
//	| overflow       ring            |  1984 bytes: like a slot's ring
//	+--------------------------------+ 2048
//
// The overflow ring takes what RetireFor without a heap cannot put in a
// full slot ring (txn's recovery of a dead slot retires with the zero
// Heap); every Collect adopts from it like from any other ring. No
// counter lives here: a word every commit writes would bounce between all
// processes.
type global struct {
	stamp    atomic.Uint64 // written once (CAS from 0), read by every opener
	_        [shm.CacheLine - 8]byte
	overflow ring
}

// Compile-time pins: the shared structs have exactly the size of the parts
// shm reserves (init checks that shm reserves these sizes).
const (
	_ = uint(slotPartSize - unsafe.Sizeof(slotPart{}))
	_ = uint(unsafe.Sizeof(slotPart{}) - slotPartSize)
	_ = uint(globalPartSize - unsafe.Sizeof(global{}))
	_ = uint(unsafe.Offsetof(global{}.overflow) - shm.CacheLine)
	_ = uint(RingCap - 100) // a ring holds at least 100 batches
)

func init() {
	if shm.SlotPartSize[shm.PartReclaim] != slotPartSize || shm.GlobalPartSize[shm.PartReclaim] != globalPartSize {
		panic(fmt.Sprintf("reclaim: shm reserves %d/%d bytes for reclaim, this build's layout needs %d/%d",
			shm.SlotPartSize[shm.PartReclaim], shm.GlobalPartSize[shm.PartReclaim], slotPartSize, globalPartSize))
	}
	if shm.SlotPartOffset[shm.PartReclaim]%shm.CacheLine != 0 {
		panic("reclaim: the slot part is not cache-line aligned")
	}
}

// formatStamp folds reclaim's layout choices; a store made by another build
// of reclaim is refused.
func formatStamp() uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "reclaim v2 slot=%d global=%d ring=%d/%d entry=%d batch=%d+%d magic=%#x",
		unsafe.Sizeof(slotPart{}), unsafe.Sizeof(global{}), ringSlots, RingCap, unsafe.Sizeof(ringEntry{}),
		batchHeader, batchEntrySize, batchMagic)
	return h.Sum64()
}

// hn packing.
func packHN(head, n uint32) uint64 { return uint64(head)<<32 | uint64(n) }

// loadHN returns the ring's head and count, clamped into range: a damaged
// word never makes an index out of bounds.
func (rp *ring) loadHN() (head, n uint32) {
	v := rp.hn.Load()
	return uint32(v>>32) % ringSlots, min(uint32(v), RingCap)
}

// at is the i-th live entry counted from head.
func (rp *ring) at(head, i uint32) *ringEntry { return &rp.slots[(head+i)%ringSlots] }

// Batch block format (native byte order, little-endian on the machines
// shm supports; immutable once built):
//
//	+-----------------+-----------------+ 0
//	| count     (u32) | magic     (u32) |  magic = batchMagic
//	+-----------------+-----------------+ 8
//	| handle    (u64)                   |  entry 0
//	| kind (u8) | 7 bytes zero          |
//	+-----------------------------------+ 24
//	| ... count entries of 16 bytes     |
//	+-----------------------------------+
//
// The block may be longer than 8+16*count (its size class rounds up). The
// builder writes it with plain stores while it is private (in its
// allocation log, reachable from nowhere); it is published by the store
// that makes its ring entry live. Readers trust nothing of it: count is
// bounded by the block's size, a wrong magic makes it "not a batch" (never
// freed), and readBatch copies the entries with atomic loads and then
// checks that the block is still allocated, so that a batch freed and
// reused under a reader's feet is seen as freed rather than read as a
// list of handles.
const (
	batchHeader    = 8
	batchEntrySize = 16
	batchMagic     = 0x54414252 // "RBAT"
	// MaxBatch is the most entries NewBatch puts in one batch.
	MaxBatch = 1 << 20
)

func batchSize(n int) int { return batchHeader + n*batchEntrySize }

func word(b []byte, off int) *uint64 { return (*uint64)(unsafe.Pointer(&b[off])) }

// writeBatch fills a freshly allocated block of at least batchSize(n)
// bytes (8-byte aligned, as every block is).
func writeBatch(b []byte, entries func(i int) Entry, n int) {
	*word(b, 0) = uint64(batchMagic)<<32 | uint64(uint32(n))
	for i := 0; i < n; i++ {
		e := entries(i)
		off := batchHeader + i*batchEntrySize
		*word(b, off) = uint64(e.H)
		*word(b, off+8) = uint64(e.Kind)
	}
}

// batchHeaderOf resolves hd and checks its batch header; it returns the
// block and the count.
func (r *Reclaimer) batchHeaderOf(hd handle.Handle) ([]byte, int, error) {
	b, err := r.a.Resolve(hd)
	if err != nil {
		return nil, 0, err
	}
	if len(b) < batchHeader {
		return nil, 0, fmt.Errorf("reclaim: batch %v: block of %d bytes: %w", hd, len(b), ErrBadBatch)
	}
	h := atomic.LoadUint64(word(b, 0))
	n := uint64(uint32(h))
	if uint32(h>>32) != batchMagic || n > uint64(len(b)-batchHeader)/batchEntrySize {
		return nil, 0, fmt.Errorf("reclaim: batch %v: header %#x in a block of %d bytes: %w", hd, h, len(b), ErrBadBatch)
	}
	return b, int(n), nil
}

// readBatch copies the entries of the batch hd names. It fails with
// alloc's error when hd does not resolve (handle.ErrStaleHandle: freed,
// maybe while it was being read) and with ErrBadBatch when the block is
// not a batch.
func (r *Reclaimer) readBatch(hd handle.Handle) ([]Entry, error) {
	return r.readBatchInto(hd, nil)
}

// readBatchInto is readBatch that fills buf (grown if need be).
func (r *Reclaimer) readBatchInto(hd handle.Handle, buf []Entry) ([]Entry, error) {
	b, n, err := r.batchHeaderOf(hd)
	if err != nil {
		return nil, err
	}
	out := slices.Grow(buf[:0], n)[:n]
	for i := range out {
		off := batchHeader + i*batchEntrySize
		out[i] = Entry{H: handle.Handle(atomic.LoadUint64(word(b, off))), Kind: uint8(atomic.LoadUint64(word(b, off+8)))}
	}
	// Still allocated after the copy: every load above read the batch,
	// not a block that replaced it (the loads and the state check are
	// all seq-cst, like the freer's CAS of the state).
	if _, err := r.a.Resolve(hd); err != nil {
		return nil, err
	}
	return out, nil
}
