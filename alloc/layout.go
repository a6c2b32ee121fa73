package alloc

import (
	"fmt"
	"hash/fnv"
	"sync/atomic"
	"unsafe"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
)

// Descriptor kinds (desc.kc bits 0..7).
const (
	kindFree      = 0 // in the pool (the zero value: a new region is all free)
	kindSmall     = 1 // blocks of one size class
	kindLargeHead = 2 // first superblock of a large block
	kindLargeTail = 3 // later superblock of a large block
	kindTransit   = 4 // being carved or being returned to the pool, by desc.owner
)

// desc describes one superblock. Descriptors sit in the region's metadata
// superblocks, out of band: user memory never holds allocator state.
//
//	+----------------------------+
//	| kc        atomic u32       |  kind | class<<8 | bin<<16
//	| owner     atomic u32       |  slot+1 of the owning heap (or the slot
//	|                            |  carrying it in transit); 0: global/pool
//	| runLen    u32              |  large head: superblocks; tail: distance to head
//	| nblocks   u32              |  small: blocks (copy of the class's)
//	| localHead u32              |  small: first free block + 1 (owner only)
//	| localFree u32              |  small: blocks on the local list (owner only)
//	| fresh     u32              |  small: blocks [fresh, nblocks) never used (owner only)
//	| remote    atomic u32       |  small: remote frees not yet collected (hint)
//	| large     atomic u32       |  large head: the block's state word
//	| genFloor  u32              |  first state count of the next incarnation
//	| binPrev, binNext u32       |  global bin links (superblock ids), class lock
//	| states    [4]u32           |  state words of classes with StatesDesc
//	+----------------------------+  64 bytes
//
// Who writes what:
//   - kc: atomic store after the fields it describes; by the pool-lock
//     holder (Free <-> Transit/LargeHead/LargeTail), the carver (Transit ->
//     Small), the class-lock holder (bin bits), the owner or recoverer
//     (Small -> Transit on the way to the pool). Read atomically by
//     resolvers in any process.
//   - owner: by the owner giving the superblock up or the taker under the
//     class or pool lock; by allocRun once its block is logged; by the
//     recoverer for dead slots. Read by freers: a freer that reads its own
//     slot owns the superblock, since only it can make that change.
//   - localHead, localFree, fresh: plain, by the owner's goroutine only;
//     after its death by the recoverer, which sees every store the dead
//     process made (the kernel told it of the death).
//   - nblocks: by the carver before kc is published; read-only after.
//   - runLen, genFloor: under the pool lock (genFloor also by the owner
//     returning a wholly free superblock, before it takes the pool lock).
//     locate reads runLen without the lock: a torn or stale value only
//     sends it to a descriptor it checks again.
//   - remote: Add by freers, Store(0) by the collecting owner; a hint.
//   - large: the large block's state; CAS by freers, store by allocRun.
//   - binPrev, binNext: under the class lock (carve clears them before the
//     superblock can be in a bin).
type desc struct {
	kc        atomic.Uint32
	owner     atomic.Uint32
	runLen    uint32
	nblocks   uint32
	localHead uint32
	localFree uint32
	fresh     uint32
	remote    atomic.Uint32
	large     atomic.Uint32
	genFloor  uint32
	binPrev   uint32
	binNext   uint32
	states    [descStates]uint32
}

const descSize = 64

const (
	_ = uint(unsafe.Sizeof(desc{})) - descSize
	_ = uint(descSize) - uint(unsafe.Sizeof(desc{}))
)

func (d *desc) kind() uint32  { return d.kc.Load() & 0xff }
func (d *desc) class() uint32 { return d.kc.Load() >> 8 & 0xff }
func (d *desc) bin() uint32   { return d.kc.Load() >> 16 & 0xff }
func mkKC(kind, class, bin uint32) uint32 {
	return kind | class<<8 | bin<<16
}

// State words: the count (bits 0..30; odd = allocated) and the pending bit.
const (
	statePending = 1 << 31
	stateCount   = statePending - 1
)

// regionMeta opens every region:
//
//	+-----------------------------+ 0
//	| regionMeta (64 bytes)       |  free: free superblocks (pool lock)
//	| pool bitmap (nsb bits)      |  1 = superblock in use (pool lock)
//	| descriptors (nsb * 64)      |  from a cache-line boundary
//	+-----------------------------+ metaSBs * SuperblockSize
//	| superblock metaSBs          |
//	| ...                         |
//	+-----------------------------+ region size
//
// The zero region is valid: everything free. The metadata superblocks are
// marked in use in the bitmap when a region is first carved from.
type regionMeta struct {
	magic uint32 // regionMagic once the metadata superblocks are marked
	free  uint32 // free superblocks (pool lock)
	_     [56]byte
}

const regionMagic = 0x5245474e // "REGN"

// geometry is what a region's size fixes.
type geometry struct {
	nsb       uint32  // superblocks per region
	metaSBs   uint32  // leading superblocks holding metadata
	bitmapOff uintptr // offset of the pool bitmap
	descOff   uintptr // offset of descriptor 0
}

func newGeometry(regionSize uint64) (geometry, error) {
	if regionSize%SuperblockSize != 0 || regionSize/SuperblockSize > 1<<16 || regionSize < 4*SuperblockSize {
		return geometry{}, fmt.Errorf("alloc: region size %d: want a multiple of %d, 4 to 65536 superblocks: %w",
			regionSize, SuperblockSize, shm.ErrLayout)
	}
	g := geometry{nsb: uint32(regionSize / SuperblockSize)}
	g.bitmapOff = unsafe.Sizeof(regionMeta{})
	g.descOff = (g.bitmapOff + uintptr(g.nsb+63)/64*8 + descSize - 1) &^ (descSize - 1)
	metaBytes := g.descOff + uintptr(g.nsb)*descSize
	g.metaSBs = uint32((metaBytes + SuperblockSize - 1) / SuperblockSize)
	return g, nil
}

