//go:build linux && (amd64 || arm64)

package abi

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/objects"
)

// Lib is one instance of the library: its handle tables and the pid it
// was made in. The C library has one, made when it is loaded; tests make
// as many as they like. Its methods are safe for concurrent use, within
// the header's rule that a transaction is used by one thread at a time
// (a second thread is refused with ErrBadArg rather than let in).
type Lib struct {
	pid       int
	isForked  func() bool
	newBuffer func() Buffer
	attempts  atomic.Uint64 // the last attempt number handed out

	slices slices // the contexts of waits in slices (slices.go)

	mu     sync.Mutex // guards the tables and storeEntry.refs' increments
	stores table[storeEntry]
	txs    table[txEntry]
}

// Config configures New.
type Config struct {
	// NewBuffer makes a transaction's out-buffer (nil: Go memory). The C
	// library's makes C.malloc'd memory.
	NewBuffer func() Buffer
	// Forked reports whether this process is a forked child of the one
	// that made the Lib; every call asks. nil: getpid(2) differs from the
	// pid New saw, a system call per call (some 70 ns). The C library's
	// reads a flag that its pthread_atfork child handler sets.
	Forked func() bool
}

// New makes a Lib, remembering the process it runs in: a forked child
// gets ErrForked from every call.
func New(c Config) *Lib {
	l := &Lib{pid: syscall.Getpid(), isForked: c.Forked, newBuffer: c.NewBuffer}
	if l.isForked == nil {
		l.isForked = func() bool { return syscall.Getpid() != l.pid }
	}
	if l.newBuffer == nil {
		l.newBuffer = func() Buffer { return &goBuffer{} }
	}
	l.stores.tag, l.txs.tag = tagStore, tagTx
	return l
}

// ABIVersion is shm_abi_version.
func (l *Lib) ABIVersion() int64 { return Version }

// Counts reports how many stores are open and transactions under way
// through l (for tests and leak checks).
func (l *Lib) Counts() (stores, txs int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stores.live(), l.txs.live()
}

// storeEntry is an open store.
type storeEntry struct {
	st *shmstore.Store
	// sp is st's object space, where the one-shot calls run (see
	// oneShot); nil for a store opened read-only, where st refuses
	// every transaction.
	sp       *objects.Space
	path     string // the store's directory, absolute
	maxValue int64  // the largest value a caller may pass (the region size)
	// refs counts the transactions and calls that use the store: Close
	// refuses while there are any. It goes up under Lib.mu (with the
	// lookup, so that Close, under Lib.mu too, sees it) and down without
	// (a Close that sees it a moment late refuses, as it would have).
	refs atomic.Int64

	// running counts the transactions under way through the store handle
	// (begun and not over, one-shot calls inside their call); while it is
	// at most slots, the process's transaction slots of the store
	// (Options.SlotsPerProc), none of them waits for a slot.
	running atomic.Int64
	slots   int64
}

// txEntry is a transaction begun through the ABI. Its fields are guarded
// by mu, which each call holds.
type txEntry struct {
	lib   *Lib
	mu    sync.Mutex
	h     uint64
	store *storeEntry
	tx    *shmstore.Tx

	over    bool      // ended: rolled back, committed or failed
	running bool      // an attempt is under way (else End asked for a Restart)
	attempt uint64    // the running attempt's number: its objects' handles carry it
	objs    []*object // the attempt's objects, by handle index
	buf     Buffer    // out-values (String, Bytes), allocated at first use
	retried bool      // a call of the attempt returned ErrRetry
	orElse  int       // OrElse tokens handed out in the attempt
}

// object is a container reached in an attempt.
type object struct {
	kind int32 // KindDict ... KindQueue
	v    shmstore.Value
	d    shmstore.Dict
	l    shmstore.List
	r    shmstore.Record
	c    shmstore.Counter
	q    shmstore.Queue

	keys     []shmstore.Value // shm_dict_key's snapshot
	haveKeys bool
}

