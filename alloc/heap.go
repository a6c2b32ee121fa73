package alloc

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"github.com/shmstore/shmstore/handle"
)

// refill makes the current superblock of class c able to serve: collect its
// remote frees if enough came back, else hand it to the global heap and
// take another.
func (h *heap) refill(c int) error {
	cu := &h.cur[c]
	if d := cu.d; d != nil {
		if r := d.remote.Load(); r > 0 && (r >= d.nblocks/8 || h.a.g.atMax.Load() != 0) {
			h.collect(c)
			if d.localHead != 0 {
				return nil
			}
		}
		h.releaseCurrent(c)
	}
	err := h.acquire(c)
	if h.a.st.NeedsRecovery() {
		_, _ = h.a.st.TryRecoverDead() // a dead lock holder was seen; we hold no lock now
	}
	return err
}

// collect moves the remotely freed blocks of the current superblock of
// class c onto its local free list. The hint is reset before the scan, so
// frees that land during it count for the next collection.
func (h *heap) collect(c int) {
	cu := &h.cur[c]
	d := cu.d
	d.remote.Store(0)
	for i := uint32(0); i < d.fresh; i++ {
		sp := stateAt(cu.states, i)
		st := atomic.LoadUint32(sp)
		if st&statePending == 0 {
			continue
		}
		// Pending blocks are free; only the owner touches them.
		*sp = st &^ statePending
		blk := unsafe.Add(cu.blocks, uintptr(i)*uintptr(cu.size))
		*(*uint32)(blk) = d.localHead
		d.localHead = i + 1
		d.localFree++
	}
}

// releaseCurrent gives the current superblock of class c to the global heap
// (or the pool, if it is wholly free).
func (h *heap) releaseCurrent(c int) {
	cu := &h.cur[c]
	d := cu.d
	id := h.sh.current[c]
	h.sh.current[c] = 0 // desc.owner still names us: a crash here is recovered from the descriptor
	*cu = current{}
	h.a.toGlobal(id, d, c)
}

// acquire installs a superblock of class c that has a free block: from the
// global heap's bins, else carved from the pool (which grows the store).
func (h *heap) acquire(c int) error {
	trimmed, recovered, eager := false, false, h.noCarve
	for {
		if id, d, base := h.a.fromBins(c, h.mine, eager); d != nil {
			h.install(c, id, d, base)
			if (d.localHead == 0) != (d.localFree == 0) {
				// A count the list does not match: a link was overwritten
				// while the superblock was someone else's.
				h.a.repairSmall(d, c, base, id, h.cur[c].states)
				h.a.g.repairs.Add(1)
			}
			if d.remote.Load() > 0 {
				h.collect(c)
			}
			if d.localHead != 0 || d.fresh < d.nblocks {
				return nil
			}
			h.releaseCurrent(c) // the hint promised frees that were not there
			continue
		}
		if h.noCarve {
			return errNoRoom
		}
		id, d, base, err := h.a.carve(c, h.mine)
		if err == nil {
			h.install(c, id, d, base)
			return nil
		}
		if !errors.Is(err, ErrOutOfMemory) {
			return err
		}
		if !eager {
			// Before anything else, every full superblock of the class is
			// looked at, not only the first few: one free block is enough.
			eager = true
			continue
		}
		if !h.relieve(&trimmed, &recovered) {
			return err
		}
	}
}

// relieve tries, once each, what can make room before an allocation gives
// up: this heap's own wholly free superblocks, then the memory that dead
// processes hold (recovery gives it back). It reports whether it found any.
func (h *heap) relieve(trimmed, recovered *bool) bool {
	if !*trimmed {
		*trimmed = true
		if h.trim() > 0 {
			return true
		}
	}
	if !*recovered {
		*recovered = true
		if n, err := h.a.st.RecoverDead(); err == nil && n > 0 {
			return true
		}
	}
	return false
}

// trim hands every wholly free current superblock of the heap back to the
// pool (collecting remote frees first) and returns how many it gave back.
// The heap does it at the end of each lease once the store has reached its
// maximum size, and before an allocation reports ErrOutOfMemory, so that
// what was freed can serve other classes and processes.
func (h *heap) trim() int {
	n := 0
	for c := 1; c <= NumClasses; c++ {
		d := h.cur[c].d
		if d == nil {
			continue
		}
		if d.remote.Load() > 0 {
			h.collect(c)
		}
		if d.localFree == d.fresh {
			h.releaseCurrent(c)
			n++
		}
	}
	return n
}

// logSlow appends hd to the log's chunks, allocating a chunk when needed.
func (h *heap) logSlow(hd handle.Handle) error {
	k := h.sh.logN - logInline
	ci := k / chunkEntries
	if ci >= logChunks {
		return fmt.Errorf("alloc: slot %d holds %d allocations not handed over: %w", h.slot, h.sh.logN, ErrLogFull)
	}
	p, err := h.chunkAddr(int(ci))
	if err != nil {
		return err
	}
	*(*handle.Handle)(unsafe.Add(p, uintptr(k%chunkEntries)*8)) = hd
	h.sh.logN++
	return nil
}

