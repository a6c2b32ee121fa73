package reclaim

// # Epochs, retire rings, and why a freed block is never seen
//
// (LMDB's "Reader Lock Table" essay is the model: readers take no lock,
// each publishes one word in a slot of its own, and the writer reads all of
// them, possibly stale, and is safe anyway. Here is why.)
//
// The epochs are the transaction layer's global version clock; reclaim
// only receives its numbers. Three parties touch them:
//
//	reader (a transaction, in its slot):
//	    rv = clock
//	    Enter(slot, rv)       epoch word := rv+1      seq-cst store  (P)
//	    ... load links, read objects ...              seq-cst loads  (L)
//	    Exit(slot)            epoch word := 0         "quiescent"
//
//	committer (that unlinked blocks at commit version wv):
//	    ... unlinking stores (the old handle overwritten) ... seq-cst  (U)
//	    Retire(heap, batch, wv)   ring: append {batch, wv}, under the ring
//	                              lock, published by one atomic store  (A)
//
//	collector (the ring's owner, or an adopter, later):
//	    snapshot the ring under its lock                               (S)
//	    min = MinActive(): load every slot's epoch word, seq-cst       (M)
//	    free each snapshot entry with epoch R <= min, oldest first
//
// Claim: when the collector frees an entry retired at R, no transaction
// can still load a handle the entry lists.
//
// Take any transaction T in slot i and the scan's load M_i of i's word.
// Go's atomics are sequentially consistent, and U, A, S and M_i are
// ordered by happens-before (program order in the committer, the ring
// lock or the hn word from committer to collector, program order in the
// collector), so in the single total order of seq-cst operations
// U < A < S < M_i. Two cases:
//
//  1. M_i read 0 (or the word of an earlier transaction of the slot): T's
//     publish P comes after M_i in the total order, and T's loads L after
//     P. So U < M_i < P < L: every load of T is after the unlinking
//     stores and reads them or something newer. T cannot load the old
//     handle, whatever rv it published. (It may have read the clock long
//     before; a stale rv only makes it abort, it cannot make it see.)
//     This is why Enter must come before the first read and be a seq-cst
//     store: it is the store half of Dekker's pattern, and the scan's
//     load is the other half. A plain store could sit in the store
//     buffer past T's first load, and the proof would fail.
//  2. M_i read rv+1, T active at rv. We free only if rv >= R, and R is
//     the committer's wv: a transaction whose rv >= wv read the clock
//     after the commit held all its locks (txn moves the clock to wv
//     before it retires, and the clock was below wv when the commit
//     loaded it, locks held: txn's commit essay), and txn guarantees that
//     such a transaction never loads a word the commit overwrote, as it
//     was before the commit (it either waits for the commit's locks or
//     sees their new versions and values). So T cannot load the old
//     handle either. If T exits and the slot enters again after M_i, that
//     is case 1 for the new transaction.
//
// The contract txn must keep, then:
//
//   - publish with Enter before the first load of shared data, and Exit
//     only after the last; never use a handle loaded in an earlier
//     transaction without loading it again;
//   - the unlinking stores and the loads that follow links are sync/atomic
//     operations (they are seq-cst in Go);
//   - retire with the commit's own version wv, after its unlinking stores
//     are applied: a transaction with rv >= wv never observes the old
//     values, one with rv < wv may;
//   - a batch handed to Retire is no longer reachable from shared data,
//     and is retired by one commit only (recovery may repeat the call).
//
// The order S before M is the collector's half of the bargain: an entry
// appended after the scan could be judged by an older scan, which may
// have seen quiescent a transaction that published a small rv just after
// and is still reading. So every collector snapshots the ring first and
// judges only the snapshot with the scan it makes afterwards; that holds
// for a collector of another slot's ring too (the scan it makes to choose
// which rings to look at is only a hint). A merged batch carries the
// largest epoch of what it lists, so judging it by that epoch is
// conservative.
//
// Exit is a release store, not a seq-cst one (internal/release: a plain
// MOV on amd64, STLR on arm64). It only has to keep T's loads before
// it: if M_i reads the 0 that T's Exit stored, T's loads happen before
// M_i (release, then the scan's acquiring load), so they are done before
// anything is freed; if M_i reads T's rv+1, case 2 holds. Nothing after
// Exit needs ordering: T's next Enter is a full store again. Enter cannot
// be weakened: it is the store half of Dekker's pattern above.
//
// A read-only transaction's cost in shared memory is therefore the two
// stores to its own slot's epoch line, which only collectors read (and
// they read it once per scan, not per read). It takes no mutex either:
// txn keeps each process's idle transactions, with their leased slots,
// in a lock-free pool (txn/pool.go), so a View's way to its slot and back
// is two CompareAndSwaps on this process's memory. Nothing a reader does
// writes a line another process reads on its own hot path.
//
// A single read outside a transaction (objects' PeekPath, behind the
// root package's Get) does not even that: it publishes no epoch and
// takes no slot, so the claim above does not cover it, and a collector
// may free a block it is reading. It keeps only what the lock words on
// its path vouch for (each key's stripe, for the entry it found, and the
// entry's, for its value), unchanged from before its first load to after
// its last: nothing they guard was unlinked meanwhile, so nothing it
// kept was retired, let alone freed. What it read of a freed block (its
// window failed) is thrown away; every handle is bounds-checked, so such
// a read stays in mapped memory. A single read of a Dict named by its
// handle (PeekDict, behind the C library's one-shot get) has no link
// above the Dict for a lock word to vouch for. It is kept only if,
// after it, the Dict's reference count is still above 0 (what an
// unchanged stripe or entry links is retired only with the Dict, by the
// commit that stores its 0, which is final) and the Dict's block still
// allocated with the same generation
// (alloc.ResolvePinned: the count read was the Dict's). objects/peek.go
// has the argument.
//
// Why readers need no lock, and why the scan may read stale words: a word
// read stale is either a transaction's rv that has since exited (the scan
// is conservative: the entry waits for the next Collect), or 0 where a
// transaction has since published (case 1: it cannot see the entry). The
// scan never needs a consistent picture of all slots, only one load per
// slot after the snapshot.
//
// Dead processes: a transaction of a dead process reads nothing any more.
// Recovery (shm's RecoverDead, calling Recover) stores 0 into each of its
// slots' words, so a dead process stalls reclamation only until it is
// recovered; until then its published rv counts like any other. A long
// transaction stalls reclamation for as long as it runs: everything
// retired at or after its rv waits. Held shows, slot by slot, how many
// batches wait and the oldest epoch among them, and Active each slot's rv.
//
// # Retire rings
//
// Each slot has a ring of RingCap batches in its own part of the control
// segment (layout.go). A batch is an immutable block listing entries: plain
// blocks (freed through alloc), other batches (freed recursively), and
// objects (freed by the finalizer registered for their kind, which may
// drop reference counts in a small transaction). Entries are freed oldest
// first and popped only once wholly freed, children before the batch that
// lists them, so a collector that dies midway leaves every unfreed block
// still listed, and the next collector repeats the frees: alloc checks the
// generation, so freeing a freed handle again is refused, harmlessly, and
// a batch that no longer resolves was wholly freed.
//
// Who collects which ring:
//
//   - the slot's leaseholder collects its own ring (Collect, and Retire
//     when the ring is full). It marks the ring as being collected (the
//     collector word: its lock token) from its snapshot to its last pop,
//     and holds the ring's lock only to snapshot, to pop and to mark,
//     never while freeing: finalizers run transactions, which may retire
//     into this same ring;
//   - every Collect also adopts other rings: each one that no live
//     collector has marked and whose oldest batch its scan found free to
//     go, it collects in place, exactly as its owner would (under that
//     ring's collector mark). That covers slots no process owns (given
//     back at Close, or recovered after their process died), slots a live
//     process owns but does not use (an idle slot in txn's pool would
//     otherwise keep its batches until it is leased again), and the
//     overflow ring in the global part, where RetireFor without a heap
//     puts what does not fit a full ring. Batches never move between
//     rings, so no crash can leave one listed twice (an earlier design
//     moved them, and a crash between its two stores could make two
//     collectors finalize one object at once);
//   - a slot owned by a dead process that is not recovered yet is left
//     alone: txn's recovery of that slot may still retire into it
//     (RetireFor), and its duplicate check must see the ring as it was.
//     Recovery sets Owner to 0 when it is done (and clears the dead
//     process's collector marks), and then the ring is adopted like any
//     other.

