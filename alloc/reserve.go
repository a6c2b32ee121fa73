package alloc

import (
	"fmt"

	"github.com/shmstore/shmstore/handle"
)

// # The reserve, and why deleting always works
//
// A transaction that only frees (a delete, a pop, a whole Dict unlinked)
// still allocates at commit: the batch that lists what it retires, a
// merge batch when its slot's retire ring is full, redo-log chunks its
// slot does not have yet. If ordinary allocations could take the last
// free superblock, a store filled to ErrOutOfMemory could never free
// anything again. So once the store cannot grow, ordinary allocations
// leave the last R superblocks of the pool alone, and only allocations
// made for commit and retirement (UseMetadata) may take them. R is
// reserveFor(the store's usable superblocks): a sixteenth of them, at
// least 6 and at most 32 (2 MiB), never more than a quarter.
//
// What a metadata allocation takes from the reserve. It is served, in
// this order: like any allocation (the heap's superblock of its class,
// the global bins, a superblock carved above the reserve); else by a free
// block of a larger class (the heap's or the bins', no carving); else by
// a run of whole superblocks of its own from the reserve: one superblock
// for anything up to 64 KiB. The run holds nothing else, so nothing
// ordinary ever lands in the reserve, and freeing it gives the
// superblocks straight back to the pool: the reserve refills as soon as
// what was drawn from it is freed.
//
// What one freeing commit draws, at most (txn and objects keep to it):
// its retire batch, 16 bytes an entry: one superblock up to 4095 entries
// (about 2000 deleted keys, each an entry and its value's blob); a merge
// batch (1.9 KiB) when its ring is full: one; redo-log chunks of 8192
// words beyond the 640 in the slot: none for a commit of up to ~300 word
// stores, one per further 4096 stores; a finalizer's step (objects'
// releaseChunk of 1024 children: ~7200 log words, a batch of at most
// 1024 entries): three. Table shrinks are skipped when memory is short;
// the alloc log's chunks are needed only past 896 allocations. So a
// commit that deletes up to ~2000 keys draws at most 3 superblocks, and
// the reserve holds two such commits at its least and ten at its most.
//
// Why that is enough even when more commit at once: a commit that finds
// the reserve drained gets ErrOutOfMemory from the allocation, and txn
// aborts it (its locks, its snapshot and its allocations go back; a run
// at once to the pool), collects what is retired and tries again. Every
// superblock of the reserve is held either by a commit in flight, which
// ends (a committer holding its locks waits for nothing), or by metadata
// a commit retired with what it freed, which that collection frees once
// no snapshot can see it. So R decides how many freeing commits go
// through at once at a full store, not whether each one does. Two limits
// remain. A commit larger than the reserve (tens of thousands of deletes
// in one transaction at a full store) can fail: split it, or delete the
// Dict that holds the keys (one entry, whatever its size). And a snapshot
// that stays open holds back everything retired after it began, the
// reserve's runs included: at a full store with nothing else free, about
// R freeing commits then go through (a superblock each) before the next
// fails too, with an error that names that transaction (txn).
//
// A value that replaces a larger one in the same commit (UseReplacement:
// objects' overwrite with a smaller value) may take the upper half of the
// reserve, but never its lower half: values stay until they are deleted,
// and the metadata half must stay whole for the deletes that would free
// them.

// Use says what an allocation is for, and so how much of the reserve it
// may take once the store cannot grow.
type Use uint8

// The uses.
const (
	// UseOrdinary: user data and everything else; leaves the reserve alone.
	UseOrdinary Use = iota
	// UseReplacement: a value that replaces a larger one in the same
	// commit; may take the upper half of the reserve.
	UseReplacement
	// UseMetadata: what a commit and retirement need (retire and merge
	// batches, redo-log chunks, a finalizer's steps); may take it all.
	UseMetadata
)

// Reserve bounds: see the essay above.
const (
	reserveMin = 6
	reserveMax = 32
)

