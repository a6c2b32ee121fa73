//go:build linux && (amd64 || arm64)

package abi_test

import (
	"testing"
	"time"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/bindings/capi/abi"
)

// TestConflict: a commit under a running attempt makes its end say
// SHM_AGAIN; the objects of the attempt die; the rerun commits.
func TestConflict(t *testing.T) {
	en := newEnv(t)
	l := en.l
	en.set("n", num(1))
	var stale uint64
	runs, rc := en.update(func(tx uint64) int32 {
		r := en.root(tx)
		var v abi.Value
		if rc := l.DictGet(tx, r, str("n"), &v, en.e()); rc != abi.OK {
			return rc
		}
		if stale == 0 {
			stale = r
			en.set("n", num(10)) // another transaction commits meanwhile
		}
		return l.DictSet(tx, r, str("n"), num(v.I+1), en.e())
	})
	en.ok(rc)
	if runs != 2 {
		t.Fatalf("%d runs", runs)
	}
	if n := en.getInt("n"); n != 11 {
		t.Fatalf("n = %d", n)
	}
	tx := en.begin(0)
	var v abi.Value
	en.is(l.DictGet(tx, stale, str("n"), &v, en.e()), abi.ErrTxClosed)
	en.ok(l.TxRollback(tx))
}

// TestConflictInRead: a read that fails in the attempt returns
// SHM_ERR_CONFLICT; the body stops and passes it to shm_tx_end.
func TestConflictInRead(t *testing.T) {
	en := newEnv(t)
	l := en.l
	en.set("a", num(1))
	en.set("b", num(1))
	tx := en.begin(0)
	r := en.root(tx)
	var v abi.Value
	en.ok(l.DictGet(tx, r, str("a"), &v, en.e()))
	_, rc := en.update(func(tx2 uint64) int32 {
		r2 := en.root(tx2)
		if rc := l.DictSet(tx2, r2, str("a"), num(2), en.e()); rc != abi.OK {
			return rc
		}
		return l.DictSet(tx2, r2, str("b"), num(2), en.e())
	})
	en.ok(rc)
	// b changed after the snapshot, and a (read) too: no extension.
	rc = l.DictGet(tx, r, str("b"), &v, en.e())
	if rc != abi.ErrConflict {
		t.Fatalf("read after a conflicting commit: %s (%+v)", abi.CodeName(rc), v)
	}
	en.is(l.TxEnd(tx, rc, en.e()), abi.Again)
	en.ok(l.TxRestart(tx, 1000, en.e()))
	r = en.root(tx)
	en.ok(l.DictGet(tx, r, str("b"), &v, en.e()))
	if v.I != 2 {
		t.Fatal(v.I)
	}
	en.commit(tx)
}

// TestRetryWokenByCommit: a get on an empty queue retries; the restart
// times out (and stays restartable) until another goroutine's commit
// puts an item, which wakes it.
func TestRetryWokenByCommit(t *testing.T) {
	en := newEnv(t)
	l := en.l
	_, rc := en.update(func(tx uint64) int32 {
		var q uint64
		return l.DictContainer(tx, en.root(tx), str("q"), abi.KindQueue, 0, &q, en.e())
	})
	en.ok(rc)

	tx := en.begin(0)
	get := func() int32 {
		var q, v abi.Value
		if rc := l.DictGet(tx, en.root(tx), str("q"), &q, en.e()); rc != abi.OK {
			return rc
		}
		rc := l.QueueGet(tx, q.Obj, 0, &v, en.e())
		if rc == abi.OK && text(t, v) != "job" {
			t.Fatalf("got %q", text(t, v))
		}
		return rc
	}
	en.is(get(), abi.ErrRetry)
	en.is(l.TxEnd(tx, abi.ErrRetry, en.e()), abi.Again)
	start := time.Now()
	en.is(l.TxRestart(tx, 30, en.e()), abi.Timeout)
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Fatalf("timed out after %v", d)
	}
	en.is(l.TxRestart(tx, 0, en.e()), abi.Timeout)

	done := en.putLater("q", "job")
	var e abi.Error
	if rc := l.TxRestart(tx, 10_000, &e); rc != abi.OK {
		t.Fatalf("restart: %s (%s)", abi.CodeName(rc), e.Message())
	}
	if rc := <-done; rc != abi.OK {
		t.Fatalf("put: %s", abi.CodeName(rc))
	}
	en.ok(get())
	en.commit(tx)
}

