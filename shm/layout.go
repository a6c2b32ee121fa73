//go:build linux && (amd64 || arm64)

package shm

import (
	"fmt"
	"hash/fnv"
	"sync/atomic"
	"unsafe"
)

// Magic marks a complete control segment. The creator stores it last.
const Magic uint64 = 0x31_45_52_4f_54_53_4d_48 // "HMSTORE1" little-endian

// LayoutVersion changes whenever a shared struct changes meaning.
// 2: commit versions may run ahead of the clock (txn's "The version
// clock"); a build of version 1 would wait forever on such a word.
// 3: a Dict entry has a lock word of its own, which an overwrite of its
// value takes instead of the stripe's (objects' entry layout); a build of
// version 2 would neither take nor check it.
const LayoutVersion uint32 = 3

// CacheLine is the unit that shared fields written by different processes
// are kept apart by.
const CacheLine = 64

// PageSize is the alignment of every area in the control segment.
const PageSize = 4096

// Part names an area of the control segment, or of each slot, that belongs
// to one layer. shm fixes the sizes; each layer asserts at compile time that
// its struct fits.
type Part int

// The parts, one per layer that keeps state in the control segment.
const (
	PartAlloc Part = iota
	PartReclaim
	PartIPC
	PartTxn
	numParts
)

var partNames = [numParts]string{"alloc", "reclaim", "ipc", "txn"}

// String names the layer that owns the part.
func (p Part) String() string {
	if p < 0 || p >= numParts {
		return fmt.Sprintf("part(%d)", int(p))
	}
	return partNames[p]
}

// Sizes of alloc's areas, as constants so that alloc can pin its structs
// against them at compile time.
const (
	AllocGlobalSize = 64 << 10
	AllocSlotSize   = 8<<10 - 64
)

// GlobalPartSize is the size of each layer's global area in the control
// segment.
var GlobalPartSize = [numParts]uintptr{
	PartAlloc:   AllocGlobalSize, // class locks, fullness bins, superblock pool
	PartReclaim: 4 << 10,         // format stamp, overflow retire ring
	PartIPC:     64 << 10,        // parking table
	PartTxn:     4 << 10,         // version clock, root Dict handle
}

// SlotSize is the size of one slot, header and parts included.
const SlotSize = 16 << 10

// SlotPartOffset and SlotPartSize place each layer's part inside a slot,
// after the 64-byte SlotHeader.
var (
	SlotPartOffset = [numParts]uintptr{PartAlloc: 64, PartReclaim: 8 << 10, PartIPC: 10 << 10, PartTxn: 10<<10 + 64}
	SlotPartSize   = [numParts]uintptr{PartAlloc: AllocSlotSize, PartReclaim: 2 << 10, PartIPC: 64, PartTxn: 6<<10 - 64}
)

// Header is the first page of the control segment.
//
//	+---------------------------+ 0
//	| Magic        (atomic u64) |  written last by the creator
//	| Version, HeaderSize       |  immutable after creation
//	| Stamp                     |  layout stamp (struct sizes, cache line, word)
//	| RegionSize, MaxRegions    |  immutable
//	| Procs, Slots, SlotsPerProc|  immutable: table sizes
//	| Mode, Created             |  immutable
//	| ControlSize               |  immutable: expected size of the file
//	+---------------------------+ (cache line)
//	| Regions      (atomic u32) |  regions published; written under growLock
//	| growLock, recoverLock     |  Mutex words
//	| Recovered    (atomic u64) |  processes recovered so far (statistics)
//	| AttachSeq    (atomic u64) |  incarnation counter for process entries
//	+---------------------------+
//
// Everything before the cache-line gap is written once by the creator before
// it publishes Magic, and only read afterwards, so readers need no atomics
// once they have loaded Magic.
type Header struct {
	Magic        atomic.Uint64
	Version      uint32
	HeaderSize   uint32
	Stamp        uint64
	RegionSize   uint64
	MaxRegions   uint32
	Procs        uint32
	Slots        uint32
	SlotsPerProc uint32
	Mode         uint32
	_            uint32
	Created      int64
	ControlSize  uint64
	_            [2*CacheLine - 72]byte

	// Regions is the number of region files published (regions 1..Regions
	// exist and have full size). Written by the process holding growLock,
	// with a store that publishes the new file; read by anyone resolving a
	// handle, who then maps the file.
	Regions atomic.Uint32
	// growLock serializes region creation.
	growLock Mutex
	// recoverLock serializes the recovery of dead processes.
	recoverLock Mutex
	_           uint32
	// Recovered counts processes recovered; written under recoverLock, read
	// by info.
	Recovered atomic.Uint64
	// AttachSeq hands each attaching process an incarnation number (Add).
	AttachSeq atomic.Uint64
	_         [CacheLine - 32]byte
}