// reserveFor is the reserve of a store with usable superblocks (all
// regions at the maximum size, without their metadata).
func reserveFor(usable uint64) uint32 {
	r := min(max(usable/16, reserveMin), reserveMax, usable/4)
	return uint32(r)
}

// floor is how many superblocks an allocation of use u leaves in the pool.
func (a *Allocator) floor(u Use) uint32 {
	switch u {
	case UseMetadata:
		return 0
	case UseReplacement:
		return a.reserve / 2
	}
	return a.reserve
}

// MaxBlock is the largest allocation the store can hold: a region less
// its metadata superblocks (larger requests fail with ErrTooLarge).
func (a *Allocator) MaxBlock() int { return int(a.geo.nsb-a.geo.metaSBs) * SuperblockSize }

// ReserveSuperblocks is the size of the reserve in superblocks.
func (a *Allocator) ReserveSuperblocks() int { return int(a.reserve) }

// Using makes the heap's allocations serve use u until the next call, and
// returns the use it had. The heap's goroutine calls it around what it
// allocates for u (defer h.Using(h.Using(UseMetadata))). A lease starts
// with UseOrdinary.
func (h *heap) Using(u Use) (prev Use) {
	prev, h.use = h.use, u
	return prev
}

// errNoRoom is what a heap's refill says when it may not carve (noCarve)
// and found no superblock with room.
var errNoRoom = fmt.Errorf("alloc: no free block of the class without carving: %w", ErrOutOfMemory)

// allocReserved serves a small request of a heap whose use may take the
// reserve, after the ordinary path (class c) failed: a free block of a
// larger class, else a run of its own (see the essay).
func (h *heap) allocReserved(n, c int) (handle.Handle, []byte, error) {
	u := h.use
	h.use, h.noCarve = UseOrdinary, true
	for c2 := c + 1; c2 <= NumClasses; c2++ {
		if hd, b, err := h.Alloc(int(Classes[c2].Size)); err == nil {
			h.use, h.noCarve = u, false
			return hd, b[:n], nil
		}
	}
	h.use, h.noCarve = u, false
	return h.allocLarge(n)
}

// Short reports whether memory is short: the store is at its maximum size
// and the pool is down to (near) the reserve, or an allocation starved.
// Layers above then hand back what they keep for speed (txn's redo-log
// chunks).
func (a *Allocator) Short() bool { return a.poolLow() }

// FreeSuperblocks is the number of free superblocks in the pool (a
// snapshot: others take and return them all the time).
func (a *Allocator) FreeSuperblocks() int64 { return a.g.poolFree.Load() }

// AskTrim asks every process to hand back the current superblocks of the
// heaps it keeps idle (Trim with all; txn's engines watch TrimAsked). A
// transaction that found the store full calls it before it waits for
// memory to come back.
func (a *Allocator) AskTrim() { a.g.trimAsked.Add(1) }

// TrimAsked is the number of AskTrim calls so far, in any process: a
// process that saw it change trims its idle heaps (Heap.Trim).
func (a *Allocator) TrimAsked() uint32 { return a.g.trimAsked.Load() }

// Current is how many current superblocks the heap holds (one at most per
// size class): what a Trim with all hands back. Only the heap's goroutine
// may call it.
func (h *heap) Current() int {
	n := 0
	for c := 1; c <= NumClasses; c++ {
		if h.cur[c].d != nil {
			n++
		}
	}
	return n
}

// Trim hands every wholly free current superblock of the heap back to the
// pool and returns how many it gave back. With all, the heap's other
// current superblocks go to the global heap too, where any heap can take
// their free blocks: a heap kept idle while another cannot allocate holds
// nothing back. Only the heap's goroutine may call it (the holder of the
// slot's lease, or code that keeps the slot idle and so has it to
// itself).
func (h *heap) Trim(all bool) int {
	n := h.trim()
	if all {
		for c := 1; c <= NumClasses; c++ {
			if h.cur[c].d != nil {
				h.releaseCurrent(c)
			}
		}
	}
	return n
}
