//go:build linux && (amd64 || arm64)

package txn

// This file owns fairness: every read-write transaction commits within a
// bounded number of attempts, however hot what it touches.
//
// Aborted transactions already wait for the word they conflicted on
// (waitConflict) and lock waits queue on futexes, so writers serialize
// instead of spinning. That is not a bound: a transaction whose attempt
// is long (its function works between its reads and its commit) can keep
// losing to short ones that commit in between. So, as DESIGN's privileged
// transaction: a read-write transaction that has aborted privilegedAfter
// times takes the store-wide token (Privileged: slot+1 of its holder)
// before its next attempt, waiting for any other holder first. While the
// token is held, every other committer waits for it at the start of its
// commit, before it takes any lock; so the holder's reads can be
// invalidated only by commits that were already past that check when it
// took the token, at most one per slot. The holder therefore commits
// within privilegedAfter + slots + 1 attempts, and gives the token back
// when its transaction ends (committed, failed, or waiting in Retry:
// a waiter must not stop the world).
//
// No cycle: a committer waits for the token holding no locks; the holder
// may wait for locks of committers past the check, which finish without
// waiting for anything. Read-only transactions never wait for the token
// (a starved View locks what it read instead: prelock.go). A holder that
// dies is found by the waiters' liveness check, which clears the token.

import "time"

// privilegedAfter is how many aborts a read-write transaction suffers
// before it takes the token.
const privilegedAfter = 8

// takePrivilege takes the token for tx, waiting for another holder to
// give it back (or die).
func (tx *Tx) takePrivilege() {
	me := uint64(tx.slot) + 1
	g := &tx.e.g.Privileged
	for {
		cur := g.Load()
		if cur == 0 {
			if g.CompareAndSwap(0, me) {
				tx.privileged = true
				return
			}
			continue
		}
		tx.e.waitToken(cur)
	}
}

// givePrivilege gives the token back, if tx holds it, and wakes those
// waiting for it.
func (tx *Tx) givePrivilege() {
	if !tx.privileged {
		return
	}
	tx.privileged = false
	if tx.e.g.Privileged.CompareAndSwap(uint64(tx.slot)+1, 0) {
		tx.e.park.Wake(tokenKey)
	}
}

// awaitPrivileged makes a committer wait while another transaction holds
// the token. It runs before the commit takes any lock.
func (tx *Tx) awaitPrivileged() {
	for {
		cur := tx.e.g.Privileged.Load()
		if cur == 0 || cur == uint64(tx.slot)+1 {
			return
		}
		tx.e.waitToken(cur)
	}
}

// tokenKey is the parking key of the token: an address no lock word has
// (word addresses are below 2^48).
const tokenKey = 1 << 62

// waitToken waits until the token no longer holds cur: spinning a little,
// then parked, re-checking every timeout that its holder lives (a dead
// holder's token is cleared by whoever finds it dead).
func (e *Engine) waitToken(cur uint64) {
	g := &e.g.Privileged
	for i := 0; i < spinLoads; i++ {
		if g.Load() != cur {
			return
		}
		if i%32 == 31 {
			yield()
		}
	}
	for {
		tk := e.park.Prepare(tokenKey)
		if g.Load() != cur {
			return
		}
		_, timeout := waitTimeouts()
		tk.Wait(min(timeout, 100*time.Millisecond))
		if g.Load() != cur {
			return
		}
		if !e.slotAlive(int(cur - 1)) {
			if g.CompareAndSwap(cur, 0) {
				e.park.Wake(tokenKey)
			}
			return
		}
	}
}