// putLater puts item on the Queue under key in another goroutine, in a
// transaction that begins at once and commits 20 ms later (while the
// test's goroutine sleeps in Restart); the channel gets its end's code.
func (en *env) putLater(key, item string) <-chan int32 {
	l := en.l
	done := make(chan int32, 1)
	go func() {
		var e abi.Error
		var tx, r, q uint64
		if rc := l.TxBegin(en.st, 0, &tx, &e); rc != abi.OK {
			done <- rc
			return
		}
		time.Sleep(20 * time.Millisecond)
		rc := l.TxRoot(tx, &r, &e)
		if rc == abi.OK {
			rc = l.DictContainer(tx, r, str(key), abi.KindQueue, 0, &q, &e)
		}
		if rc == abi.OK {
			rc = l.QueuePut(tx, q, str(item), 0, &e)
		}
		done <- l.TxEnd(tx, rc, &e)
	}()
	return done
}

// TestOrElse: the first alternative retries, the body reruns at once with
// it skipped, the second takes from the other queue; when both are
// empty the transaction waits for either.
func TestOrElse(t *testing.T) {
	en := newEnv(t)
	l := en.l
	_, rc := en.update(func(tx uint64) int32 {
		r := en.root(tx)
		var q1, q2 uint64
		if rc := l.DictContainer(tx, r, str("q1"), abi.KindQueue, 0, &q1, en.e()); rc != abi.OK {
			return rc
		}
		if rc := l.DictContainer(tx, r, str("q2"), abi.KindQueue, 0, &q2, en.e()); rc != abi.OK {
			return rc
		}
		return l.QueuePut(tx, q2, str("from q2"), 0, en.e())
	})
	en.ok(rc)

	var got []string
	var begins []int32
	body := func(tx uint64) int32 {
		r := en.root(tx)
		var q1, q2, v abi.Value
		if rc := l.DictGet(tx, r, str("q1"), &q1, en.e()); rc != abi.OK {
			return rc
		}
		if rc := l.DictGet(tx, r, str("q2"), &q2, en.e()); rc != abi.OK {
			return rc
		}
		var tok int64
		rc := l.TxOrElseBegin(tx, &tok, en.e())
		begins = append(begins, rc)
		switch rc {
		case abi.OK:
			rc = l.QueueGet(tx, q1.Obj, 0, &v, en.e())
			if rc == abi.ErrRetry {
				en.is(l.TxOrElseRetried(tx, tok+1, en.e()), abi.ErrBadArg) // not handed out
				return l.TxOrElseRetried(tx, tok, en.e())
			}
		case abi.False:
			rc = l.QueueGet(tx, q2.Obj, 0, &v, en.e())
		default:
			return rc
		}
		if rc == abi.OK {
			got = append(got, text(t, v))
		}
		return rc
	}
	runs, rc := en.update(body)
	en.ok(rc)
	if runs != 2 || len(got) != 1 || got[0] != "from q2" || begins[0] != abi.OK || begins[1] != abi.False {
		t.Fatalf("runs %d, got %q, begins %v", runs, got, begins)
	}

	// Both empty: the transaction waits for a put to either.
	got, begins = nil, nil
	tx := en.begin(0)
	en.is(body(tx), abi.ErrRetry) // q1 empty
	en.is(l.TxEnd(tx, abi.ErrRetry, en.e()), abi.Again)
	en.ok(l.TxRestart(tx, 0, en.e())) // at once
	en.is(body(tx), abi.ErrRetry)     // q2 empty too
	en.is(l.TxEnd(tx, abi.ErrRetry, en.e()), abi.Again)
	en.is(l.TxRestart(tx, 20, en.e()), abi.Timeout)
	en.set("unrelated", num(1))
	en.is(l.TxRestart(tx, 20, en.e()), abi.Timeout)
	done := en.putLater("q1", "from q1")
	var e abi.Error
	if rc := l.TxRestart(tx, 10_000, &e); rc != abi.OK {
		t.Fatalf("restart: %s (%s)", abi.CodeName(rc), e.Message())
	}
	if rc := <-done; rc != abi.OK {
		t.Fatalf("put: %s", abi.CodeName(rc))
	}
	en.ok(body(tx))
	en.commit(tx)
	if len(got) != 1 || got[0] != "from q1" {
		t.Fatalf("got %q", got)
	}
}

