//go:build linux && (amd64 || arm64)

package txn

import (
	"time"

	"github.com/shmstore/shmstore/handle"
)

// SlotInfo describes one slot of the table for inspection (shmctl txns).
// It is read without locks while others work: a snapshot, possibly
// mid-change.
type SlotInfo struct {
	Slot     int
	Proc     int    // process-table index of the owner, -1 when free
	PID      uint32 // the owner's pid (0 when free)
	Alive    bool   // the owner is alive
	Leased   bool   // a goroutine or thread holds the slot now
	State    string // idle, active, committing, releasing
	Active   bool   // in a transaction (published to reclaim)
	RV       uint64 // the running transaction's snapshot version
	Age      time.Duration
	Attempts uint32
	Locks    int    // locks logged by the commit under way
	WaitOn   uint64 // address of the lock word it waits on (0: none); in Retry, the first of RetryOn
	RetryOn  int    // words a transaction in Retry sleeps on (0: not in Retry)
	Commits  uint64
	Aborts   uint64
	Retired  int    // retire-ring entries the slot holds back
	Oldest   uint64 // the oldest epoch among them
}

// Slots describes every slot that has an owner or holds retired memory.
func (e *Engine) Slots() []SlotInfo {
	var out []SlotInfo
	now := time.Now()
	for i := 0; i < e.st.NumSlots(); i++ {
		h := e.st.Slot(i)
		sp := e.slotPart(i)
		owner := int(h.Owner.Load()) - 1
		retired, oldest := e.r.Held(i)
		if owner < 0 && retired == 0 {
			continue
		}
		state := sp.State.Load()
		si := SlotInfo{Slot: i, Proc: owner, State: StateName(state),
			Attempts: sp.Attempts.Load(), Commits: sp.Commits.Load(),
			Aborts: sp.Aborts.Load(), Retired: retired, Oldest: oldest}
		if state != StateIdle {
			si.Locks = int(sp.NLocks.Load()) // stale when idle
		}
		if w := sp.WaitOn.Load(); w != 0 {
			si.WaitOn = w - 1
		}
		si.RetryOn = int(sp.Waiting.Load())
		if owner >= 0 && owner < e.st.NumProcs() {
			si.PID = e.st.Proc(owner).PID.Load()
			si.Alive = e.st.ProcAlive(owner)
		}
		si.Leased = h.LeasedAt.Load() != 0
		si.RV, si.Active = e.r.Active(i)
		if !si.Active && state == StateIdle {
			si.Attempts = 0 // Started and Attempts are the last transaction's
		} else if st := sp.Started.Load(); st != 0 {
			si.Age = now.Sub(time.Unix(0, st))
		}
		out = append(out, si)
	}
	return out
}

// EachChunk calls f for every redo-log chunk the slots keep.
func (e *Engine) EachChunk(f func(h handle.Handle)) {
	for i := 0; i < e.st.NumSlots(); i++ {
		for _, hd := range e.slotPart(i).Chunks {
			if hd != handle.Null {
				f(hd)
			}
		}
	}
}
