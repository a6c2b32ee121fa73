//go:build linux && (amd64 || arm64)

package txn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/ipc"
	"github.com/shmstore/shmstore/reclaim"
	"github.com/shmstore/shmstore/shm"
)

// Rank is txn's place in shm's layer order: its recovery runs first, so
// that a committing slot is re-applied before alloc frees its allocation
// log.
const Rank = 30

// Sentinel errors.
var (
	// ErrConflict: the transaction read something another commit changed,
	// or lost a lock to one. Run retries it; code above txn returns it
	// unchanged from the transaction function.
	ErrConflict = errors.New("transaction conflict")
	// ErrTooLarge: too large for the store. A transaction whose redo
	// log would exceed MaxLogWords, or whose allocations overflow the
	// allocation log ("transaction too large"), and a value or container
	// larger than the largest block (the layer above says so, with the
	// limit) wrap it; their messages say which.
	ErrTooLarge = errors.New("too large")
	// ErrTxTooLarge: a transaction too large for its logs (split it); it
	// wraps ErrTooLarge.
	ErrTxTooLarge = fmt.Errorf("transaction %w", ErrTooLarge)
	// ErrReadOnly: a write in a read-only transaction (View).
	ErrReadOnly = errors.New("write in a read-only transaction")
	// ErrBadAddr: a logged address outside every region (a damaged slot).
	ErrBadAddr = errors.New("bad word address")
)

// Engine runs transactions on one store for one process. It is safe for
// concurrent use; each running transaction has a slot of its own.
type Engine struct {
	st   *shm.Store
	a    *alloc.Allocator
	r    *reclaim.Reclaimer
	park *ipc.Table
	// retryWaits counts this process's sleeps in Retry (RetryWaits); only
	// an Add and a Load, by any goroutine.
	retryWaits atomic.Uint64
	g          *global

	// pool: the idle transactions, taken and left without mu (pool.go).
	pool   idlePool
	mu     sync.Mutex
	freed  sync.Cond   // signalled (under mu) when a transaction goes idle and pool.waiting > 0
	bySlot map[int]*Tx // guarded by mu: every transaction with a leased slot
	leases int         // guarded by mu: slots leased, and being leased
	closed bool        // guarded by mu

	// now is a coarse clock (unix nanos) for the slots' Started stamps:
	// time.Now costs 75 ns on some machines, more than a whole read-only
	// transaction should. While transactions start often, a ticker keeps
	// it (each tick); while they start seldom, each start reads the time
	// itself and stores it here (coarseNow), so an idle process, or one
	// that starts a transaction only now and then (a Python consumer's
	// 100 ms wait slices), runs no ticker. Read by every start.
	now atomic.Int64
	// ticking is 1 while a ticker goroutine runs: set 0->1 (CAS) by a
	// start that comes within tickPeriod of the one before, set 0 by the
	// ticker when it stops. Read by starts and by transactions going idle
	// (put), which hand back their heap themselves while it is 0.
	ticking atomic.Uint32
	// used is set by a start that finds it clear while the ticker runs
	// (so a start writes it at most once a tick) and cleared by the ticker
	// at each tick, which so counts the ticks with a start (see idleTicks).
	used     atomic.Uint32
	stopTick chan struct{}
	// trimAnswered is the last alloc.TrimAsked the ticker answered;
	// guarded by mu.
	trimAnswered uint32

	// retireFailures counts commits whose retire ring could not take
	// their batch (out of memory): their blocks stay allocated.
	retireFailures atomic.Uint64

	// peeks counts this process's optimistic reads in progress
	// (BeginPeek, EndPeek), which hold no slot: each reader adds 1 and
	// then loads pool.closed, Close stores pool.closed and then loads
	// peeks (all sequentially consistent), so either the reader sees
	// the engine closing and reads nothing, or Close sees the reader and
	// refuses, as it does for a running transaction: the regions stay
	// mapped under every optimistic read.
	peeks atomic.Int64
}

// BeginPeek admits an optimistic read: a read of shared memory outside
// any transaction, which takes no slot and publishes no snapshot (the
// objects layer's, validated by lock words alone). It reports false once
// the engine is closing or closed: then nothing may be read. Each true
// is followed by one EndPeek.
func (e *Engine) BeginPeek() bool {
	e.peeks.Add(1)
	if e.pool.closed.Load() {
		e.peeks.Add(-1)
		return false
	}
	return true
}

// EndPeek ends an optimistic read BeginPeek admitted.
func (e *Engine) EndPeek() { e.peeks.Add(-1) }

// BeginPeekWait is BeginPeek for a read that has no transaction to fall
// back on (Stats, Check): a refusal while a Close is only trying (it
// finds transactions running, gives up, and the engine stays open) waits
// for that Close to decide, then tries again. False means closed.
func (e *Engine) BeginPeekWait() bool {
	for !e.BeginPeek() {
		e.mu.Lock() // a Close holds it from its closed flag's store to its decision
		closed := e.closed
		e.mu.Unlock()
		if closed {
			return false
		}
	}
	return true
}

