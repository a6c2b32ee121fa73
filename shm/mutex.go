//go:build linux && (amd64 || arm64)

package shm

import (
	"runtime"
	"sync/atomic"
	"time"
)

// Mutex is a lock in shared memory that survives the death of its holder.
//
// The word holds who has the lock, so that a waiter can tell a slow holder
// from a dead one:
//
//	0                      unlocked
//	token<<1 | 0           locked by the process whose lock token is token
//	token<<1 | 1           locked, and someone may be sleeping on the word
//
// A token is a process's index in the process table plus one, and the low
// bits of its incarnation (ProcEntry.Seq), so a process that reuses a dead
// one's entry does not inherit its locks.
//
// The protocol, in the style of runtime/lock_futex.go:
//
//	lock:
//	    if CAS(0, me<<1) { return }                  // fast path
//	    spin a little, retrying the CAS
//	    loop:
//	        v = load
//	        if v == 0 && CAS(0, me<<1|1) { return }  // take it, keep waking others
//	        if v&1 == 0 && !CAS(v, v|1) { continue } // announce a sleeper
//	        futexwait(word, v|1, timeout)
//	        if timed out && holder(v) is dead && CAS(v|1, me<<1|1) {
//	            return stolen                        // caller repairs
//	        }
//	unlock:
//	    if Swap(0)&1 != 0 { futexwake(word, 1) }
//
// A stolen lock means the data it guards may be half-changed: Lock reports
// it and the caller repairs before going on (each lock's owner knows how).
//
// Lock order, so that no wait can close a cycle: the recovery lock, then a
// retire ring's lock (reclaim), then an allocator class lock, then the
// allocator pool lock. Code holding a lock
// never waits for one earlier in that order (RecoverDead is called holding
// nothing; the pool lock's holder takes no other lock), so a dead holder is
// the only thing that can keep a Mutex held for long.
type Mutex struct {
	// word is written with CAS by lockers, Swap by the holder, and read by
	// waiters and inspectors. Taking it acquires what the last holder
	// published; the Swap in Unlock publishes the holder's writes.
	word atomic.Uint32
}

// lockWaitTimeout is how long a waiter sleeps before it checks that the
// holder is alive.
const lockWaitTimeout = 20 * time.Millisecond

const lockSpins = 64

// Holder returns the lock token of the holder, or 0 when unlocked.
func (m *Mutex) Holder() uint32 { return m.word.Load() >> 1 }

// Lock takes m for this process. It returns true when it took the lock from
// a dead holder; the caller must then repair what m guards before using it.
func (s *Store) Lock(m *Mutex) (stolen bool) {
	me := s.token << 1
	if m.word.CompareAndSwap(0, me) {
		return false
	}
	for i := 0; i < lockSpins; i++ {
		runtime.Gosched()
		if m.word.Load() == 0 && m.word.CompareAndSwap(0, me) {
			return false
		}
	}
	// One deadline across wake-ups: a waiter woken often (by signals, or
	// by releases that others win) still checks the holder every
	// lockWaitTimeout.
	check := time.Now().Add(lockWaitTimeout)
	for {
		v := m.word.Load()
		if v == 0 {
			if m.word.CompareAndSwap(0, me|1) {
				return false
			}
			continue
		}
		if v&1 == 0 {
			if !m.word.CompareAndSwap(v, v|1) {
				continue
			}
			v |= 1
		}
		FutexWait(&m.word, v, time.Until(check))
		if time.Now().Before(check) {
			continue
		}
		check = time.Now().Add(lockWaitTimeout)
		if m.word.Load() == v && !s.TokenAlive(v>>1) && m.word.CompareAndSwap(v, me|1) {
			s.deadSeen.Store(true)
			return true
		}
	}
}

// Unlock releases m. The caller must hold it.
func (s *Store) Unlock(m *Mutex) {
	if m.word.Swap(0)&1 != 0 {
		FutexWake(&m.word, 1)
	}
}

// TakeOver takes m if its holder is dead, for a recoverer that repairs what
// a dead process left behind even when nobody is waiting. It returns true
// when the caller now holds m and must repair and Unlock it.
func (s *Store) TakeOver(m *Mutex) bool {
	v := m.word.Load()
	if v == 0 || s.TokenAlive(v>>1) {
		return false
	}
	return m.word.CompareAndSwap(v, s.token<<1|1)
}
