package reclaim

import (
	"errors"
	"fmt"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
)

// Collect frees every batch of the ring of h's slot whose epoch is at most
// MinActive, oldest first. It also collects, in place, every other ring
// that nobody is collecting right now and whose oldest batch is free to
// go: rings of slots no process owns (given back at Close, or recovered),
// rings of slots that live processes own but do not use (an idle slot in
// txn's pool would otherwise hold its batches until it is leased again),
// and the overflow ring (see RetireFor). It leaves alone the rings of dead
// processes not yet recovered (their recovery may still retire into them)
// until recovery gives their slots back.
//
// It returns the number of batches it freed (each wholly: its blocks, its
// objects through their finalizers, nested batches, and itself); batches
// found freed already or damaged are popped but not counted.
//
// A batch is popped only once wholly freed, so a crash midway repeats the
// frees, which alloc refuses harmlessly by generation. Collect stops at
// the first batch it cannot free wholly: one still visible to an active
// transaction, one listing an object whose kind has no finalizer here
// (reported with ErrNoFinalizer; the batch stays), or one whose finalizer
// failed (that error is returned). Handles that were not batches (a
// damaged ring or batch) are dropped unfreed and reported with
// ErrBadBatch after the rest is done.
//
// Called from inside a finalizer of this slot's own collection, Collect
// returns 0 and does nothing.
func (r *Reclaimer) Collect(h alloc.Heap) (int, error) {
	slot := h.Slot()
	if slot < 0 {
		return 0, fmt.Errorf("reclaim: collect: %w", ErrNoHeap)
	}
	if err := r.writable("collect"); err != nil {
		return 0, err
	}
	if !r.validSlot(slot) {
		return 0, fmt.Errorf("reclaim: collect slot %d: %w", slot, ErrBadSlot)
	}
	if !r.collecting[slot].CompareAndSwap(false, true) {
		return 0, nil
	}
	defer r.collecting[slot].Store(false)
	freed, err := r.collectOwn(slot, h)
	if isHard(err) {
		return freed, err
	}
	soft := err
	// Which rings are worth a look: a scan made now. Only a hint: the
	// decision to free is made again by collectOwn, with a scan after its
	// snapshot.
	limit := r.MinActive()
	alive := procLiveness{r: r}
	for i, n := 0, r.st.NumSlots(); i <= n; i++ { // i == n: the overflow ring
		if i == slot || !r.ringAt(i).looksAdoptable(limit) || (i < n && !r.slotAdoptable(i, &alive)) {
			continue
		}
		// Freed in place, under that ring's collector mark: its batches
		// never move, so no crash can leave one listed in two rings (and
		// finalized by two collectors at once).
		f, err := r.collectOwn(i, h)
		freed += f
		if isHard(err) {
			return freed, err
		}
		soft = errors.Join(soft, err)
	}
	return freed, soft
}

// isHard tells errors that stop a collection from those it reports after
// doing the rest (a missing finalizer, a damaged batch).
func isHard(err error) bool {
	return err != nil && !errors.Is(err, ErrNoFinalizer) && !errors.Is(err, ErrBadBatch)
}

// ringAt is slot i's ring, or the overflow ring for i == NumSlots.
func (r *Reclaimer) ringAt(i int) *ring {
	if i == r.st.NumSlots() {
		return &r.g.overflow
	}
	return &r.part(i).ring
}

// busy reports whether c, a ring's collector token, names a live process
// (this one included). REQUIRES: c != 0.
func (r *Reclaimer) busy(c uint32) bool { return c == r.st.Token() || r.st.TokenAlive(c) }