// A full ring is first collected; if that frees nothing (a long
// transaction holds it), all its batches are merged into one new batch
// carrying the largest of their epochs: conservative, still correct, and
// Retire fails only when the store is out of memory. Merges nest (a
// merged batch lists the previous merged batch), so batches are walked
// with an explicit stack, never by recursion.
//
// Lock order: a ring lock is taken after the recovery lock (RetireFor
// runs in recovery) and before alloc's locks (the repair of a stolen ring
// lock frees a block, which may take the pool lock). No code holds two
// ring locks at once. Code holding a ring lock never
// allocates and never runs a finalizer: merge batches are allocated
// before the lock is taken, because an allocation that runs out of
// memory may call shm's RecoverDead, and finalizers run transactions.

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	"github.com/shmstore/shmstore/internal/release"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
)

// Rank is reclaim's place in shm's layer order: below txn (30), above
// alloc (10). Recovery and release run from the highest rank down.
const Rank = 20

// Kinds of retired entries.
const (
	KindBlock uint8 = 0 // a plain block: freed with alloc
	KindBatch uint8 = 1 // a batch block: each listed entry freed (recursively), then the batch block itself
	// Kinds >= 2 are objects, freed by the Finalizer registered for the kind.
)

// Sentinel errors; handle.ErrBadHandle and handle.ErrStaleHandle come back
// from alloc where a handle does not resolve.
var (
	// ErrBadBatch: a handle passed as a batch names a block that is not
	// one (no batch header, or a count larger than the block).
	ErrBadBatch = errors.New("not a retire batch")
	// ErrRingFull: RetireFor without a heap found the ring full of entries
	// a running transaction still holds, and the overflow ring full too,
	// and has no heap to merge them with. Nothing was changed; retry with
	// a heap, or later.
	ErrRingFull = errors.New("retire ring full")
	// ErrNoHeap: an operation that allocates or finalizes was given the
	// zero alloc.Heap.
	ErrNoHeap = errors.New("no heap")
	// ErrNoFinalizer: a retired object's kind has no finalizer in this
	// process; its batch stays in the ring until one is registered.
	ErrNoFinalizer = errors.New("no finalizer for object kind")
	// ErrBadSlot: a slot number outside the slot table.
	ErrBadSlot = errors.New("no such slot")
)