// RegionEntry is one row of the region table.
type RegionEntry struct {
	// Created is the unix time in nanoseconds the region was published;
	// written under growLock before Header.Regions is raised.
	Created int64
	_       uint64
}

// Process states in ProcEntry.State.
const (
	ProcFree       uint32 = 0 // entry unused
	ProcAlive      uint32 = 1 // entry used by an attached process (alive unless its lock byte is free)
	ProcRecovering uint32 = 2 // a recoverer is repairing what the dead process held
)

// ProcEntry is one row of the process table, on its own cache line.
//
// The entry is written by its process at attach (after it took its lock
// byte, so a reader that sees ProcAlive and a free lock byte knows the
// process is dead) and by the recoverer. Readers (liveness checks, info)
// load the fields atomically and may see an entry mid-attach: State is
// stored last.
type ProcEntry struct {
	State    atomic.Uint32
	PID      atomic.Uint32
	Start    atomic.Uint64 // start time in clock ticks after boot (/proc/pid/stat field 22)
	Attached atomic.Int64  // unix nanos
	Seq      atomic.Uint64 // incarnation (Header.AttachSeq), part of the lock token
	_        [CacheLine - 32]byte
}

// SlotHeader opens every slot. Owner is written with CAS by a process
// claiming a free slot, and stored 0 by the process giving it back or by the
// recoverer of a dead owner; everyone reads it. Leases and LeasedAt are
// written by the owner (LeasedAt also cleared by the recoverer) and read by
// inspectors; stale values are harmless.
type SlotHeader struct {
	Owner    atomic.Uint32 // proc index + 1, 0 when free
	_        uint32
	Leases   atomic.Uint64 // leases handed out (statistics)
	LeasedAt atomic.Int64  // unix nanos the current lease began, 0 when idle
	_        [CacheLine - 24]byte
}

// Compile-time size pins: a change here is a layout change.
const (
	_ = uint(unsafe.Sizeof(Header{})) - 3*CacheLine
	_ = uint(3*CacheLine) - uint(unsafe.Sizeof(Header{}))
	_ = uint(unsafe.Sizeof(ProcEntry{})) - CacheLine
	_ = uint(CacheLine) - uint(unsafe.Sizeof(ProcEntry{}))
	_ = uint(unsafe.Sizeof(SlotHeader{})) - CacheLine
	_ = uint(CacheLine) - uint(unsafe.Sizeof(SlotHeader{}))
)

// layoutStamp folds every size this build assumes into one word, as LMDB's
// MDB_LOCK_FORMAT does: two builds that disagree on any of them refuse to
// share a store.
func layoutStamp() uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "hdr=%d proc=%d slot=%d/%d region=%d cl=%d word=%d page=%d",
		unsafe.Sizeof(Header{}), unsafe.Sizeof(ProcEntry{}), unsafe.Sizeof(SlotHeader{}), SlotSize,
		unsafe.Sizeof(RegionEntry{}), CacheLine, unsafe.Sizeof(uintptr(0)), PageSize)
	for p := Part(0); p < numParts; p++ {
		fmt.Fprintf(h, " %s=%d/%d+%d", p, GlobalPartSize[p], SlotPartOffset[p], SlotPartSize[p])
	}
	return h.Sum64()
}

// controlLayout gives the offset of every area for a header's table sizes.
type controlLayout struct {
	regionTable uintptr
	procTable   uintptr
	globalPart  [numParts]uintptr
	slotTable   uintptr
	size        uintptr
}

func pageUp(n uintptr) uintptr { return (n + PageSize - 1) &^ (PageSize - 1) }

func computeLayout(maxRegions, procs, slots uint32) controlLayout {
	var l controlLayout
	off := uintptr(PageSize)
	l.regionTable = off
	off = pageUp(off + uintptr(maxRegions+1)*unsafe.Sizeof(RegionEntry{}))
	l.procTable = off
	off = pageUp(off + uintptr(procs)*unsafe.Sizeof(ProcEntry{}))
	for p := Part(0); p < numParts; p++ {
		l.globalPart[p] = off
		off = pageUp(off + GlobalPartSize[p])
	}
	l.slotTable = off
	off += uintptr(slots) * SlotSize
	l.size = pageUp(off)
	return l
}

func init() {
	// The slot parts must not overlap and must fit.
	end := unsafe.Sizeof(SlotHeader{})
	for p := Part(0); p < numParts; p++ {
		if SlotPartOffset[p] < end || SlotPartOffset[p]%CacheLine != 0 {
			panic("shm: slot part " + p.String() + " overlaps or is misaligned")
		}
		end = SlotPartOffset[p] + SlotPartSize[p]
	}
	if end > SlotSize {
		panic("shm: slot parts exceed SlotSize")
	}
}
