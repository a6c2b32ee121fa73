package alloc

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
)

// Sentinel errors of the allocator; handle.ErrBadHandle and
// handle.ErrStaleHandle come back from Resolve and Free.
var (
	// ErrOutOfMemory: the store is at its maximum size and no superblock
	// is free. The allocation fails cleanly; frees make room again.
	ErrOutOfMemory = errors.New("out of memory")
	// ErrTooLarge: a request larger than a region can hold.
	ErrTooLarge = errors.New("allocation larger than a region")
	// ErrLogFull: a slot holds LogCapacity allocations it has not handed
	// over (a transaction that allocates too much).
	ErrLogFull = errors.New("allocation log full")
	// ErrBadSize: a request for zero or fewer bytes.
	ErrBadSize = errors.New("bad allocation size")
)

// Rank is alloc's place in shm's layer order (recovery runs high to low).
const Rank = 10

// Allocator is one process's access to a store's allocator. It is safe for
// concurrent use; each Heap belongs to the goroutine that leased its slot.
type Allocator struct {
	st    *shm.Store
	g     *global
	geo   geometry
	rsize uint64
	heaps []atomic.Pointer[heap] // by slot; process-local
	// reserve is how many superblocks of the pool only metadata may take
	// once the store cannot grow (reserve.go); fixed by the store's sizes.
	reserve uint32
}

// New binds an allocator to st and registers its recovery with st.
func New(st *shm.Store) (*Allocator, error) {
	geo, err := newGeometry(st.RegionSize())
	if err != nil {
		return nil, err
	}
	a := &Allocator{st: st, g: (*global)(st.GlobalPart(shm.PartAlloc)), geo: geo, rsize: st.RegionSize(),
		heaps:   make([]atomic.Pointer[heap], st.NumSlots()),
		reserve: reserveFor(uint64(st.MaxRegions()) * uint64(geo.nsb-geo.metaSBs))}
	stamp := formatStamp()
	if !st.ReadOnly() {
		a.g.stamp.CompareAndSwap(0, stamp)
	}
	if v := a.g.stamp.Load(); v != stamp && v != 0 {
		return nil, fmt.Errorf("alloc: store %q has allocator format %#x, this build's is %#x: %w",
			st.Name(), v, stamp, shm.ErrLayout)
	}
	if !st.ReadOnly() {
		st.AddLayer(Rank, "alloc", a)
	}
	return a, nil
}

// Store is the store this allocator serves.
func (a *Allocator) Store() *shm.Store { return a.st }

// Heap is one lease of a slot's heap: the goroutine that leased the slot
// allocates and frees through it until Release. It is a small value (the
// slot's heap and the lease's number); copies name the same lease, and
// after Release every copy is refused, even once the slot is leased again.
type Heap struct {
	*heap
	lease uint64 // shm's number for this lease of the slot
}

// heap is a slot's heap as this process keeps it between leases.
type heap struct {
	a    *Allocator
	slot int
	mine uint32 // slot + 1: the value of desc.owner for our superblocks
	sh   *slotHeap
	cur  [NumClasses + 1]current
	// chunk caches the addresses of the slot's log chunks (process-local).
	chunk [logChunks]unsafe.Pointer
	// repairing is set while a broken free list is rebuilt.
	repairing bool
	// use is what the heap allocates for now (Using); noCarve keeps
	// refills from carving while allocReserved looks for a free block of
	// a larger class. Both process-local, the heap's goroutine only.
	use     Use
	noCarve bool
}

// current caches where the heap's current superblock of a class is mapped.
type current struct {
	d        *desc
	states   unsafe.Pointer
	blocks   unsafe.Pointer
	size     uint32
	granule0 uint32 // granule offset of block 0 in its region
	granules uint32 // block size in granules
	region   uint16
}

// Lease leases a slot of the store and returns its heap. Release it when
// done; the heap keeps its superblocks for the next lease.
func (a *Allocator) Lease() (Heap, error) {
	slot, no, err := a.st.LeaseNumbered()
	if err != nil {
		return Heap{}, err
	}
	return Heap{heap: a.slotCache(slot), lease: no}, nil
}

// Heap returns the heap of a slot the caller has leased (with shm's Lease),
// under the slot's current lease.
func (a *Allocator) Heap(slot int) Heap {
	return Heap{heap: a.slotCache(slot), lease: a.st.LeaseNumber(slot)}
}