// guard turns a panic into ErrOther with its text: none escapes a call.
func guard(rc *int32, e *Error) {
	if r := recover(); r != nil {
		*rc = ErrOther
		e.set(ErrOther, fmt.Sprintf("shmstore: panic: %v", r))
	}
}

// forked reports ErrForked in a child forked from the process l was made
// in (its Go runtime did not survive the fork: it may not even get here).
func (l *Lib) forked() error {
	if l.isForked() {
		return failf(ErrForked, "shmstore: called in a forked child of the process that loaded the library (pid %d): open the store in a fresh process", l.pid)
	}
	return nil
}

// call runs fn as a call without handles (Open, Remove).
func (l *Lib) call(e *Error, fn func() error) (rc int32) {
	defer guard(&rc, e)
	if err := l.forked(); err != nil {
		return result(err, e)
	}
	return result(fn(), e)
}

// holdStore returns the store h names, held against Close until
// releaseStore.
func (l *Lib) holdStore(h uint64) (*storeEntry, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s, bad := l.stores.lookup(h)
	switch {
	case bad:
		return nil, badArg("%#x is not a store handle", h)
	case s == nil:
		return nil, failf(ErrClosed, "shmstore: store handle %#x: the store was closed", h)
	}
	s.refs.Add(1)
	return s, nil
}

func (l *Lib) releaseStore(s *storeEntry) { s.refs.Add(-1) }

// withStore runs fn with the store h names.
func (l *Lib) withStore(h uint64, e *Error, fn func(s *storeEntry) error) (rc int32) {
	defer guard(&rc, e)
	if err := l.forked(); err != nil {
		return result(err, e)
	}
	s, err := l.holdStore(h)
	if err != nil {
		return result(err, e)
	}
	defer l.releaseStore(s)
	return result(fn(s), e)
}

// lockTx returns the transaction h names, locked (wait: wait for a call
// on it in another thread to return, else refuse).
func (l *Lib) lockTx(h uint64, wait bool) (*txEntry, error) {
	l.mu.Lock()
	t, bad := l.txs.lookup(h)
	l.mu.Unlock()
	switch {
	case bad:
		return nil, badArg("%#x is not a transaction handle", h)
	case t == nil:
		return nil, failf(ErrTxClosed, "shmstore: transaction %#x is over", h)
	}
	if wait {
		t.mu.Lock()
	} else if !t.mu.TryLock() {
		return nil, badArg("transaction %#x is in use by another thread", h)
	}
	if t.over {
		t.mu.Unlock()
		return nil, failf(ErrTxClosed, "shmstore: transaction %#x is over", h)
	}
	return t, nil
}

// withTx runs fn with the transaction h names, locked; attempt: only
// while an attempt runs (not between shm_tx_end's SHM_AGAIN and
// shm_tx_restart).
func (l *Lib) withTx(h uint64, attempt bool, e *Error, fn func(t *txEntry) error) (rc int32) {
	defer guard(&rc, e)
	if err := l.forked(); err != nil {
		return result(err, e)
	}
	t, err := l.lockTx(h, false)
	if err != nil {
		return result(err, e)
	}
	defer t.mu.Unlock()
	if attempt && !t.running {
		return result(failf(ErrTxClosed, "shmstore: transaction %#x: its attempt ended (SHM_AGAIN): shm_tx_restart it first", h), e)
	}
	rc = result(fn(t), e)
	if rc == ErrRetry {
		t.retried = true
	}
	return rc
}

// withObj runs fn with the object oh of a running attempt of the
// transaction txh; kind: the kind it must be.
func (l *Lib) withObj(txh, oh uint64, kind int32, e *Error, fn func(t *txEntry, o *object) error) int32 {
	return l.withTx(txh, true, e, func(t *txEntry) error {
		o, err := t.obj(oh)
		if err != nil {
			return err
		}
		if o.kind != kind {
			return failf(ErrType, "shmstore: object %#x is a %s, not a %s", oh, kindName(o.kind), kindName(kind))
		}
		return fn(t, o)
	})
}