// Entry is one retired thing in a batch.
type Entry struct {
	H    handle.Handle
	Kind uint8
}

// Finalizer frees an object retired with its kind. It must be idempotent:
// it may run again for the same object after a collector died midway (a
// batch is collected by one collector at a time, so never concurrently),
// so it must tolerate an object that is already freed (alloc refuses a
// stale handle harmlessly). It may use h, the collector's leased
// heap, to allocate and to run a transaction, and may retire what it
// unlinks; it must not hold h beyond its return.
type Finalizer func(h alloc.Heap, obj handle.Handle) error

// Reclaimer is one process's access to a store's reclamation. It is safe
// for concurrent use; each slot's operations (Enter, Exit, Retire,
// Collect) belong to the goroutine that leased the slot.
type Reclaimer struct {
	st *shm.Store
	a  *alloc.Allocator
	g  *global
	ro bool
	// fins is the process-local finalizer registry, by kind.
	fins [256]atomic.Pointer[Finalizer]
	// collecting marks, by slot, a Collect in progress in this process
	// (on the slot's leaseholder goroutine): a finalizer that retires into
	// a full ring, or calls Collect, then merges or returns instead of
	// collecting the ring again from inside its own collection.
	collecting []atomic.Bool
	// trees keeps the walks' buffers (*tree) between collections, so
	// that a collection allocates nothing once they have grown; any
	// goroutine takes one for a collectOwn and puts it back after.
	trees sync.Pool
}

var _ shm.Layer = (*Reclaimer)(nil)