// slotCache returns this process's heap state for a slot.
func (a *Allocator) slotCache(slot int) *heap {
	if h := a.heaps[slot].Load(); h != nil {
		return h
	}
	h := &heap{a: a, slot: slot, mine: uint32(slot + 1), sh: a.slotHeap(slot)}
	for c := 1; c <= NumClasses; c++ {
		if id := h.sh.current[c]; id != 0 {
			if d, base, err := a.descOf(id); err == nil && d.owner.Load() == h.mine {
				h.install(c, id, d, base)
			} else {
				h.sh.current[c] = 0
			}
		}
	}
	a.heaps[slot].Store(h)
	return h
}

// Release ends the lease: the slot goes back to the process's pool and the
// heap must not be used through h again. Releasing twice, or through a
// copy after the slot was leased anew, fails with shm.ErrNotLeased and
// touches nothing.
func (h Heap) Release() error {
	if h.heap == nil {
		return fmt.Errorf("alloc: release the zero Heap: %w", shm.ErrNotLeased)
	}
	if h.a.st.HoldsLease(h.slot, h.lease) {
		h.use = UseOrdinary
		if h.a.poolLow() {
			h.trim() // memory is short: what is wholly free goes back to the pool
		}
	}
	return h.a.st.ReleaseLease(h.slot, h.lease)
}

// Slot is the slot this heap belongs to (-1 for the zero Heap).
func (h *heap) Slot() int {
	if h == nil {
		return -1
	}
	return h.slot
}

// Allocator is the allocator this heap allocates from (nil for the zero
// Heap): the one whose Resolve reads the blocks the heap hands out. Code
// above the allocator that holds only a Heap, such as a workload that
// drives it, reaches its blocks through it.
func (h *heap) Allocator() *Allocator {
	if h == nil {
		return nil
	}
	return h.a
}

func (a *Allocator) slotHeap(slot int) *slotHeap {
	return (*slotHeap)(a.st.SlotPart(slot, shm.PartAlloc))
}

func (a *Allocator) meta(base unsafe.Pointer) *regionMeta { return (*regionMeta)(base) }

func (a *Allocator) descAt(base unsafe.Pointer, idx uint32) *desc {
	return (*desc)(unsafe.Add(base, a.geo.descOff+uintptr(idx)*descSize))
}

func (a *Allocator) bitmap(base unsafe.Pointer) []uint64 {
	return unsafe.Slice((*uint64)(unsafe.Add(base, a.geo.bitmapOff)), (a.geo.nsb+63)/64)
}

func sbBase(base unsafe.Pointer, idx uint32) unsafe.Pointer {
	return unsafe.Add(base, uintptr(idx)<<sbShift)
}

// descOf maps a superblock id to its descriptor and its region's base.
func (a *Allocator) descOf(id sbID) (*desc, unsafe.Pointer, error) {
	base, err := a.st.Region(id.region())
	if err != nil {
		return nil, nil, err
	}
	if id.index() >= a.geo.nsb {
		return nil, nil, fmt.Errorf("alloc: superblock %#x out of range: %w", uint32(id), handle.ErrBadHandle)
	}
	return a.descAt(base, id.index()), base, nil
}

// statesOf is the state array of a small superblock of class c.
func statesOf(d *desc, sb unsafe.Pointer, c int) unsafe.Pointer {
	if Classes[c].StatesDesc {
		return unsafe.Pointer(&d.states[0])
	}
	return sb
}

func stateAt(states unsafe.Pointer, i uint32) *uint32 {
	return (*uint32)(unsafe.Add(states, uintptr(i)*4))
}

func (h *heap) install(c int, id sbID, d *desc, base unsafe.Pointer) {
	sb := sbBase(base, id.index())
	cl := &Classes[c]
	h.cur[c] = current{
		d:        d,
		states:   statesOf(d, sb, c),
		blocks:   unsafe.Add(sb, cl.BlockStart),
		size:     cl.Size,
		granule0: (id.index()<<sbShift + cl.BlockStart) / handle.Granule,
		granules: cl.Size / handle.Granule,
		region:   id.region(),
	}
	h.sh.current[c] = id
}

