//go:build linux && (amd64 || arm64)

package ipc

import (
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/shmstore/shmstore/shm"
)

// Buckets is the number of buckets of the parking table.
const Buckets = 1024

// bucket is one entry of the parking table, alone on its cache line so that
// waking one bucket does not disturb the others.
//
//	+----------------------+ 0
//	| seq     (atomic u32) |  the futex word: bumped by every Wake
//	| pad                  |
//	+----------------------+ 64
//
// seq is written (Add) by wakers and read by waiters, who sleep while it
// holds the value they read before checking their condition. Its increment
// publishes nothing by itself: the waker changed the watched word first,
// and waiters re-check that word after every wake-up.
type bucket struct {
	seq atomic.Uint32
	_   [shm.CacheLine - 4]byte
}

// table is the layout of shm.PartIPC: the buckets, and nothing else.
type table struct {
	b [Buckets]bucket
}

const _ = uint(64<<10) - uint(unsafe.Sizeof(table{})) // fits PartIPC (64 KiB)

// Table is one process's view of a store's parking table.
type Table struct {
	t *table
}

// New binds the parking table of st.
func New(st *shm.Store) *Table {
	return &Table{t: (*table)(st.GlobalPart(shm.PartIPC))}
}

// bucketOf hashes a store-wide address (a region and offset, the same in
// every process) to its bucket.
func (t *Table) bucketOf(key uint64) *bucket {
	h := key * 0x9e3779b97f4a7c15
	return &t.t.b[h>>54] // the top 10 bits: Buckets == 1<<10
}

// Ticket is what a waiter read before it checked its condition: a Wait
// with it returns at once if a Wake happened since.
type Ticket struct {
	b   *bucket
	seq uint32
}

// Prepare is the first half of a wait on key. The protocol, as in
// runtime/lock_futex.go:
//
//	waiter:                          waker:
//	    tk = Prepare(key)                change the watched word
//	    announce (set a waiters bit)     if the waiters bit was set:
//	    if condition still holds:            Wake(key)
//	        Wait(tk, timeout)
//	    re-check everything
//
// A Wake between Prepare and Wait bumps seq, so the futex wait returns at
// once: no wake-up is lost.
func (t *Table) Prepare(key uint64) Ticket {
	b := t.bucketOf(key)
	return Ticket{b, b.seq.Load()}
}

// Wait sleeps until a Wake on the ticket's bucket, a signal, or d has
// passed. Callers re-check their condition whatever the reason.
func (tk Ticket) Wait(d time.Duration) {
	shm.FutexWait(&tk.b.seq, tk.seq, d)
}

// Wake wakes every waiter of key's bucket, in every process. Waiters of
// other keys that share the bucket wake, re-check and sleep again.
func (t *Table) Wake(key uint64) {
	b := t.bucketOf(key)
	b.seq.Add(1)
	shm.FutexWake(&b.seq, 1<<30)
}

// WaitAnyOr sleeps until a Wake on any of the tickets' buckets (the
// first shm.MaxWaitv-1 of them), a change of extra from extraVal (a
// process-local word, bumped by whoever cancels the wait; nil: none), a
// signal, or d has passed: a waiter on several words (a transaction in
// Retry waits for any word it read to change). Tickets of one bucket may
// repeat. Callers re-check their condition whatever the reason.
func WaitAnyOr(tks []Ticket, extra *atomic.Uint32, extraVal uint32, d time.Duration) {
	var words [shm.MaxWaitv]*atomic.Uint32
	var vals [shm.MaxWaitv]uint32
	n := 0
	if extra != nil {
		words[0], vals[0] = extra, extraVal
		n = 1
	}
	for _, tk := range tks {
		if n == shm.MaxWaitv {
			break
		}
		dup := false
		for _, w := range words[:n] {
			if w == &tk.b.seq {
				dup = true
				break
			}
		}
		if !dup {
			words[n], vals[n] = &tk.b.seq, tk.seq
			n++
		}
	}
	shm.FutexWaitv(words[:n], vals[:n], d)
}
