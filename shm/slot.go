//go:build linux && (amd64 || arm64)

package shm

import (
	"fmt"
	"sync"
	"time"
)

// leasePool is this process's share of the slot table: the slots it has
// claimed (Owner = proc+1) and which of them are not leased right now.
// Process-local; guarded by mu.
type leasePool struct {
	mu       sync.Mutex
	cond     sync.Cond
	limit    int
	owned    []int
	free     []int
	isLeased []bool   // by slot
	leaseNo  []uint64 // by slot: the number of its current lease (SlotHeader.Leases)
	leased   int
	done     bool
}

func (p *leasePool) init(limit, slots int) {
	p.cond.L = &p.mu
	p.limit = limit
	p.isLeased = make([]bool, slots)
	p.leaseNo = make([]uint64, slots)
}

// drain forbids new leases and returns the owned slots, or reports how many
// are still leased (and forbids nothing).
func (p *leasePool) drain() ([]int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.leased > 0 {
		return nil, p.leased
	}
	p.done = true
	return p.owned, 0
}

// Lease hands the calling goroutine a slot of its own until Release. It
// reuses one of this process's slots, claims a new one from the table while
// the process is below its limit, and otherwise waits for a Release. It
// fails with ErrTooManyProcs-like exhaustion only when the whole table is
// owned by live processes.
func (s *Store) Lease() (int, error) {
	slot, _, err := s.LeaseNumbered()
	return slot, err
}

// LeaseNumbered is Lease that also returns the lease's number (see
// LeaseNumber).
func (s *Store) LeaseNumbered() (int, uint64, error) {
	if err := s.Guard(); err != nil {
		return -1, 0, err
	}
	if s.proc < 0 {
		return -1, 0, fmt.Errorf("shm: lease a slot of %q: store opened read-only: %w", s.name, ErrBadOption)
	}
	p := &s.leases
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if p.done {
			return -1, 0, fmt.Errorf("shm: lease a slot of %q: %w", s.name, ErrClosed)
		}
		if n := len(p.free); n > 0 {
			slot := p.free[n-1]
			p.free = p.free[:n-1]
			p.isLeased[slot] = true
			p.leased++
			return slot, s.markLeased(slot), nil
		}
		if len(p.owned) < p.limit {
			if slot, ok := s.claimSlot(); ok {
				p.owned = append(p.owned, slot)
				p.isLeased[slot] = true
				p.leased++
				return slot, s.markLeased(slot), nil
			}
			if len(p.owned) == 0 {
				return -1, 0, fmt.Errorf("shm: lease a slot of %q: all %d slots owned by other processes: %w",
					s.name, s.NumSlots(), ErrNoSlots)
			}
		}
		p.cond.Wait()
	}
}

// Release gives a leased slot back to this process's pool. Releasing a
// slot that is not leased (twice, or another process's) is refused: the
// slot would otherwise be handed to two goroutines at once.
func (s *Store) Release(slot int) error { return s.release(slot, 0) }

// release ends the lease of slot; with no != 0 only if that is the current
// lease's number.
func (s *Store) release(slot int, no uint64) error {
	p := &s.leases
	p.mu.Lock()
	if slot < 0 || slot >= len(p.isLeased) || !p.isLeased[slot] || (no != 0 && p.leaseNo[slot] != no) {
		p.mu.Unlock()
		return fmt.Errorf("shm: release slot %d of %q: not leased by this process (or an earlier lease): %w", slot, s.name, ErrNotLeased)
	}
	p.isLeased[slot] = false
	s.Slot(slot).LeasedAt.Store(0)
	p.free = append(p.free, slot)
	p.leased--
	p.mu.Unlock()
	p.cond.Broadcast()
	return nil
}

// markLeased numbers the new lease and returns its number. REQUIRES:
// leases.mu held.
func (s *Store) markLeased(slot int) uint64 {
	h := s.Slot(slot)
	no := h.Leases.Add(1)
	s.leases.leaseNo[slot] = no
	h.LeasedAt.Store(time.Now().UnixNano())
	return no
}

// LeaseNumber is the number of slot i's current lease in this process (0
// if it is not leased here). Layers that hand out per-lease values keep it,
// so that a value from an earlier lease is refused (HoldsLease,
// ReleaseLease).
func (s *Store) LeaseNumber(i int) uint64 {
	p := &s.leases
	p.mu.Lock()
	defer p.mu.Unlock()
	if i < 0 || i >= len(p.isLeased) || !p.isLeased[i] {
		return 0
	}
	return p.leaseNo[i]
}

// HoldsLease reports whether lease number no of slot i is the current one.
func (s *Store) HoldsLease(i int, no uint64) bool {
	p := &s.leases
	p.mu.Lock()
	defer p.mu.Unlock()
	return no != 0 && i >= 0 && i < len(p.isLeased) && p.isLeased[i] && p.leaseNo[i] == no
}

// ReleaseLease is Release for the holder of lease number no: a stale copy
// (the slot released, maybe leased again since) is refused with
// ErrNotLeased.
func (s *Store) ReleaseLease(i int, no uint64) error {
	if no == 0 {
		return fmt.Errorf("shm: release slot %d of %q: no lease: %w", i, s.name, ErrNotLeased)
	}
	return s.release(i, no)
}

// claimSlot takes a free slot of the table for this process. The search
// starts at a point that depends on the process so that attaching
// processes do not all race for slot 0.
func (s *Store) claimSlot() (int, bool) {
	n := s.NumSlots()
	start := (s.proc * int(s.hdr.SlotsPerProc)) % n
	for k := 0; k < n; k++ {
		i := (start + k) % n
		h := s.Slot(i)
		if h.Owner.Load() == 0 && h.Owner.CompareAndSwap(0, uint32(s.proc+1)) {
			return i, true
		}
	}
	return -1, false
}

// SlotOwned reports whether slot i belongs to this process.
func (s *Store) SlotOwned(i int) bool {
	return s.proc >= 0 && s.Slot(i).Owner.Load() == uint32(s.proc+1)
}