// Alloc allocates n bytes (n > 0) and returns the block's handle and its
// first n bytes. The handle is logged in the slot until ForgetLog (the
// caller has linked it into shared data) or FreeLog (abort): if the process
// dies first, recovery frees it.
//
// The fast path touches only the slot's own superblock: no lock, no atomic.
func (h *heap) Alloc(n int) (handle.Handle, []byte, error) {
	if uint(n-1) >= MaxSmall {
		return h.allocLarge(n)
	}
	c := ClassOf(n)
	cu := &h.cur[c]
	for cu.d == nil || (cu.d.localHead == 0 && cu.d.fresh >= cu.d.nblocks) {
		if err := h.refill(c); err != nil {
			if h.use != UseOrdinary && errors.Is(err, ErrOutOfMemory) {
				return h.allocReserved(n, c)
			}
			return handle.Null, nil, err
		}
	}
	d := cu.d
	i := d.fresh
	if d.localHead != 0 {
		i = d.localHead - 1
	}
	blk := unsafe.Add(cu.blocks, uintptr(i)*uintptr(cu.size))
	sp := stateAt(cu.states, i)
	st := *sp // the owner's free block: nobody else writes its state
	next := uint32(0)
	if d.localHead != 0 {
		next = *(*uint32)(blk)
	}
	if st&(1|statePending) != 0 || next > d.fresh || (d.localHead != 0 && (next == 0) != (d.localFree == 1)) {
		// The link lives in the free block's memory: a stray write through
		// a stale pointer broke the list (or cut it short). The states are
		// the truth.
		return h.allocAfterRepair(n, c)
	}
	gen := (st + 1) & stateCount
	hd := handle.Make(cu.region, cu.granule0+i*cu.granules, uint16(gen))
	// Log before the state flips, so that an allocated block is never
	// unlogged (see the package comment).
	if k := h.sh.logN; k < logInline {
		h.sh.inline[k] = hd
		h.sh.logN = k + 1
	} else if err := h.logSlow(hd); err != nil {
		return handle.Null, nil, err
	}
	if poisonOn {
		checkPoison(blk, cu.size, hd)
	}
	*sp = gen
	if d.localHead != 0 {
		d.localHead = next
		d.localFree--
	} else {
		d.fresh++
	}
	return hd, unsafe.Slice((*byte)(blk), n), nil
}

// allocAfterRepair rebuilds a current superblock's free list from its
// states (a block's link was overwritten) and allocates again.
func (h *heap) allocAfterRepair(n, c int) (handle.Handle, []byte, error) {
	if h.repairing {
		// Still unusable after a rebuild: give the superblock up.
		h.releaseCurrent(c)
		return h.Alloc(n)
	}
	h.repairing = true
	defer func() { h.repairing = false }()
	cu := &h.cur[c]
	id := h.sh.current[c]
	h.a.repairSmall(cu.d, c, h.a.st.MappedRegion(id.region()), id, cu.states)
	h.a.g.repairs.Add(1)
	return h.Alloc(n)
}

// Free frees the block hd names. A stale or forged handle is refused with
// ErrStaleHandle or ErrBadHandle and changes nothing. Freeing does not
// touch the allocation log: a logged handle that was freed no longer
// matches its block's generation and is skipped by FreeLog and recovery.
func (h *heap) Free(hd handle.Handle) error {
	b, f := h.a.find(hd)
	if f != faultNone {
		return h.a.faultErr(hd, f, b)
	}
	if b.large {
		return h.a.freeLarge(hd, b)
	}
	d := b.d
	next := (b.state + 1) & stateCount
	if poisonOn {
		poison(b.ptr, b.size)
	}
	if d.owner.Load() != h.mine {
		// Remote: one CAS makes the block free; the owner collects it.
		if !atomic.CompareAndSwapUint32(b.sp, b.state, next|statePending) {
			return staleErr(hd)
		}
		d.remote.Add(1)
		return nil
	}
	// Local: our own superblock; the CAS still guards against a
	// concurrent double free through a copied handle.
	if !atomic.CompareAndSwapUint32(b.sp, b.state, next) {
		return staleErr(hd)
	}
	*(*uint32)(b.ptr) = d.localHead
	d.localHead = b.index + 1
	d.localFree++
	if d.localFree == d.fresh && h.a.g.starved.Load() != 0 {
		// Someone could not get a superblock: a wholly free one goes back
		// at once, for other classes and processes.
		h.releaseCurrent(int(b.class))
	}
	return nil
}