// sbID names a superblock: region<<16 | index. Zero is none.
type sbID uint32

func mkSB(region uint16, idx uint32) sbID { return sbID(uint32(region)<<16 | idx) }
func (id sbID) region() uint16            { return uint16(id >> 16) }
func (id sbID) index() uint32             { return uint32(id) & 0xffff }

// Bins of the global heap: by quarter of fullness at the time a superblock
// was put there (remote frees may have emptied it since; acquire rechecks).
const numBins = 4

// classHeap is one class's part of the global heap, on its own cache line.
type classHeap struct {
	lock shm.Mutex       // guards head, n and members' binPrev/binNext (fromBins and reclaimEmpty peek at head unlocked to skip empty classes)
	head [numBins]sbID   // first superblock of each bin
	n    [numBins]uint32 // members of each bin (statistics, Check)
	_    [shm.CacheLine - 4 - 8*numBins]byte
}

// global is alloc's part of the control segment.
//
//	+------------------------------+
//	| stamp   atomic u64           |  alloc's format stamp (set by first user)
//	| atMax   atomic u32           |  1 once growth failed at the maximum size
//	| starved, repairs, poolFree   |  see the fields
//	| trimAsked atomic u32         |  requests to trim idle heaps (AskTrim)
//	+------------------------------+ cache line
//	| poolLock, nextRegion         |  the pool of free superblocks
//	+------------------------------+ cache line
//	| classHeap x (NumClasses+1)   |  one cache line each
//	+------------------------------+
type global struct {
	stamp atomic.Uint64
	// atMax is set by the process that found the store at its maximum size
	// and read by heaps deciding whether to collect remote frees eagerly.
	// Never cleared: regions are not shrunk.
	atMax atomic.Uint32
	// starved is set by an allocation that failed for want of a superblock
	// and cleared by whoever returns superblocks to the pool; while it is
	// set, a heap hands back a current superblock as soon as it is wholly
	// free. (Doing so always, at the maximum size, made a lone alloc/free
	// pair carve and return a superblock each time: 26x slower.)
	starved atomic.Uint32
	// repairs counts free lists rebuilt because a link in a free block was
	// overwritten (a write through a stale pointer). Add by the heap that
	// found it; read by Stats.
	repairs atomic.Uint64
	// poolFree counts free superblocks in all regions: changed under the
	// pool lock (taken, returned, rebuilt, new region), read without it by
	// heaps deciding whether memory is short.
	poolFree atomic.Int64
	// trimAsked counts requests that every process hand back what the
	// heaps it keeps idle hold (AskTrim): Add by a transaction of any
	// process that found the store full (txn's relief); Load by each
	// process's txn engine (its ticker, and every Run's end), which trims
	// its idle or just-used heaps when the count moved. It publishes
	// nothing but the request: no data is read on its strength, a missed
	// request only delays memory, and a requester that dies leaves
	// nothing to recover (a wrapped count is still a change).
	trimAsked atomic.Uint32
	_         [shm.CacheLine - 36]byte
	// poolLock guards every region's bitmap and free count, and the kind
	// changes Free <-> anything.
	poolLock shm.Mutex
	// nextRegion is where the pool starts looking (hint, poolLock).
	nextRegion uint32
	_          [shm.CacheLine - 8]byte
	classes    [NumClasses + 1]classHeap
}

// Allocation log: each slot logs the handles it allocated and has not yet
// handed over (a transaction's allocations until commit). The first
// logInline entries live in the slot; beyond that, chunks (one superblock
// each, allocated as large blocks) hold chunkEntries each.
const (
	logInline    = 896
	logChunks    = 64
	chunkEntries = SuperblockSize / 8
	// LogCapacity is the most allocations one slot can hold unhanded.
	LogCapacity = logInline + logChunks*chunkEntries
)

// slotHeap is alloc's part of a slot.
//
//	current[c]  superblock the slot's heap allocates class c from (owner)
//	logN        valid log entries (owner; recoverer after death)
//	chunks      log chunks (owner; written before the chunk's state flips)
//	inline      the first logInline log entries
type slotHeap struct {
	current [NumClasses + 1]sbID
	logN    uint32
	chunks  [logChunks]handle.Handle
	inline  [logInline]handle.Handle
}

// Compile-time pins: the shared structs fit the parts shm reserves.
const (
	_ = uint(shm.AllocGlobalSize - unsafe.Sizeof(global{}))
	_ = uint(shm.AllocSlotSize - unsafe.Sizeof(slotHeap{}))
)

// formatStamp folds alloc's layout choices; a store made by another build
// of alloc is refused.
func formatStamp() uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "alloc v1 sb=%d desc=%d meta=%d global=%d slot=%d classes=%d log=%d/%d/%d",
		SuperblockSize, unsafe.Sizeof(desc{}), unsafe.Sizeof(regionMeta{}), unsafe.Sizeof(global{}),
		unsafe.Sizeof(slotHeap{}), NumClasses, logInline, logChunks, chunkEntries)
	for _, c := range Classes[1:] {
		fmt.Fprintf(h, " %d/%d/%d", c.Size, c.Blocks, c.BlockStart)
	}
	return h.Sum64()
}