// chunkAddr returns log chunk ci, allocating it if the slot has none.
func (h *heap) chunkAddr(ci int) (unsafe.Pointer, error) {
	if p := h.chunk[ci]; p != nil && h.sh.chunks[ci] != handle.Null {
		return p, nil
	}
	if h.sh.chunks[ci] == handle.Null {
		// The chunk's handle is written into the slot before its state
		// flips, like any logged allocation.
		if _, err := h.a.allocRun(1, h.mine, &h.sh.chunks[ci], h.a.floor(h.use)); err != nil {
			return nil, fmt.Errorf("alloc: grow allocation log: %w", err)
		}
	}
	b, err := h.a.Resolve(h.sh.chunks[ci])
	if err != nil {
		return nil, fmt.Errorf("alloc: log chunk %d: %w", ci, err)
	}
	h.chunk[ci] = unsafe.Pointer(&b[0])
	return h.chunk[ci], nil
}

// LogLen is the number of allocations the slot holds unhanded.
func (h *heap) LogLen() int { return int(h.sh.logN) }

// ForgetLog declares every logged allocation handed over (linked into shared
// data, or freed): recovery will no longer free them. One store: a crash
// before it frees them all, after it none.
func (h *heap) ForgetLog() { h.sh.logN = 0 }

// Adopt logs a handle the caller is taking out of shared data, so that a
// crash before the caller frees it or hands it on does not leak it.
func (h *heap) Adopt(hd handle.Handle) error {
	if k := h.sh.logN; k < logInline {
		h.sh.inline[k] = hd
		h.sh.logN = k + 1
		return nil
	}
	return h.logSlow(hd)
}

// FreeLog frees every logged allocation that is still allocated with its
// logged generation (an abort), then empties the log.
func (h *heap) FreeLog() {
	h.a.freeLogged(h.sh, func(hd handle.Handle) { _ = h.Free(hd) })
}

// freeLogged calls free for each logged handle, then empties the log. The
// log stays intact until the end, so a crash midway repeats the frees, and
// the repeated ones are skipped by their generation.
func (a *Allocator) freeLogged(sh *slotHeap, free func(handle.Handle)) {
	n := sh.logN
	for k := uint32(0); k < n && k < logInline; k++ {
		free(sh.inline[k])
	}
	for ci := uint32(0); n > logInline && ci < logChunks && ci*chunkEntries < n-logInline; ci++ {
		b, err := a.Resolve(sh.chunks[ci])
		if err != nil {
			break // the chunk was never allocated: nothing was logged in it
		}
		m := min(n-logInline-ci*chunkEntries, chunkEntries)
		for k := uint32(0); k < m; k++ {
			free(*(*handle.Handle)(unsafe.Pointer(&b[k*8])))
		}
	}
	sh.logN = 0
}

// allocLarge allocates a run of whole superblocks, leaving the part of the
// reserve the heap's use may not take.
func (h *heap) allocLarge(n int) (handle.Handle, []byte, error) {
	if n <= 0 {
		return handle.Null, nil, fmt.Errorf("alloc: allocate %d bytes: %w", n, ErrBadSize)
	}
	nsb := (uint64(n) + SuperblockSize - 1) / SuperblockSize
	if nsb > uint64(h.a.geo.nsb-h.a.geo.metaSBs) {
		return handle.Null, nil, fmt.Errorf("alloc: allocate %d bytes: the largest block is %d bytes (a region of %d bytes less its metadata): %w",
			n, h.a.MaxBlock(), h.a.rsize, ErrTooLarge)
	}
	var slot *handle.Handle
	if k := h.sh.logN; k < logInline {
		slot = &h.sh.inline[k]
	} else {
		// Reserve the chunk entry first; the handle is written into it.
		k -= logInline
		ci := k / chunkEntries
		if ci >= logChunks {
			return handle.Null, nil, fmt.Errorf("alloc: slot %d: %w", h.slot, ErrLogFull)
		}
		p, err := h.chunkAddr(int(ci))
		if err != nil {
			return handle.Null, nil, err
		}
		slot = (*handle.Handle)(unsafe.Add(p, uintptr(k%chunkEntries)*8))
	}
	// The log count is raised before the run is taken: an entry whose
	// handle is null or stale is skipped by recovery.
	*slot = handle.Null
	h.sh.logN++
	floor := h.a.floor(h.use)
	p, err := h.a.allocRun(uint32(nsb), h.mine, slot, floor)
	for trimmed, recovered := false, false; errors.Is(err, ErrOutOfMemory) && h.relieve(&trimmed, &recovered); {
		p, err = h.a.allocRun(uint32(nsb), h.mine, slot, floor)
	}
	if err != nil {
		h.sh.logN--
		if h.a.st.NeedsRecovery() {
			_, _ = h.a.st.TryRecoverDead()
		}
		return handle.Null, nil, err
	}
	return *slot, unsafe.Slice((*byte)(p), n), nil
}

// TruncateLog forgets the log entries from n on (a nested scope that handed
// its allocations over, or a savepoint); entries before n stay logged.
func (h *heap) TruncateLog(n int) {
	if n >= 0 && uint32(n) < h.sh.logN {
		h.sh.logN = uint32(n)
	}
}
