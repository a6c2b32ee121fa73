package alloc

import (
	"sync/atomic"
	"unsafe"

	"github.com/shmstore/shmstore/handle"
)

// ClassStats describes one size class across the store.
type ClassStats struct {
	Class       int     `json:"class"`
	Size        uint32  `json:"size"`
	Superblocks int     `json:"superblocks"` // spans (of Classes[Class].Span superblocks each)
	Owned       int     `json:"owned"`       // held by a heap
	Global      int     `json:"global"`      // in the global heap's bins
	BlocksUsed  uint64  `json:"blocks_used"`
	BlocksFree  uint64  `json:"blocks_free"`
	Frag        float64 `json:"fragmentation"` // 1 - used bytes / reserved bytes
}

// Stats describes the allocator's use of the store. The counts are read
// without locks: exact when the store is quiet, a close snapshot otherwise.
type Stats struct {
	Regions         int          `json:"regions"`
	RegionBytes     uint64       `json:"region_bytes"`   // mapped: regions x region size
	MetaBytes       uint64       `json:"meta_bytes"`     // region metadata superblocks
	ReservedBytes   uint64       `json:"reserved_bytes"` // superblocks in use, small and large
	UsedBytes       uint64       `json:"used_bytes"`     // allocated blocks, at their class size
	FreeBytes       uint64       `json:"free_bytes"`     // region bytes not in use by blocks
	FreeSuperblocks int          `json:"free_superblocks"`
	LargeBlocks     int          `json:"large_blocks"`
	LargeBytes      uint64       `json:"large_bytes"`
	ListRepairs     uint64       `json:"list_repairs"` // free lists rebuilt after a write into a freed block
	Classes         []ClassStats `json:"classes"`      // classes with superblocks only
}

// Stats walks the descriptors and state arrays.
func (a *Allocator) Stats() Stats {
	var s Stats
	var cls [NumClasses + 1]ClassStats
	s.Regions = int(a.st.Regions())
	s.ListRepairs = a.g.repairs.Load()
	s.RegionBytes = uint64(s.Regions) * a.rsize
	s.MetaBytes = uint64(s.Regions) * uint64(a.geo.metaSBs) * SuperblockSize
	a.eachDesc(func(id sbID, d *desc, base unsafe.Pointer) {
		switch d.kind() {
		case kindFree:
			s.FreeSuperblocks++
		case kindLargeHead:
			s.ReservedBytes += uint64(d.runLen) * SuperblockSize
			if d.large.Load()&1 != 0 {
				s.LargeBlocks++
				s.LargeBytes += uint64(d.runLen) * SuperblockSize
			}
		case kindTransit:
			s.ReservedBytes += uint64(max(d.runLen, 1)) * SuperblockSize
		case kindSmall:
			c := int(d.class())
			if c == 0 || c > NumClasses {
				return
			}
			s.ReservedBytes += uint64(Classes[c].Span) * SuperblockSize
			cs := &cls[c]
			cs.Superblocks++
			if d.owner.Load() != 0 {
				cs.Owned++
			} else {
				cs.Global++
			}
			states := statesOf(d, sbBase(base, id.index()), c)
			for i := uint32(0); i < Classes[c].Blocks; i++ {
				if atomic.LoadUint32(stateAt(states, i))&1 != 0 {
					cs.BlocksUsed++
				} else {
					cs.BlocksFree++
				}
			}
		}
	})
	for c := 1; c <= NumClasses; c++ {
		cs := cls[c]
		if cs.Superblocks == 0 {
			continue
		}
		cs.Class, cs.Size = c, Classes[c].Size
		used := cs.BlocksUsed * uint64(cs.Size)
		s.UsedBytes += used
		cs.Frag = 1 - float64(used)/float64(uint64(cs.Superblocks)*uint64(Classes[c].Span)*SuperblockSize)
		s.Classes = append(s.Classes, cs)
	}
	s.UsedBytes += s.LargeBytes
	s.FreeBytes = s.RegionBytes - s.MetaBytes - s.UsedBytes
	return s
}

// EachAllocated calls f with the handle of every allocated block (small
// blocks and large runs). For checks on a quiet store: while others
// allocate, blocks come and go under the walk.
func (a *Allocator) EachAllocated(f func(h handle.Handle)) {
	a.eachDesc(func(id sbID, d *desc, base unsafe.Pointer) {
		switch d.kind() {
		case kindLargeHead:
			if st := d.large.Load(); st&1 != 0 {
				f(handle.Make(id.region(), id.index()*(SuperblockSize/handle.Granule), uint16(st)))
			}
		case kindSmall:
			c := int(d.class())
			if c == 0 || c > NumClasses {
				return
			}
			cl := &Classes[c]
			states := statesOf(d, sbBase(base, id.index()), c)
			g0 := id.index()*(SuperblockSize/handle.Granule) + cl.BlockStart/handle.Granule
			for i := uint32(0); i < cl.Blocks; i++ {
				if st := atomic.LoadUint32(stateAt(states, i)); st&1 != 0 {
					f(handle.Make(id.region(), g0+i*(cl.Size/handle.Granule), uint16(st)))
				}
			}
		}
	})
}

// EachLogged calls f for every handle the slots' allocation logs hold
// (allocations not handed over yet) and for the log chunks themselves.
func (a *Allocator) EachLogged(f func(h handle.Handle)) {
	for s := 0; s < a.st.NumSlots(); s++ {
		sh := a.slotHeap(s)
		n := sh.logN
		for k := uint32(0); k < n && k < logInline; k++ {
			f(sh.inline[k])
		}
		for ci := uint32(0); ci < logChunks; ci++ {
			if sh.chunks[ci] == handle.Null {
				continue
			}
			f(sh.chunks[ci])
			if n <= logInline || ci*chunkEntries >= n-logInline {
				continue
			}
			b, err := a.Resolve(sh.chunks[ci])
			if err != nil {
				continue
			}
			m := min(n-logInline-ci*chunkEntries, chunkEntries)
			for k := uint32(0); k < m; k++ {
				f(*(*handle.Handle)(unsafe.Pointer(&b[k*8])))
			}
		}
	}
}