// New binds a reclaimer to st and a, and registers its recovery with st
// (unless st is read-only: then only the inspection methods work).
func New(st *shm.Store, a *alloc.Allocator) (*Reclaimer, error) {
	if err := st.Guard(); err != nil {
		return nil, fmt.Errorf("reclaim: %w", err)
	}
	if a == nil || a.Store() != st {
		return nil, fmt.Errorf("reclaim: the allocator does not serve store %q: %w", st.Name(), shm.ErrBadOption)
	}
	g := (*global)(st.GlobalPart(shm.PartReclaim))
	r := &Reclaimer{st: st, a: a, g: g, ro: st.ReadOnly(), collecting: make([]atomic.Bool, st.NumSlots())}
	stamp := formatStamp()
	if !r.ro {
		g.stamp.CompareAndSwap(0, stamp)
	}
	if v := g.stamp.Load(); v != stamp && v != 0 {
		return nil, fmt.Errorf("reclaim: store %q has reclaim format %#x, this build's is %#x: %w",
			st.Name(), v, stamp, shm.ErrLayout)
	}
	if !r.ro {
		st.AddLayer(Rank, "reclaim", r)
	}
	return r, nil
}

// SetFinalizer registers (f != nil) or removes (f == nil) the finalizer of
// an object kind, in this process. Kinds below 2 are not objects: the call
// does nothing for them.
func (r *Reclaimer) SetFinalizer(kind uint8, f Finalizer) {
	if kind < 2 {
		return
	}
	if f == nil {
		r.fins[kind].Store(nil)
		return
	}
	r.fins[kind].Store(&f)
}

func (r *Reclaimer) finalizer(kind uint8) Finalizer {
	if p := r.fins[kind].Load(); p != nil {
		return *p
	}
	return nil
}

// part is reclaim's part of slot i. REQUIRES: 0 <= i < NumSlots.
func (r *Reclaimer) part(i int) *slotPart {
	return (*slotPart)(r.st.SlotPart(i, shm.PartReclaim))
}

// validSlot reports whether i names a slot (collecting has one element
// a slot: the count, fixed when the store was made, is not loaded from
// the header again).
func (r *Reclaimer) validSlot(i int) bool { return uint(i) < uint(len(r.collecting)) }

// usable reports whether slot i can be touched at all: the store is open,
// not forked, and i names a slot: three loads, no call (Enter and Exit
// run it on every transaction).
func (r *Reclaimer) usable(i int) bool { return r.st.Live() && r.validSlot(i) }

// Enter publishes that the transaction in slot starts reading at rv, with
// a sequentially consistent store, before it reads any shared object (the
// essay says why it must). rv = MaxUint64 is published as MaxUint64-1
// (conservative). On a closed or read-only store, or for a slot number
// out of range, it does nothing.
func (r *Reclaimer) Enter(slot int, rv uint64) {
	if r.ro || !r.usable(slot) {
		return
	}
	r.part(slot).epoch.Store(min(rv, math.MaxUint64-1) + 1)
}

// Exit publishes that slot is quiescent: it reads nothing shared until its
// next Enter.
func (r *Reclaimer) Exit(slot int) {
	if r.ro || !r.usable(slot) {
		return
	}
	// A release store: the reads before it must be done before a
	// collector sees the slot quiescent; nothing after it needs ordering
	// (the next Enter is a full store again). See package release.
	release.Store64(&r.part(slot).epoch, 0)
}

// Active reports the rv that slot published, and whether it is active.
func (r *Reclaimer) Active(slot int) (rv uint64, ok bool) {
	if !r.usable(slot) {
		return 0, false
	}
	if v := r.part(slot).epoch.Load(); v != 0 {
		return v - 1, true
	}
	return 0, false
}

// MinActive is the smallest rv published by an active slot, or
// math.MaxUint64 when none is active. Each slot's word is loaded once,
// sequentially consistent; the result may be stale by the time it
// returns, which only delays frees (see the essay).
func (r *Reclaimer) MinActive() uint64 {
	m := uint64(math.MaxUint64)
	if r.st.Guard() != nil {
		return 0 // nothing may be freed through a closed store
	}
	for i, n := 0, r.st.NumSlots(); i < n; i++ {
		if v := r.part(i).epoch.Load(); v != 0 && v-1 < m {
			m = v - 1
		}
	}
	return m
}