// New binds a transaction engine to a store whose allocator and reclaimer
// are a and r, and registers txn's recovery with the store.
func New(st *shm.Store, a *alloc.Allocator, r *reclaim.Reclaimer) *Engine {
	e := &Engine{st: st, a: a, r: r, park: ipc.New(st), g: (*global)(st.GlobalPart(shm.PartTxn)),
		bySlot: map[int]*Tx{}, pool: newIdlePool(int(st.Header().SlotsPerProc))}
	e.freed.L = &e.mu
	e.stopTick = make(chan struct{})
	if !st.ReadOnly() {
		st.AddLayer(Rank, "txn", e)
	}
	return e
}

// tickPeriod is how often the engine's ticker runs.
const tickPeriod = 5 * time.Millisecond

// The ticker counts, in windows of idleTicks ticks, the ticks in which a
// transaction started, and stops after a window with fewer than
// minBusyTicks: a process that starts transactions only now and then (a
// REPL; a Python consumer parked on an empty queue, whose wait restarts
// every 100 ms to check for Ctrl-C) takes no CPU and makes no system call
// for a clock it does not need (each of its starts reads the time).
const (
	idleTicks    = 40
	minBusyTicks = 4
)

// tick keeps now within a few milliseconds of the time, and answers
// requests (from any process) that idle slots hand back what their heaps
// hold (alloc's AskTrim): a transaction that found the store full is
// waiting for it. It runs while transactions start often: after a window
// of idleTicks ticks with fewer than minBusyTicks starts it stops, then
// hands back what the idle slots' heaps hold, so that no request can find
// anything here while it does not run. A transaction that goes idle later sees it stopped and hands
// back its own (put): put leaves the slot in the pool and then loads
// ticking, the ticker stores ticking and then trims the pool (both
// sequentially consistent), so one of them trims each slot.
func (e *Engine) tick() {
	t := time.NewTicker(tickPeriod)
	defer t.Stop()
	for n, busy := 0, 0; ; {
		select {
		case <-e.stopTick:
			return
		case now := <-t.C:
			e.now.Store(now.UnixNano())
			if e.used.Swap(0) != 0 {
				busy++
			}
			if n++; n == idleTicks {
				if busy < minBusyTicks {
					e.ticking.Store(0)
					e.trimIdleIfOpen(true)
					return
				}
				n, busy = 0, 0
			}
			e.trimIdleIfOpen(false)
		}
	}
}

// trimIdleIfOpen hands back what the idle slots' heaps hold, if some
// process asked (alloc's AskTrim) since the last time, or always with
// all, unless the engine is closed. Shared memory is read only while this
// process keeps idle slots: they are leased, so the store cannot be
// closed (shm refuses while slots are leased) and stays mapped.
func (e *Engine) trimIdleIfOpen(all bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.pool.count() > 0 && !e.closed {
		if a := e.a.TrimAsked(); a != e.trimAnswered || all {
			e.trimAnswered = a
			e.trimIdleLocked()
		}
	}
}

// Ticking reports whether the engine's ticker runs: it does while
// transactions start often, and hands back what idle slots' heaps hold
// when it stops, a write to shared memory. Tests that show that a command
// writes nothing wait until it is false in the processes they run
// transactions in.
func (e *Engine) Ticking() bool { return e.ticking.Load() != 0 }

// coarseNow is the coarse clock for a transaction's start: the ticker's
// while it runs; else the time, read here, and a start within tickPeriod
// of the one before starts the ticker.
func (e *Engine) coarseNow() int64 {
	if e.ticking.Load() != 0 {
		if e.used.Load() == 0 {
			e.used.Store(1)
		}
		return e.now.Load()
	}
	now := time.Now().UnixNano()
	if last := e.now.Swap(now); now-last < int64(tickPeriod) && e.ticking.CompareAndSwap(0, 1) {
		e.used.Store(1)
		go e.tick()
	}
	return now
}

// Store is the engine's store.
func (e *Engine) Store() *shm.Store { return e.st }

// Allocator is the engine's allocator.
func (e *Engine) Allocator() *alloc.Allocator { return e.a }

// Reclaimer is the engine's reclaimer.
func (e *Engine) Reclaimer() *reclaim.Reclaimer { return e.r }

// Clock is the global version clock's current value: every snapshot
// starts there. Commit versions may run ahead of it (see txn's commit
// essay).
func (e *Engine) Clock() uint64 { return e.g.Clock.Load() }

