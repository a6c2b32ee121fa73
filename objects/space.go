//go:build linux && (amd64 || arm64)

package objects

import (
	"context"
	"fmt"
	"unsafe"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/txn"
)

// Space is the object space of one store, as one process sees it: the
// transaction engine it runs on and the root Dict. It is safe for
// concurrent use.
type Space struct {
	e     *txn.Engine
	a     *alloc.Allocator
	root  handle.Handle
	rootP unsafe.Pointer // the root Dict's block in this process (it never moves nor goes away)
	rsize uint64         // region size
}

// Open binds the object space of e's store, creating the root Dict if the
// store has none yet.
func Open(e *txn.Engine) (*Space, error) {
	s := &Space{e: e, a: e.Allocator(), rsize: e.Store().RegionSize()}
	if !e.Store().ReadOnly() {
		e.Reclaimer().SetFinalizer(retireObject, s.finalize)
	}
	rw := e.RootWord()
	if h := handle.Handle(rw.Load()); h != handle.Null {
		s.bindRoot(h)
		return s, nil
	}
	if e.Store().ReadOnly() {
		return nil, fmt.Errorf("objects: store %q has no root yet (opened read-only): %w", e.Store().Name(), ErrNotFound)
	}
	err := e.WithTx(func(t *txn.Tx) error {
		h, p, err := s.allocObject(t.Heap(), KindDict, dictSize)
		if err != nil {
			return err
		}
		hdrAt(p).rc.Store(1) // the root word's reference
		// Handed over before it is published: a crash in between leaks
		// one empty Dict, never frees a published root.
		t.Heap().ForgetLog()
		if !rw.CompareAndSwap(0, uint64(h)) {
			_ = t.Heap().Free(h) // another process made the root first
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("objects: create the root: %w", err)
	}
	s.bindRoot(handle.Handle(rw.Load()))
	return s, nil
}

// bindRoot sets the root Dict's handle, and its block for optimistic
// reads (none if it does not resolve: a damaged store, which every
// transaction then reports).
func (s *Space) bindRoot(h handle.Handle) {
	s.root = h
	if p, err := s.object(h, KindDict); err == nil {
		s.rootP = p
	}
}

// MaxValue is the largest String or Bytes value the store holds: its
// blob, a header and the bytes, must fit one block, at most a region less
// the region's metadata (alloc's MaxBlock). A larger one fails with
// txn.ErrTooLarge, saying so.
func (s *Space) MaxValue() int { return MaxValueOf(s.a) }

// MaxValueOf is MaxValue for the store a serves.
func MaxValueOf(a *alloc.Allocator) int { return a.MaxBlock() - blobHeader }

// Engine is the space's transaction engine.
func (s *Space) Engine() *txn.Engine { return s.e }

// Root is the handle of the root Dict.
func (s *Space) Root() handle.Handle { return s.root }

// Update runs fn as a read-write transaction, re-running it on conflict
// (and after a doomed attempt: see txn.Tx.Doom).
func (s *Space) Update(fn func(tx *Tx) error) error {
	return s.Run(context.Background(), false, fn)
}

// View runs fn as a read-only transaction.
func (s *Space) View(fn func(tx *Tx) error) error {
	return s.Run(context.Background(), true, fn)
}

// Run runs fn as a transaction (read-only: a View) that gives up when
// ctx ends (see txn.Engine.RunContext).
func (s *Space) Run(ctx context.Context, readOnly bool, fn func(tx *Tx) error) error {
	return s.e.RunContext(ctx, readOnly, func(t *txn.Tx) error { return s.attempt(t, fn) })
}

// attempt runs one attempt of fn on t; when fn returns (or panics), the
// attempt's gen ends, so what it handed out refuses further use.
func (s *Space) attempt(t *txn.Tx, fn func(tx *Tx) error) error {
	tx := s.bind(t)
	defer func() { tx.gen++ }()
	return fn(tx)
}

// bind returns the objects-level state of t, reset for a new attempt.
func (s *Space) bind(t *txn.Tx) *Tx {
	tx, ok := t.User.(*Tx)
	if !ok || tx.s != s {
		tx = &Tx{s: s, t: t, gen: txSeq.Add(1) * genStride}
		t.User = tx
	}
	tx.gen++
	tx.reset()
	return tx
}

// allocObject allocates and initializes a container block of n bytes
// (zeroed, header filled, rc 0, unlocked at version 0).
func (s *Space) allocObject(h alloc.Heap, k Kind, n int) (handle.Handle, unsafe.Pointer, error) {
	hd, b, err := h.Alloc(n)
	if err != nil {
		return handle.Null, nil, err
	}
	clear(b)
	p := unsafe.Pointer(&b[0])
	hdrAt(p).kind = uint8(k)
	return hd, p, nil
}

// block resolves h to its memory and size.
func (s *Space) block(h handle.Handle) (unsafe.Pointer, int, error) {
	b, err := s.a.Resolve(h)
	if err != nil {
		return nil, 0, err
	}
	return unsafe.Pointer(&b[0]), len(b), nil
}

// peek is the resolution of readers: a handle found in shared memory
// while reading between txn.ReadBegin and ReadEnd (or under the lock that
// guards it) is translated with bounds checks only, and the size returned
// is what is left of its region. That is enough for memory safety: a
// torn read may follow a stale or garbage handle, but never outside a
// mapped region, and what it read is thrown away when ReadEnd fails. A
// consistent read only meets live blocks (reclaim keeps what its snapshot
// can reach). Check and the finalizers resolve strictly (block).
func (s *Space) peek(h handle.Handle) (unsafe.Pointer, int, error) {
	st := s.e.Store()
	base := st.MappedRegion(h.Region()) // inlined: a region mapped here already, the common case
	if base == nil {
		var err error
		if base, err = st.Region(h.Region()); err != nil {
			return nil, 0, err
		}
	}
	off := h.Offset()
	if h.IsNull() || off >= s.rsize {
		return nil, 0, fmt.Errorf("objects: handle %v outside its region: %w", h, ErrCorrupt)
	}
	return unsafe.Add(base, off), int(min(s.rsize-off, 1<<31)), nil
}

// object resolves a container handle of kind k (any container kind for
// k == KindNone).
func (s *Space) object(h handle.Handle, k Kind) (unsafe.Pointer, error) {
	p, n, err := s.block(h)
	if err != nil {
		return nil, err
	}
	if n < headerSize {
		return nil, fmt.Errorf("objects: %v: block of %d bytes: %w", h, n, ErrCorrupt)
	}
	got := Kind(hdrAt(p).kind)
	if k == KindNone && got.IsContainer() {
		k = got
	}
	if got != k {
		return nil, fmt.Errorf("objects: %v is a %v, not a %v: %w", h, got, k, ErrTypeMismatch)
	}
	if need := minSize(k, hdrAt(p).n); n < need {
		return nil, fmt.Errorf("objects: %v %v of %d bytes (want %d): %w", k, h, n, need, ErrCorrupt)
	}
	return p, nil
}

func minSize(k Kind, n uint32) int {
	switch k {
	case KindDict:
		return dictSize
	case KindList:
		return listSize
	case KindRecord:
		return headerSize + int(n)*cellSize
	}
	return headerSize
}

// readBlob copies the content of a String/Bytes block.
func (s *Space) readBlob(h handle.Handle) (string, error) {
	p, n, err := s.block(h)
	if err != nil {
		return "", err
	}
	l := load(p, 0)
	if l > uint64(n-blobHeader) {
		return "", fmt.Errorf("objects: blob %v of %d bytes says %d: %w", h, n, l, ErrCorrupt)
	}
	return string(unsafe.Slice((*byte)(unsafe.Add(p, blobHeader)), l)), nil
}

// Begin starts a transaction run step by step (txn.Engine.Begin): the
// caller runs the body on the returned Tx, then Commit or End, Restart
// while they ask to run again, or Rollback.
func (s *Space) Begin(readOnly bool) (*Tx, error) {
	return s.BeginContext(context.Background(), readOnly)
}

// BeginContext is Begin that gives up when ctx ends while it waits for a
// slot.
func (s *Space) BeginContext(ctx context.Context, readOnly bool) (*Tx, error) {
	t, err := s.e.BeginContext(ctx, readOnly)
	if err != nil {
		return nil, err
	}
	return s.bind(t), nil
}

// End ends the running attempt of a transaction begun with Begin (see
// txn.Tx.End); what the attempt handed out dies with it.
func (tx *Tx) End(bodyErr error) error {
	tx.gen++
	return tx.t.End(bodyErr)
}

// Restart waits as txn.Tx.Restart does and begins the next attempt, with
// fresh overlays.
func (tx *Tx) Restart(ctx context.Context) error {
	if err := tx.t.Restart(ctx); err != nil {
		return err
	}
	tx.s.bind(tx.t)
	return nil
}

// Rollback gives up a transaction begun with Begin.
func (tx *Tx) Rollback() {
	tx.gen++
	tx.t.Rollback()
}