// Held reports how many batches slot's ring holds back and the oldest
// epoch among them (0 when it holds none): what a long transaction, or a
// slot nobody collects, keeps from being freed. It reads without the lock:
// a snapshot, exact on a quiet store.
func (r *Reclaimer) Held(slot int) (entries int, oldest uint64) {
	if !r.usable(slot) {
		return 0, 0
	}
	return r.part(slot).ring.held()
}

// Pending is how many batches slot's ring holds: Held without the walk
// for the oldest epoch (txn asks after every commit that retired
// something, to decide whether to collect).
func (r *Reclaimer) Pending(slot int) int {
	if !r.usable(slot) {
		return 0
	}
	_, n := r.part(slot).ring.loadHN()
	return int(n)
}

// HeldOverflow is Held for the overflow ring (see RetireFor), which the
// next Collect anywhere drains.
func (r *Reclaimer) HeldOverflow() (entries int, oldest uint64) {
	if r.st.Guard() != nil {
		return 0, 0
	}
	return r.g.overflow.held()
}

func (rp *ring) held() (entries int, oldest uint64) {
	head, n := rp.loadHN()
	if n == 0 {
		return 0, 0
	}
	oldest = math.MaxUint64
	for i := uint32(0); i < n; i++ {
		oldest = min(oldest, rp.at(head, i).epoch.Load())
	}
	return int(n), oldest
}

// lockRing takes a ring's lock. A lock whose holder died is taken over at
// once, and what it guards is repaired before the caller goes on.
func (r *Reclaimer) lockRing(rp *ring) {
	if h := rp.mu.Holder(); h != 0 && h != r.st.Token() && !r.st.TokenAlive(h) && r.st.TakeOver(&rp.mu) {
		r.repairLocked(rp)
		return
	}
	if r.st.Lock(&rp.mu) {
		r.repairLocked(rp)
	}
}

// repairLocked finishes what a holder of the ring's lock left when it
// died. Appends, pops and merges publish with one store of hn, so the
// ring is consistent; only a merge batch can be in flight: if the ring
// lists it, the merge was published, else the batch is freed (the
// entries it copied are still in the ring). REQUIRES: rp.mu held.
func (r *Reclaimer) repairLocked(rp *ring) {
	head, n := rp.loadHN()
	rp.hn.Store(packHN(head, n)) // clamped, if it was damaged
	p := handle.Handle(rp.pending.Load())
	if p == handle.Null {
		return
	}
	if !rp.containsLocked(p) {
		_ = r.a.FreeAny(p) // refused if recovery of the allocator log freed it already
	}
	rp.pending.Store(0)
}

// containsLocked reports whether the ring lists batch. REQUIRES: rp.mu held.
func (rp *ring) containsLocked(batch handle.Handle) bool {
	head, n := rp.loadHN()
	for i := uint32(0); i < n; i++ {
		if handle.Handle(rp.at(head, i).batch.Load()) == batch {
			return true
		}
	}
	return false
}

// appendLocked adds an entry; the caller checked that there is room. The
// entry is written first, then one store of hn makes it live. REQUIRES:
// rp.mu held.
func (rp *ring) appendLocked(batch handle.Handle, epoch uint64) {
	head, n := rp.loadHN()
	e := rp.at(head, n)
	e.batch.Store(uint64(batch))
	e.epoch.Store(epoch)
	rp.hn.Store(packHN(head, n+1))
}

// popIfLocked pops the oldest entry if it is batch, and reports whether
// it did. REQUIRES: rp.mu held.
func (rp *ring) popIfLocked(batch handle.Handle) bool {
	head, n := rp.loadHN()
	if n == 0 || handle.Handle(rp.at(head, 0).batch.Load()) != batch {
		return false
	}
	rp.hn.Store(packHN((head+1)%ringSlots, n-1))
	return true
}

// snapEntry is a ring entry copied out under the lock.
type snapEntry struct {
	batch handle.Handle
	epoch uint64
}

// snapshotLocked copies the live entries, oldest first. REQUIRES: rp.mu held.
func (rp *ring) snapshotLocked(out *[RingCap]snapEntry) int {
	head, n := rp.loadHN()
	for i := uint32(0); i < n; i++ {
		e := rp.at(head, i)
		out[i] = snapEntry{handle.Handle(e.batch.Load()), e.epoch.Load()}
	}
	return int(n)
}
