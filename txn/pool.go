//go:build linux && (amd64 || arm64)

package txn

import "sync/atomic"

// idlePool holds this process's transactions whose slot is leased but
// unused: at most one in each cell, with as many cells as the process may
// lease slots (SlotsPerProc). get takes one with a CompareAndSwap and put
// leaves one in an empty cell, so a transaction's way in and out takes no
// mutex and writes nothing shared with other processes: a read-only
// transaction's only shared writes are its epoch's Enter and Exit, to its
// own slot. Goroutines that find the pool empty go to the engine's slow
// path (mu, freed), which leases more slots or waits.
//
// All of it is process memory, used by this process's goroutines:
//   - cells[i]: take CASes a *Tx to nil, leave CASes nil to a *Tx, the
//     trim and Close swap them out under the engine's mu. A transaction is
//     in one cell at most, and in none while it runs. A take's successful
//     CAS acquires what the leave that filled the cell published: the
//     transaction's process-local state as its last run left it.
//   - waiting: goroutines in the slow path; each adds 1 under mu before it
//     looks at the cells and takes it back before it leaves mu. leave
//     loads it after filling a cell and, when nonzero, signals freed under
//     mu. Both are sequentially consistent, so either the waiter's look
//     finds the transaction or the leave sees the waiter, and the signal,
//     taken under mu, cannot come between the waiter's look and its Wait.
//   - closed: stored (true, or back to false when Close refuses) under mu
//     before Close empties the cells; leave loads it after filling a cell
//     and takes its transaction back out if it is set. Only one of them
//     wins the cell, so a transaction left as the engine closes is either
//     released by Close or handed back to the slow path of put.
type idlePool struct {
	cells   []atomic.Pointer[Tx]
	waiting atomic.Int32
	closed  atomic.Bool
}

func newIdlePool(n int) idlePool { return idlePool{cells: make([]atomic.Pointer[Tx], n)} }

// take returns an idle transaction, or nil if there is none.
func (p *idlePool) take() *Tx {
	for i := range p.cells {
		if tx := p.cells[i].Load(); tx != nil && p.cells[i].CompareAndSwap(tx, nil) {
			return tx
		}
	}
	return nil
}

// leave puts tx in an empty cell and reports whether it stays there:
// false once the pool is closed (the caller then gives its slot back).
func (p *idlePool) leave(tx *Tx) bool {
	if p.closed.Load() {
		return false
	}
	for i := range p.cells {
		if p.cells[i].CompareAndSwap(nil, tx) {
			if p.closed.Load() && p.cells[i].CompareAndSwap(tx, nil) {
				return false // Close came meanwhile: not left after all
			}
			return true
		}
	}
	return false // cannot happen: a cell for every slot the process may lease
}

// drain takes every idle transaction out.
func (p *idlePool) drain() []*Tx {
	var out []*Tx
	for i := range p.cells {
		if tx := p.cells[i].Swap(nil); tx != nil {
			out = append(out, tx)
		}
	}
	return out
}

// count is how many transactions are idle now (a snapshot).
func (p *idlePool) count() int {
	n := 0
	for i := range p.cells {
		if p.cells[i].Load() != nil {
			n++
		}
	}
	return n
}
