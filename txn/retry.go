//go:build linux && (amd64 || arm64)

package txn

// This file owns blocking transactions (Harris et al., "Composable Memory
// Transactions"): Retry, which gives up an attempt and sleeps until a word
// the attempt read is changed by a commit, and OrElse, which runs a second
// alternative when the first retries.
//
// # The wait (waitRetry)
//
// No polling: the waiter parks on the ipc buckets of the lock words it
// read, and a committer wakes only the buckets of what it changed. The
// protocol is ipc's (Prepare, announce, re-check, wait), over many words:
//
//	waiter                                   committer
//	    spin a little: any word changed? run again (no wake to pay for)
//	    publish an epoch
//	    tickets = Prepare(bucket of each word)   lock w (keeps waitersBit)
//	    set waitersBit on each word              apply
//	    re-check: any word changed? run again    release: Swap w; if waitersBit
//	    Exit (publish quiescent)                     was set, Wake(bucket of w)
//	    WaitAny(tickets, timeout)
//	    (publish an epoch again, and repeat)
//
// A commit between Prepare and WaitAny bumps its bucket, so the wait
// returns at once: no wake-up is lost. The bit is set while the waiter's
// epoch is published, and after the re-check found every word unchanged:
// a word unchanged since the snapshot belongs to an object still linked
// (unlinking it would have changed the word of the container that led to
// it, which the attempt also read), and an object unlinked after the
// epoch was published is not freed before the waiter publishes quiescent.
// So the CAS never lands in memory that has been freed and reused. While
// it sleeps, the waiter publishes quiescent: a transaction waiting in
// Retry holds no memory back, however long it waits. After a wake it
// publishes a new epoch and goes through the protocol again: a release of
// a reference-count-only lock (version unchanged) clears the bit without
// changing the word, so it must be set again.
//
// Words of memory the attempt allocated itself are left alone (the layer
// above says which, through Private): the abort frees them.
//
// # OrElse without nested transactions
//
// OrElse(a, b) runs a; if a retries, the attempt is given up and the
// function runs again at once, with a skipped (b runs in its place) and
// with every word the given-up attempt read carried into the new one's
// read set. Skipping a is right as long as those words hold: a ran on
// them and retried, so in the new snapshot it would retry again; if any
// of them changed, the carried reads fail validation, and the attempt
// runs again from scratch. If b retries too, the wait is on the union of
// both alternatives' reads (the carried ones are in the read set). OrElse
// calls are numbered in the order an attempt makes them; the numbering up
// to the skipped one is the same in the next attempt, because it depends
// only on reads that the carried read set pins.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shmstore/shmstore/ipc"
	"github.com/shmstore/shmstore/shm"
)

// ErrRetry: the transaction asked to wait (Tx.Retry) for something it
// read to change. Run waits and runs the function again; it is never
// returned to the caller of Run.
var ErrRetry = errors.New("transaction retry")

// ErrRetryNothing: Retry in an attempt that read nothing would wait
// forever.
var ErrRetryNothing = errors.New("retry without reads would wait forever")

// Private is what the layer above's User may implement to say which read
// words lie in memory the attempt allocated (freed by the abort): Retry
// does not wait on them.
type Private interface {
	Private(a Addr) bool
}

// Timeouts of waits. retry bounds one sleep of a Retry: a safety net
// against a lost wake-up, never the way a waiter learns of a change. lock
// is how long a waiter for a lock sleeps before it checks that the
// holder is alive. Both can be raised for tests in which a lost wake-up
// must show (SHMSTORE_WAIT_TIMEOUT, a Go duration, read at the first
// wait, so a test's TestMain may set it).
var timeouts struct {
	once        sync.Once
	retry, lock time.Duration
}

func waitTimeouts() (retry, lock time.Duration) {
	timeouts.once.Do(func() {
		timeouts.retry, timeouts.lock = time.Second, 10*time.Millisecond
		if d, err := time.ParseDuration(os.Getenv("SHMSTORE_WAIT_TIMEOUT")); err == nil && d > 0 {
			timeouts.retry, timeouts.lock = d, d
		}
	})
	return timeouts.retry, timeouts.lock
}

// Retry gives up this attempt: the function should return the error it
// returns (wrapping ErrRetry), and Run runs it again once a word this
// attempt read has been changed by a commit. An attempt that asked for a
// retry never commits, whatever its function returns.
func (tx *Tx) Retry() error {
	tx.retrying = true
	return fmt.Errorf("txn: %w", ErrRetry)
}

// OrElse runs a; if a retries (its writes are then undone), runs b in its
// place. If both retry, the transaction waits for a change to what either
// read. See the file comment for how.
func (tx *Tx) OrElse(a, b func() error) error {
	k, skip := tx.OrElseBegin()
	if skip {
		return b()
	}
	err := a()
	if tx.retrying {
		return tx.OrElseRetried(k)
	}
	return err
}

// OrElseBegin is OrElse's first step, for callers that run the
// alternatives themselves (bindings): it numbers this OrElse (k) and says
// whether its first alternative is to be skipped (it retried in the
// attempt this one continues): then run the second.
func (tx *Tx) OrElseBegin() (k int, skip bool) {
	k = tx.orElseN
	tx.orElseN++
	for _, s := range tx.skip {
		if s == k {
			return k, true
		}
	}
	return k, false
}