// obj returns the object of the running attempt that h names.
func (t *txEntry) obj(h uint64) (*object, error) {
	a, i, ok := splitObj(h)
	switch {
	case !ok || a == 0:
		return nil, badArg("%#x is not an object handle", h)
	case a != t.attempt || !t.running:
		return nil, failf(ErrTxClosed, "shmstore: object %#x: its attempt or transaction ended", h)
	case i >= len(t.objs):
		return nil, badArg("object handle %#x names nothing", h)
	}
	return t.objs[i], nil
}

// add registers o in the running attempt and returns its handle.
func (t *txEntry) add(o *object) (uint64, error) {
	if len(t.objs) >= maxObjects {
		return 0, failf(ErrTooLarge, "shmstore: more than %d objects reached in one attempt", maxObjects)
	}
	t.objs = append(t.objs, o)
	return objHandle(t.attempt, len(t.objs)-1), nil
}

// addOut registers o and writes its handle into *out.
func (t *txEntry) addOut(o *object, out *uint64) error {
	h, err := t.add(o)
	if err == nil {
		*out = h
	}
	return err
}

// register registers a container value read in the running attempt and
// returns its handle and ABI kind.
func (t *txEntry) register(v shmstore.Value) (uint64, int32, error) {
	o := &object{v: v}
	var err error
	switch v.Kind() {
	case shmstore.KindDict:
		o.kind = KindDict
		o.d, err = t.tx.Dict(v)
	case shmstore.KindList:
		o.kind = KindQueue
		if o.q, err = t.tx.Queue(v); errors.Is(err, shmstore.ErrTypeMismatch) {
			o.kind = KindList
			o.l, err = t.tx.List(v)
		}
	case shmstore.KindRecord:
		o.kind = KindRecord
		o.r, err = t.tx.Record(v)
	case shmstore.KindCounter:
		o.kind = KindCounter
		o.c, err = t.tx.Counter(v)
	default:
		return 0, 0, failf(ErrOther, "shmstore: a value of kind %v is no container", v.Kind())
	}
	if err != nil {
		return 0, 0, err
	}
	h, err := t.add(o)
	return h, o.kind, err
}

// begin starts the book of a new attempt (after Begin or Restart).
func (t *txEntry) begin() {
	a := t.lib.attempts.Add(1) & objGenMask
	if a == 0 { // wrapped: 0 names no attempt
		a = t.lib.attempts.Add(1) & objGenMask
	}
	t.attempt, t.running = a, true
	t.retried, t.orElse = false, 0
}

// endAttempt closes the book of the running attempt: its objects die.
func (t *txEntry) endAttempt() {
	clear(t.objs)
	t.objs = t.objs[:0]
	t.running, t.attempt = false, 0
}

// finish ends the transaction: its handle is freed (never to name another),
// its buffer freed, its store released.
func (t *txEntry) finish() {
	t.endAttempt()
	t.over = true
	t.objs, t.tx = nil, nil
	if t.buf != nil {
		t.buf.Free()
		t.buf = nil
	}
	t.store.running.Add(-1)
	t.store.refs.Add(-1)
	l := t.lib
	l.mu.Lock()
	l.txs.remove(t.h)
	l.mu.Unlock()
}

// intOut checks out, then writes into it what f returns (nothing when f
// fails).
func intOut[N int | int64](out *int64, f func() (N, error)) error {
	if err := need(out, "out"); err != nil {
		return err
	}
	n, err := f()
	if err != nil {
		return err
	}
	*out = int64(n)
	return nil
}

// valueOut checks out, then writes into it the value f returns (nothing
// when f fails).
func (t *txEntry) valueOut(out *Value, f func() (shmstore.Value, error)) error {
	if err := need(out, "out"); err != nil {
		return err
	}
	v, err := f()
	if err != nil {
		return err
	}
	return t.out(v, out)
}

// need checks that an out-pointer is not NULL.
func need[P any](p *P, what string) error {
	if p == nil {
		return badArg("%s is NULL", what)
	}
	return nil
}