// collectOwn frees the eligible batches of slot's ring, oldest first, and
// pops each once wholly freed. The ring is marked as being collected (its
// collector word) from the snapshot to the end, so that adopters leave it
// alone and a batch is freed by one collector at a time; the caller is the
// slot's leaseholder, the process closing it (Release), or its recoverer
// (RetireFor). If a live collector has it already, collectOwn returns 0.
// The lock is held only to snapshot the ring and to pop, never while
// freeing: a finalizer may retire into this very ring, even merge it
// (then the pop finds another head, and collectOwn stops; what it freed
// is listed again in the merged batch, and freeing it again is refused
// harmlessly).
//
// With the zero Heap it runs no finalizer: a batch listing an object is
// freed except for its objects and itself, and stays in the ring.
func (r *Reclaimer) collectOwn(slot int, h alloc.Heap) (int, error) {
	rp := r.ringAt(slot)
	var snap [RingCap]snapEntry
	r.lockRing(rp)
	k := rp.snapshotLocked(&snap)
	if c := rp.collector.Load(); k == 0 || (c != 0 && r.busy(c)) {
		r.st.Unlock(&rp.mu)
		return 0, nil
	}
	rp.collector.Store(r.st.Token())
	r.st.Unlock(&rp.mu)
	defer func() {
		r.lockRing(rp)
		rp.collector.Store(0)
		r.st.Unlock(&rp.mu)
	}()
	// The scan comes after the snapshot: see the essay.
	limit := r.MinActive()
	freed, bad := 0, 0
	var soft error
	// One tree for all the batches, its buffers kept from earlier
	// collections: its buffers serve each batch in turn.
	t, _ := r.trees.Get().(*tree)
	if t == nil {
		t = &tree{}
	}
	t.r, t.h = r, h
	defer func() {
		t.reset()
		t.r, t.h = nil, alloc.Heap{}
		r.trees.Put(t)
	}()
	for _, e := range snap[:k] {
		if e.epoch > limit {
			break
		}
		t.reset()
		complete, err := t.free(e.batch)
		bad += t.bad
		if isHard(err) {
			return freed, fmt.Errorf("reclaim: collect slot %d, batch %v: %w", slot, e.batch, err)
		}
		if err != nil {
			soft = fmt.Errorf("reclaim: collect slot %d, batch %v: %w", slot, e.batch, err)
		}
		if !complete {
			break
		}
		r.lockRing(rp)
		popped := rp.popIfLocked(e.batch)
		r.st.Unlock(&rp.mu)
		if !popped {
			break
		}
		if t.freedRoot {
			freed++
		}
	}
	if bad > 0 {
		soft = errors.Join(soft, fmt.Errorf("reclaim: collect slot %d: %d retired handles were not batches and were left unfreed: %w",
			slot, bad, ErrBadBatch))
	}
	return freed, soft
}

// looksAdoptable peeks, without the lock, at whether the ring's oldest
// batch was free to go at a scan that found limit, and nobody marked the
// ring as being collected: worth locking it to adopt. (A collector that
// died leaves its mark until recovery clears it; until then its slot is a
// dead process's, which adoption leaves alone anyway.)
func (rp *ring) looksAdoptable(limit uint64) bool {
	head, n := rp.loadHN()
	return n > 0 && rp.collector.Load() == 0 && rp.at(head, 0).epoch.Load() <= limit
}

// procLiveness caches, for one Collect, which processes are alive (each
// answer is a system call).
type procLiveness struct {
	r     *Reclaimer
	known map[int]bool
}

func (p *procLiveness) alive(proc int) bool {
	if proc == p.r.st.ProcIndex() {
		return true
	}
	if v, ok := p.known[proc]; ok {
		return v
	}
	if p.known == nil {
		p.known = make(map[int]bool)
	}
	v := p.r.st.ProcAlive(proc)
	p.known[proc] = v
	return v
}

// slotAdoptable reports whether slot i's ring may be adopted from: its
// slot is nobody's, or a live process's. A dead process's slot waits for
// its recovery, which may still retire into the ring (RetireFor) and
// relies on seeing there what an earlier try put there.
func (r *Reclaimer) slotAdoptable(i int, p *procLiveness) bool {
	o := r.st.Slot(i).Owner.Load()
	return o == 0 || p.alive(int(o)-1)
}

// tree frees one retired batch and everything it lists, children before
// the batch that lists them, with an explicit stack: merged batches nest
// one level per merge, as deep as a long transaction makes them.
type tree struct {
	r   *Reclaimer
	h   alloc.Heap // the zero Heap: no finalizers, objects left
	bad int        // handles listed as batches that were not
	// freedRoot: the root was a batch and this walk freed it (not one
	// freed already, nor one dropped as damaged).
	freedRoot bool
	stack     []frame
	path      map[handle.Handle]bool // batches on the stack, once it is deep
	spare     [][]Entry              // entry buffers of popped frames, for the next pushes
}