// Resolve returns the block hd names, after these checks: region in range
// and mapped (mapping it now if another process made it), offset in a
// superblock's block area and on a block boundary of its class, block
// allocated with the handle's generation. The slice covers the
// whole block (its class size, or the whole run of a large block).
//
// Resolve may run in any goroutine, leased slot or not, but not during the
// store's Close (which unmaps it); inside a lease it cannot, because Close
// refuses while slots are leased.
func (a *Allocator) Resolve(hd handle.Handle) ([]byte, error) {
	if err := a.st.Guard(); err != nil {
		return nil, err
	}
	b, f := a.find(hd)
	if f != faultNone {
		return nil, a.faultErr(hd, f, b)
	}
	return unsafe.Slice((*byte)(b.ptr), b.size), nil
}

// A Pin tells a reader that holds no lease and publishes no epoch (an
// optimistic read: objects.Space.PeekDict) whether the block it resolved
// was freed while it read. Only the reader's goroutine uses it; it
// writes nothing.
type Pin struct {
	// sp is the block's state word (in its superblock's state array, or
	// the descriptor's large word). Written by Alloc, Free and recovery
	// (CAS), each of which moves it on: a free changes it before the
	// block can be handed out again. Read here.
	sp    *uint32
	state uint32 // sp's value when resolved: allocated, the handle's generation
	// kc is the superblock's kind and class word, in the region's
	// metadata (never block bytes). Written when a superblock is taken
	// for a class or a large block and when it is given back; read here,
	// so that sp is known to still be a state word (a superblock reused
	// for another class has block bytes where its state array was).
	kc  *atomic.Uint32
	kcv uint32 // kind and class (not the fullness bin) when resolved
}

// kcKindClass masks the kind and class of a descriptor's kc word.
const kcKindClass = 0xffff

// ResolvePinned is Resolve for an optimistic reader: the block hd names,
// validated as Resolve validates it, and a Pin whose Held says afterwards
// whether the block stayed allocated meanwhile. A reader that reads the
// block, then (after a load fence on arm64) finds Held true, read it
// before any free of it: what it read was the block's. The same rules as
// Resolve's hold for when it may run.
func (a *Allocator) ResolvePinned(hd handle.Handle) ([]byte, Pin, error) {
	if err := a.st.Guard(); err != nil {
		return nil, Pin{}, err
	}
	b, f := a.find(hd)
	if f != faultNone {
		return nil, Pin{}, a.faultErr(hd, f, b)
	}
	p := Pin{sp: b.sp, state: b.state, kc: &b.d.kc, kcv: b.kc & kcKindClass}
	return unsafe.Slice((*byte)(b.ptr), b.size), p, nil
}

// Held reports whether the block p was resolved for is still allocated
// with the same generation: its state word unchanged, in a superblock
// still of the same kind and class. A superblock given back and taken
// again for the same class starts its blocks' counts above every count
// used before (genFloor), so an unchanged word is not an old value come
// back. The kind and class are loaded before and after the state word
// (as find checked them before loading it): a state word read while the
// superblock was another class's (user bytes, which may equal anything)
// is caught by one of the two.
func (p Pin) Held() bool {
	return p.sp != nil && p.kc.Load()&kcKindClass == p.kcv &&
		atomic.LoadUint32(p.sp) == p.state && p.kc.Load()&kcKindClass == p.kcv
}

// blockRef is what find found.
type blockRef struct {
	d     *desc
	sp    *uint32 // state word (large: &d.large)
	ptr   unsafe.Pointer
	state uint32 // state when validated
	kc    uint32 // the kind/class word (of the head) that find checked
	size  uint32
	index uint32
	class uint32
	large bool
}

// fault says why a handle did not resolve; faultErr words it. find returns
// a code rather than an error so that the hot paths build no error value.
type fault uint8

const (
	faultNone fault = iota
	faultNull
	faultEvenGen
	faultRegion
	faultBeyondRegion
	faultMeta
	faultInsideLarge
	faultBadClass
	faultBeyondSpan
	faultStateArray
	faultBoundary
	faultNotAllocated
	faultFreed
)

// locate is find with the fault as an error.
func (a *Allocator) locate(hd handle.Handle) (blockRef, error) {
	b, f := a.find(hd)
	if f != faultNone {
		return b, a.faultErr(hd, f, b)
	}
	return b, nil
}