// advanceClock moves the clock to v unless it is there already. Any
// value is safe: a commit that loads the clock after the move stamps
// past v, and one that loaded it before held all its locks when it did.
func (e *Engine) advanceClock(v uint64) {
	for {
		c := e.g.Clock.Load()
		if c >= v || e.g.Clock.CompareAndSwap(c, v) {
			return
		}
	}
}

// RootWord is the word that holds the root object's handle: set once,
// with CAS from 0, by whoever creates the root.
func (e *Engine) RootWord() *LockWord { return &e.g.Root }

func (e *Engine) slotPart(i int) *slotPart { return (*slotPart)(e.st.SlotPart(i, shm.PartTxn)) }

// Ptr returns where the word at a is mapped in this process.
func (e *Engine) Ptr(a Addr) (unsafe.Pointer, error) {
	base, err := e.st.Region(a.region())
	if err != nil {
		return nil, fmt.Errorf("txn: address %#x: %w", uint64(a), ErrBadAddr)
	}
	off := uint64(a.granule()) * handle.Granule
	if off+8 > e.st.RegionSize() {
		return nil, fmt.Errorf("txn: address %#x beyond its region: %w", uint64(a), ErrBadAddr)
	}
	return unsafe.Add(base, off), nil
}

// get hands out a transaction with a leased slot: an idle one, else a
// newly leased slot while the process is below its limit, else it waits
// for one to go idle. Slots stay leased by the engine between
// transactions (the heap keeps its superblocks, the slot its log chunks).
func (e *Engine) get() (*Tx, error) { return e.getContext(context.Background()) }

// getContext is get that gives up when ctx ends while it waits for one of
// this process's slots to be returned.
func (e *Engine) getContext(ctx context.Context) (*Tx, error) {
	if tx := e.pool.take(); tx != nil {
		return tx, nil // the fast path: no mutex
	}
	return e.getSlow(ctx)
}

// getSlow is get when no transaction is idle: it leases a slot for a new
// one, or waits for one to go idle.
func (e *Engine) getSlow(ctx context.Context) (*Tx, error) {
	done := ctx.Done() // nil for a context that never ends: no checks then
	if done != nil {
		stop := context.AfterFunc(ctx, func() {
			e.mu.Lock()
			e.freed.Broadcast() // the waiters below re-check ctx
			e.mu.Unlock()
		})
		defer stop()
	}
	e.mu.Lock()
	e.pool.waiting.Add(1) // before the pool is looked at (see idlePool)
	for {
		if e.closed {
			e.pool.waiting.Add(-1)
			e.mu.Unlock()
			return nil, fmt.Errorf("txn: store %q: %w", e.st.Name(), shm.ErrClosed)
		}
		if done != nil {
			if err := ctx.Err(); err != nil {
				e.pool.waiting.Add(-1)
				if e.pool.count() > 0 {
					e.freed.Signal() // the wake-up this waiter may have taken goes on
				}
				e.mu.Unlock()
				return nil, err
			}
		}
		if tx := e.pool.take(); tx != nil {
			e.pool.waiting.Add(-1)
			e.mu.Unlock()
			return tx, nil
		}
		if e.leases < int(e.st.Header().SlotsPerProc) {
			break
		}
		e.freed.Wait()
	}
	e.pool.waiting.Add(-1)
	e.leases++
	e.mu.Unlock()
	h, err := e.a.Lease() // may wait for another process's slot: not under mu
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		e.leases--
		e.freed.Signal()
		return nil, err
	}
	tx := newTx(e, h)
	e.bySlot[tx.slot] = tx
	return tx, nil
}