type frame struct {
	hd       handle.Handle
	entries  []Entry
	next     int
	complete bool // every entry so far wholly freed
}

// pathDepth is the depth from which the stack's batches are kept in a map
// to refuse cycles (a damaged batch listing its own ancestor); below it a
// linear look is cheaper.
const pathDepth = 16

// free frees the batch root and what it lists. complete is false when
// something had to stay (an object without finalizer or heap): then the
// batches above it stay too, so that it remains listed. A root that no
// longer resolves was wholly freed already: complete.
func (t *tree) free(root handle.Handle) (complete bool, err error) {
	var soft error
	if !t.push(root) {
		return true, nil
	}
	for len(t.stack) > 0 {
		top := &t.stack[len(t.stack)-1]
		if top.next == len(top.entries) {
			done := *top
			t.pop()
			if done.complete {
				if err := t.freeBlock(done.hd); err != nil {
					return false, err
				}
			} else if len(t.stack) > 0 {
				t.stack[len(t.stack)-1].complete = false
			}
			complete = done.complete
			t.freedRoot = complete && len(t.stack) == 0
			continue
		}
		e := top.entries[top.next]
		top.next++
		switch {
		case e.Kind == KindBlock:
			if err := t.freeBlock(e.H); err != nil {
				return false, err
			}
		case e.Kind == KindBatch:
			if t.onPath(e.H) {
				t.bad++ // a cycle: only damage makes one
				continue
			}
			t.push(e.H)
		case t.h.Slot() < 0:
			top.complete = false // objects wait for a collector with a heap
		default:
			fin := t.r.finalizer(e.Kind)
			if fin == nil {
				top.complete = false
				soft = fmt.Errorf("object %v of kind %d: %w", e.H, e.Kind, ErrNoFinalizer)
				continue
			}
			if err := fin(t.h, e.H); err != nil {
				return false, fmt.Errorf("finalize object %v of kind %d: %w", e.H, e.Kind, err)
			}
		}
	}
	return complete, soft
}

// reset readies t for another root, keeping its buffers.
func (t *tree) reset() {
	t.bad, t.freedRoot = 0, false
	clear(t.stack)
	t.stack, t.path = t.stack[:0], nil
}

// push reads a batch and puts it on the stack; it reports false (and
// pushes nothing) when the batch was freed already or is not a batch.
func (t *tree) push(hd handle.Handle) bool {
	var buf []Entry
	if n := len(t.spare); n > 0 {
		buf, t.spare = t.spare[n-1], t.spare[:n-1]
	}
	es, err := t.r.readBatchInto(hd, buf)
	if err != nil {
		if buf != nil {
			t.spare = append(t.spare, buf)
		}
		if !errors.Is(err, handle.ErrStaleHandle) {
			t.bad++ // a bad handle, or a block that is not a batch: never freed
		}
		return false
	}
	t.stack = append(t.stack, frame{hd: hd, entries: es, complete: true})
	if t.path != nil {
		t.path[hd] = true
	} else if len(t.stack) > pathDepth {
		t.path = make(map[handle.Handle]bool, 2*pathDepth)
		for _, f := range t.stack {
			t.path[f.hd] = true
		}
	}
	return true
}

func (t *tree) pop() {
	f := t.stack[len(t.stack)-1]
	t.stack = t.stack[:len(t.stack)-1]
	t.spare = append(t.spare, f.entries[:0])
	if t.path != nil {
		delete(t.path, f.hd)
	}
}

func (t *tree) onPath(hd handle.Handle) bool {
	if t.path != nil {
		return t.path[hd]
	}
	for _, f := range t.stack {
		if f.hd == hd {
			return true
		}
	}
	return false
}

// freeBlock frees one block, through the heap when there is one. A handle
// that does not resolve was freed already (or is damage): nothing to do.
func (t *tree) freeBlock(hd handle.Handle) error {
	var err error
	if t.h.Slot() >= 0 {
		err = t.h.Free(hd)
	} else {
		err = t.r.a.FreeAny(hd)
	}
	if err == nil || errors.Is(err, handle.ErrStaleHandle) || errors.Is(err, handle.ErrBadHandle) {
		return nil
	}
	return fmt.Errorf("free %v: %w", hd, err)
}