// TestEndCodes: what shm_tx_end makes of each body_rc, and the steps
// out of order.
func TestEndCodes(t *testing.T) {
	en := newEnv(t)
	l := en.l
	// A body's own failure ends the transaction with its code; nothing
	// it wrote is kept.
	for _, code := range []int32{abi.ErrNotFound, abi.ErrType, abi.ErrOther, abi.ErrOverflow, abi.ErrReadOnly} {
		tx := en.begin(0)
		en.ok(l.DictSet(tx, en.root(tx), str("x"), num(1), en.e()))
		en.is(l.TxEnd(tx, code, en.e()), code)
		en.says("body failed")
		en.is(l.TxEnd(tx, abi.OK, en.e()), abi.ErrTxClosed)
	}
	for _, bad := range []int32{abi.Again, abi.Timeout, abi.False, 77, -55, -101} {
		tx := en.begin(0)
		en.is(l.TxEnd(tx, bad, en.e()), abi.ErrBadArg)
		en.is(l.TxRestart(tx, 0, en.e()), abi.ErrTxClosed)
	}
	tx := en.begin(abi.TxReadOnly)
	var v abi.Value
	en.is(l.DictGet(tx, en.root(tx), str("x"), &v, en.e()), abi.ErrNotFound) // nothing was kept
	en.commit(tx)

	// SHM_ERR_RETRY that no call returned: refused, the transaction over.
	tx = en.begin(0)
	en.root(tx)
	en.is(l.TxEnd(tx, abi.ErrRetry, en.e()), abi.ErrBadArg)
	en.says("no call of this attempt")
	// A Retry in an attempt that read nothing would wait forever: its
	// own code, and the transaction is over.
	tx = en.begin(0)
	en.is(l.TxRetry(tx, en.e()), abi.ErrRetry)
	en.is(l.TxEnd(tx, abi.ErrRetry, en.e()), abi.ErrRetryNothing)
	en.says("wait forever")
	en.is(l.TxRestart(tx, 0, en.e()), abi.ErrTxClosed)
	// A conflict the body made up: run again.
	tx = en.begin(0)
	en.is(l.TxEnd(tx, abi.ErrConflict, en.e()), abi.Again)
	// Steps out of order: End twice, Restart while running; the
	// transaction survives them.
	en.is(l.TxEnd(tx, abi.OK, en.e()), abi.ErrTxClosed)
	en.ok(l.TxRestart(tx, 0, en.e()))
	en.is(l.TxRestart(tx, 0, en.e()), abi.ErrTxClosed)
	en.ok(l.DictSet(tx, en.root(tx), str("y"), num(2), en.e()))
	en.commit(tx)
	if en.getInt("y") != 2 {
		t.Fatal("y")
	}
	// Read-only.
	tx = en.begin(abi.TxReadOnly)
	rc := l.DictSet(tx, en.root(tx), str("y"), num(3), en.e())
	en.is(rc, abi.ErrReadOnly)
	en.is(l.TxEnd(tx, rc, en.e()), abi.ErrReadOnly)
	// Begin's arguments.
	var h uint64
	en.is(l.TxBegin(en.st, 2, &h, en.e()), abi.ErrBadArg)
	en.is(l.TxBegin(en.st, 0, nil, en.e()), abi.ErrBadArg)
	en.is(l.TxBegin(0, 0, &h, en.e()), abi.ErrBadArg)
	// Rollback: always OK, mid-attempt or after, on anything.
	tx = en.begin(0)
	en.ok(l.DictSet(tx, en.root(tx), str("y"), num(4), en.e()))
	en.ok(l.TxRollback(tx))
	en.ok(l.TxRollback(tx))
	en.ok(l.TxRollback(0))
	en.ok(l.TxRollback(en.st))
	if en.getInt("y") != 2 {
		t.Fatal("rolled back write kept")
	}
	tx = en.begin(0)
	en.is(l.TxEnd(tx, abi.ErrConflict, en.e()), abi.Again)
	en.ok(l.TxRollback(tx)) // between attempts
}