// OrElseRetried is OrElse's step after its first alternative (number k)
// called Retry: the attempt ends and runs again with that alternative
// skipped. It returns the error for the body to return (wrapping
// ErrRetry).
func (tx *Tx) OrElseRetried(k int) error {
	tx.retrying = false
	tx.branchRetry = k + 1
	return fmt.Errorf("txn: first alternative retried: %w", ErrRetry)
}

// giveUpBranch prepares the next attempt after a first alternative of
// OrElse retried: it skips that alternative and carries this attempt's
// reads, less those of containers the attempt created (freed by the
// abort, they could never validate). Skips of OrElse calls made after it (inside the alternative, or
// later) are forgotten: their numbers may differ in the next attempt.
func (tx *Tx) giveUpBranch() {
	k := tx.branchRetry - 1
	tx.branchRetry = 0
	keep := tx.skip[:0]
	for _, s := range tx.skip {
		if s < k {
			keep = append(keep, s)
		}
	}
	tx.skip = append(keep, k)
	tx.carry = tx.carry[:0]
	priv, _ := tx.User.(Private)
	for _, r := range tx.reads {
		if priv == nil || !priv.Private(r.addr) {
			tx.carry = append(tx.carry, r) // not words of memory the abort frees
		}
	}
}

// carryReads puts the carried reads into a new attempt's read set, if
// they still hold; else the attempt starts afresh, skipping nothing.
func (tx *Tx) carryReads() {
	if len(tx.carry) == 0 {
		return
	}
	tx.reads = append(tx.reads, tx.carry...)
	tx.carry = tx.carry[:0]
	if !tx.validate() {
		tx.reads = tx.reads[:0]
		tx.skip = tx.skip[:0]
	}
}

// waitSet is a Retry's words, kept across the abort.
type waitEntry struct {
	lw   *LockWord
	addr Addr
	w    uint64
}

// prepareRetry collects the words to wait on (the attempt's reads, less
// the private ones), announces the waiter on them and returns false if
// one changed already. It runs with the attempt's epoch published.
func (tx *Tx) prepareRetry() (bool, error) {
	tx.waits = tx.waits[:0]
	priv, _ := tx.User.(Private)
	for _, r := range tx.reads {
		if priv != nil && priv.Private(r.addr) {
			continue
		}
		tx.waits = append(tx.waits, waitEntry(r))
	}
	if len(tx.waits) == 0 {
		return false, fmt.Errorf("txn: %w", ErrRetryNothing)
	}
	return !tx.changed(), nil
}

// announce publishes an epoch, takes a ticket for each waited word's
// bucket, checks that no word changed, then sets each word's waiters bit,
// and publishes quiescent again: false if a word changed (run again).
// Every word is checked before any is written: all of them unchanged
// means every object is still linked (the containers that lead to them
// are among the words), so none can be freed while the epoch is
// published, and no CAS lands in reused memory (see the file comment).
func (tx *Tx) announce() bool {
	tx.e.r.Enter(tx.slot, tx.e.g.Clock.Load())
	defer tx.e.r.Exit(tx.slot)
	tx.tickets = tx.tickets[:0]
	for _, wt := range tx.waits {
		tx.tickets = append(tx.tickets, tx.e.park.Prepare(uint64(wt.addr)))
	}
	if tx.changed() {
		return false
	}
	for _, wt := range tx.waits {
		for {
			cur := wt.lw.Load()
			if !sameWord(cur, wt.w) {
				return false
			}
			if cur&waitersBit != 0 || wt.lw.CompareAndSwap(cur, cur|waitersBit) {
				break
			}
		}
	}
	return true
}

// changed reports whether a waited word changed. The loads may read memory
// freed since (the waiter holds no epoch): harmless, regions stay mapped,
// and a changed word only means running again.
func (tx *Tx) changed() bool {
	for _, wt := range tx.waits {
		if !sameWord(wt.lw.Load(), wt.w) {
			return true
		}
	}
	return false
}

// waitRetry sleeps until a waited word changes or ctx ends. The attempt
// has been aborted (its locks released, its allocations freed); its epoch
// may still be published, and is quiescent when this returns.
func (tx *Tx) waitRetry(ctx context.Context) error {
	defer tx.e.r.Exit(tx.slot)
	tx.sp.WaitOn.Store(uint64(tx.waits[0].addr) + 1)
	tx.sp.Waiting.Store(uint64(len(tx.waits)))
	defer func() {
		tx.sp.Waiting.Store(0)
		tx.sp.WaitOn.Store(0)
	}()
	// A commit is often a moment away (a producer's next Put): spin a
	// little before the system calls of a sleep, and before announcing,
	// so that a commit seen here costs its committer no wake.
	for i := 0; i < spinLoads; i++ {
		if tx.changed() {
			return nil
		}
		if i%32 == 31 {
			yield()
		}
	}
	if !tx.announce() {
		return nil
	}
	var cancel atomic.Uint32 // bumped by ctx's end: one more word to wake on
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() {
			cancel.Add(1)
			shm.FutexWake(&cancel, 1)
		})
		defer stop()
	}
	for { // quiescent here: announce published an epoch only while it ran
		if err := ctx.Err(); err != nil {
			return err
		}
		tx.e.retryWaits.Add(1)
		retryTimeout, _ := waitTimeouts()
		ipc.WaitAnyOr(tx.tickets, &cancel, cancel.Load(), retryTimeout)
		if tx.changed() {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		// Woken by another word of a bucket, a signal, or the timeout:
		// announce again (a release of a reference-count-only lock clears
		// the bit without changing the word), then sleep again.
		if !tx.announce() {
			return nil
		}
	}
}