// put returns a transaction to the idle pool; once the engine is closed,
// its slot goes back.
func (e *Engine) put(tx *Tx) {
	if e.pool.leave(tx) {
		if e.ticking.Load() == 0 {
			// No ticker answers AskTrim for this slot while it is idle:
			// it hands back what its heap holds now (see tick).
			e.trimIdleIfOpen(true)
		}
		if e.pool.waiting.Load() > 0 {
			e.mu.Lock()
			e.freed.Signal()
			e.mu.Unlock()
		}
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.closed && e.pool.leave(tx) { // a Close that refused reopened the pool
		e.freed.Signal()
		return
	}
	e.leases--
	delete(e.bySlot, tx.slot)
	_ = tx.heap.Release()
}

// Collect frees what this process's idle slots retired and no transaction
// can see any more (normally done at the end of transactions that
// retired something, once enough piled up).
func (e *Engine) Collect() error {
	return e.WithTx(func(tx *Tx) error {
		_, err := e.r.Collect(tx.heap)
		return err
	})
}

// Close gives back every idle slot. While transactions are running it
// refuses (shm.ErrInUse) and closes nothing. The store's own Close
// releases the slots' parts (Release, in recover.go).
func (e *Engine) Close() error {
	e.mu.Lock()
	e.pool.closed.Store(true) // before the drain: see idlePool
	idle := e.pool.drain()
	if busy := e.leases - len(idle) + int(e.peeks.Load()); busy > 0 && !e.closed {
		e.pool.closed.Store(false)
		for _, tx := range idle {
			e.pool.leave(tx)
		}
		e.freed.Broadcast()
		e.mu.Unlock()
		return fmt.Errorf("txn: close store %q: %d transactions or reads running: %w", e.st.Name(), busy, shm.ErrInUse)
	}
	if !e.closed {
		close(e.stopTick)
	}
	e.closed = true
	e.leases -= len(idle)
	for _, tx := range idle {
		delete(e.bySlot, tx.slot)
	}
	e.freed.Broadcast()
	e.mu.Unlock()
	var errs []error
	for _, tx := range idle {
		if err := tx.heap.Release(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Run runs fn as a transaction until it commits, re-running it after
// every conflict. fn's error (other than ErrConflict) aborts and is
// returned. With readOnly, writes fail with ErrReadOnly and commit does
// nothing.
func (e *Engine) Run(readOnly bool, fn func(tx *Tx) error) error {
	return e.RunContext(context.Background(), readOnly, fn)
}

// RunContext is Run that gives up when ctx ends: between attempts, and
// in a Retry's wait, it returns ctx.Err(), holding nothing.
func (e *Engine) RunContext(ctx context.Context, readOnly bool, fn func(tx *Tx) error) error {
	tx, err := e.getContext(ctx)
	if err != nil {
		return err
	}
	defer e.put(tx)
	defer tx.afterRun()
	return tx.run(ctx, readOnly, fn)
}

// RetryWaits counts the sleeps of this process's transactions in Retry
// (for tests and benchmarks: a waiter that spins never sleeps).
func (e *Engine) RetryWaits() uint64 { return e.retryWaits.Load() }

// WithTx runs fn with a transaction whose slot is leased (for code that
// must allocate or collect outside a transaction function).
func (e *Engine) WithTx(fn func(tx *Tx) error) error {
	tx, err := e.get()
	if err != nil {
		return err
	}
	defer e.put(tx)
	return fn(tx)
}

// spinLoads is how many times a waiter re-reads a word before parking.
const spinLoads = 200

// waitUnlock waits until lw no longer holds w (a locked word): spinning a
// little, then parked on ipc. Every timeout checks that the holder is
// alive, and recovers it if not. slot (-1 for none) is the waiter's, whose
// WaitOn it publishes.
func (e *Engine) waitUnlock(lw *LockWord, addr Addr, w uint64, sp *slotPart) {
	w &^= waitersBit
	for i := 0; i < spinLoads; i++ {
		if lw.Load()&^waitersBit != w {
			return
		}
		if i%32 == 31 {
			yield()
		}
	}
	if sp != nil {
		sp.WaitOn.Store(uint64(addr) + 1)
		defer sp.WaitOn.Store(0)
	}
	for {
		tk := e.park.Prepare(uint64(addr))
		cur := lw.Load()
		if cur&^waitersBit != w {
			return
		}
		if cur&waitersBit == 0 && !lw.CompareAndSwap(cur, cur|waitersBit) {
			continue
		}
		_, waitTimeout := waitTimeouts() // 10 ms (see waitTimeouts)
		tk.Wait(waitTimeout)
		if lw.Load()&^waitersBit == w && !e.slotAlive(ownerOf(w)) {
			_, _ = e.st.TryRecoverDead()
		}
	}
}

// slotAlive reports whether slot i is owned by a live process.
func (e *Engine) slotAlive(i int) bool {
	if i >= e.st.NumSlots() {
		return false
	}
	p := e.st.Slot(i).Owner.Load()
	return p != 0 && e.st.ProcAlive(int(p-1))
}

// release stores the unlocked word for version v into lw (locked by us)
// and wakes its waiters.
func (e *Engine) release(lw *LockWord, addr Addr, v uint64) {
	if lw.Swap(unlockedWord(v))&waitersBit != 0 {
		e.park.Wake(uint64(addr))
	}
}

// RunOn runs fn as a read-write transaction on the slot of heap h, which
// the caller has leased through this engine and is not using for another
// transaction right now (reclaim's finalizers, called from a collection
// at the end of a transaction, run their small transactions this way).
// Such a transaction frees: what it allocates is retirement metadata
// (alloc.UseMetadata), which the store's reserve serves when it is full.
func (e *Engine) RunOn(h alloc.Heap, fn func(tx *Tx) error) error {
	e.mu.Lock()
	tx := e.bySlot[h.Slot()]
	e.mu.Unlock()
	if tx == nil {
		return fmt.Errorf("txn: slot %d is not leased through this engine: %w", h.Slot(), shm.ErrNotLeased)
	}
	defer h.Using(h.Using(alloc.UseMetadata))
	return tx.run(context.Background(), false, fn)
}