// find validates hd (see Resolve) and says where its block and state are.
func (a *Allocator) find(hd handle.Handle) (b blockRef, f fault) {
	gen := hd.Gen()
	if hd.IsNull() {
		return b, faultNull
	}
	if gen&1 == 0 {
		return b, faultEvenGen
	}
	base, err := a.st.Region(hd.Region())
	if err != nil {
		return b, faultRegion
	}
	off := hd.Offset()
	if off >= a.rsize {
		return b, faultBeyondRegion
	}
	idx := uint32(off >> sbShift)
	if idx < a.geo.metaSBs {
		return b, faultMeta
	}
	d := a.descAt(base, idx)
	kc := d.kc.Load()
	if kc&0xff == kindLargeTail {
		// Inside a span of a size class, or inside a large block: the
		// head's descriptor decides.
		back := d.runLen
		if back == 0 || back > idx-a.geo.metaSBs || back >= maxSpan {
			return b, faultInsideLarge
		}
		idx -= back
		d = a.descAt(base, idx)
		if kc = d.kc.Load(); kc&0xff != kindSmall {
			return b, faultInsideLarge
		}
	}
	b.d, b.kc = d, kc
	switch kc & 0xff {
	case kindSmall:
		c := kc >> 8 & 0xff
		if c == 0 || c > NumClasses {
			return b, faultBadClass
		}
		cl := &Classes[c]
		within := uint32(off - uint64(idx)<<sbShift)
		if within >= cl.Span<<sbShift {
			return b, faultBeyondSpan
		}
		if within < cl.BlockStart {
			return b, faultStateArray
		}
		rel := within - cl.BlockStart
		i := cl.blockIndex(rel)
		if i*cl.Size != rel || i >= cl.Blocks {
			b.size = cl.Size
			return b, faultBoundary
		}
		sb := sbBase(base, idx)
		b.sp = stateAt(statesOf(d, sb, int(c)), i)
		b.ptr = unsafe.Add(sb, within)
		b.size, b.index, b.class = cl.Size, i, c
	case kindLargeHead:
		if off&(SuperblockSize-1) != 0 {
			return b, faultInsideLarge
		}
		b.sp = (*uint32)(unsafe.Pointer(&d.large))
		b.ptr = sbBase(base, idx)
		b.size, b.large = d.runLen<<sbShift, true
	default:
		return b, faultNotAllocated
	}
	b.state = atomic.LoadUint32(b.sp)
	if b.state&1 == 0 || uint16(b.state) != gen {
		return b, faultFreed
	}
	return b, faultNone
}

// faultErr words a fault of hd as an error wrapping ErrBadHandle (it cannot
// name a block) or ErrStaleHandle (it may have named one once).
func (a *Allocator) faultErr(hd handle.Handle, f fault, b blockRef) error {
	bad := func(why string, args ...any) error {
		return fmt.Errorf("alloc: handle %v: %s: %w", hd, fmt.Sprintf(why, args...), handle.ErrBadHandle)
	}
	stale := func(why string, args ...any) error {
		return fmt.Errorf("alloc: handle %v: %s: %w", hd, fmt.Sprintf(why, args...), handle.ErrStaleHandle)
	}
	switch f {
	case faultNull:
		return fmt.Errorf("alloc: null handle: %w", handle.ErrBadHandle)
	case faultEvenGen:
		return bad("even generation")
	case faultRegion:
		if _, err := a.st.Region(hd.Region()); err != nil {
			return fmt.Errorf("alloc: handle %v: %w: %w", hd, handle.ErrBadHandle, err)
		}
		return stale("its region appeared only now")
	case faultBeyondRegion:
		return bad("offset beyond region")
	case faultMeta:
		return bad("offset in region metadata")
	case faultInsideLarge:
		return stale("inside a large block")
	case faultBadClass:
		return bad("superblock with an unknown class")
	case faultBeyondSpan:
		return stale("beyond its span")
	case faultStateArray:
		return bad("offset in a state array")
	case faultBoundary:
		return stale("not on a %d-byte block boundary", b.size)
	case faultNotAllocated:
		return stale("superblock not allocated")
	case faultFreed:
		return stale("block freed (generation now %d)", uint16(b.state))
	}
	return bad("fault %d", f) // never nil: a fault is never success
}

func staleErr(hd handle.Handle) error {
	return fmt.Errorf("alloc: free %v: %w (freed concurrently)", hd, handle.ErrStaleHandle)
}