// TestHandlesNotReused: a transaction's handle never names a later one,
// nor an object handle a later attempt's object.
func TestHandlesNotReused(t *testing.T) {
	en := newEnv(t)
	l := en.l
	seen := map[uint64]bool{}
	var attempts []uint64
	for range 50 {
		tx := en.begin(0)
		if seen[tx] {
			t.Fatalf("transaction handle %#x reused", tx)
		}
		seen[tx] = true
		r := en.root(tx)
		attempts = append(attempts, abi.Attempt(r))
		en.is(l.TxEnd(tx, abi.ErrConflict, en.e()), abi.Again)
		en.ok(l.TxRestart(tx, 0, en.e()))
		r2 := en.root(tx)
		if r2 == r {
			t.Fatal("object handle reused across attempts")
		}
		attempts = append(attempts, abi.Attempt(r2))
		en.commit(tx)
	}
	for i := 1; i < len(attempts); i++ {
		if attempts[i] <= attempts[i-1] {
			t.Fatalf("attempt numbers %v", attempts)
		}
	}
	if _, txs := l.Counts(); txs != 0 {
		t.Fatalf("%d transactions open", txs)
	}
}

// TestTxOneThreadAtATime: a call on a transaction another thread is
// inside (a Restart that waits) is refused; rollback waits for it.
func TestTxOneThreadAtATime(t *testing.T) {
	en := newEnv(t)
	l := en.l
	en.set("x", num(0))
	tx := en.begin(0)
	var v abi.Value
	en.ok(l.DictGet(tx, en.root(tx), str("x"), &v, en.e()))
	en.is(l.TxRetry(tx, en.e()), abi.ErrRetry)
	en.is(l.TxEnd(tx, abi.ErrRetry, en.e()), abi.Again)
	done := make(chan int32)
	go func() {
		// Waits without limit. A call that meets the loop below inside
		// the transaction is refused (another thread uses it): again.
		for {
			var e abi.Error
			if rc := l.TxRestart(tx, -1, &e); rc != abi.ErrBadArg {
				done <- rc
				return
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var e abi.Error
		var h uint64
		rc := l.TxRoot(tx, &h, &e)
		if rc == abi.ErrBadArg {
			break
		}
		if rc != abi.ErrTxClosed || time.Now().After(deadline) {
			t.Fatalf("root while another thread restarts: %s (%s)", abi.CodeName(rc), e.Message())
		}
		time.Sleep(time.Millisecond)
	}
	en.set("x", num(1)) // wakes it
	if rc := <-done; rc != abi.OK {
		t.Fatalf("restart: %s", abi.CodeName(rc))
	}
	en.ok(l.DictGet(tx, en.root(tx), str("x"), &v, en.e()))
	if v.I != 1 {
		t.Fatal(v.I)
	}
	en.commit(tx)
}

// TestCloseWhileTransactions: a store closes only when its transactions
// are over; their handles then say TX_CLOSED, its own CLOSED.
func TestCloseWhileTransactions(t *testing.T) {
	en := newEnv(t)
	l := en.l
	h := en.open("t", abi.OpenMustExist)
	var tx uint64
	en.ok(l.TxBegin(h, 0, &tx, en.e()))
	en.is(l.Close(h, en.e()), abi.ErrInUse)
	en.is(l.TxEnd(tx, abi.ErrConflict, en.e()), abi.Again)
	en.is(l.Close(h, en.e()), abi.ErrInUse)
	en.ok(l.TxRollback(tx))
	en.ok(l.Close(h, en.e()))
	var r uint64
	en.is(l.TxRoot(tx, &r, en.e()), abi.ErrTxClosed)
	en.is(l.TxBegin(h, 0, &tx, en.e()), abi.ErrClosed)
}

// TestBeginTimeout: with every slot of the process in use, a begin waits;
// shm_tx_begin_timeout gives up after its timeout (and may be called
// again), and begins once a slot is free; shm_tx_begin waits for one.
func TestBeginTimeout(t *testing.T) {
	en := newEnv(t)
	l := en.l
	var held []uint64
	for {
		var tx uint64
		rc := l.TxBeginTimeout(en.st, 0, 20, &tx, en.e())
		if rc == abi.Timeout {
			break
		}
		en.ok(rc)
		held = append(held, tx)
		if len(held) > shmstore.DefaultSlotsPerProc {
			t.Fatalf("%d transactions begun: more than the process's slots", len(held))
		}
	}
	if len(held) != shmstore.DefaultSlotsPerProc {
		t.Fatalf("%d transactions begun before a timeout, want %d", len(held), shmstore.DefaultSlotsPerProc)
	}
	tx := uint64(12345)
	start := time.Now()
	en.is(l.TxBeginTimeout(en.st, abi.TxReadOnly, 30, &tx, en.e()), abi.Timeout)
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Fatalf("timed out after %v", d)
	}
	if tx != 12345 {
		t.Fatal("a begin that timed out wrote *out")
	}
	en.is(l.TxBeginTimeout(en.st, 0, 0, &tx, en.e()), abi.Timeout)
	en.is(l.Close(en.st, en.e()), abi.ErrInUse)

	// A begin without limit waits for a slot to come back.
	done := make(chan int32, 1)
	go func() {
		var e abi.Error
		var tx uint64
		rc := l.TxBeginTimeout(en.st, 0, -1, &tx, &e)
		if rc == abi.OK {
			rc = l.TxEnd(tx, abi.OK, &e)
		}
		done <- rc
	}()
	select {
	case rc := <-done:
		t.Fatalf("a begin ended (%s) with every slot in use", abi.CodeName(rc))
	case <-time.After(30 * time.Millisecond):
	}
	en.ok(l.TxRollback(held[0]))
	if rc := <-done; rc != abi.OK {
		t.Fatalf("the waiting begin: %s", abi.CodeName(rc))
	}
	en.ok(l.TxBeginTimeout(en.st, 0, 1000, &held[0], en.e()))
	for _, tx := range held {
		en.commit(tx)
	}
	en.is(l.TxBeginTimeout(0, 0, 10, &tx, en.e()), abi.ErrBadArg)
	en.is(l.TxBeginTimeout(en.st, 2, 10, &tx, en.e()), abi.ErrBadArg)
	en.is(l.TxBeginTimeout(en.st, 0, 10, nil, en.e()), abi.ErrBadArg)
}

// TestWaitSlices: a wait of 100 to 199 ms ends within 100 ms of a shared
// clock (a slice: early rather than late), a longer one when asked; the
// clock's ticker stops once no wait holds a slice.
func TestWaitSlices(t *testing.T) {
	en := newEnv(t)
	l := en.l
	en.set("x", num(0))
	tx := en.begin(0)
	var v abi.Value
	en.ok(l.DictGet(tx, en.root(tx), str("x"), &v, en.e()))
	en.is(l.TxRetry(tx, en.e()), abi.ErrRetry)
	en.is(l.TxEnd(tx, abi.ErrRetry, en.e()), abi.Again)
	for range 3 {
		start := time.Now()
		en.is(l.TxRestart(tx, 150, en.e()), abi.Timeout)
		if d := time.Since(start); d > 140*time.Millisecond {
			t.Fatalf("a wait of a slice took %v", d)
		}
	}
	if !l.SlicesTicking() {
		t.Fatal("no ticker for the slices")
	}
	start := time.Now()
	en.is(l.TxRestart(tx, 250, en.e()), abi.Timeout)
	if d := time.Since(start); d < 240*time.Millisecond {
		t.Fatalf("a wait of 250 ms ended after %v", d)
	}
	en.ok(l.TxRollback(tx))
	deadline := time.Now().Add(10 * time.Second)
	for l.SlicesTicking() {
		if time.Now().After(deadline) {
			t.Fatal("the ticker of the slices runs on with no wait")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
