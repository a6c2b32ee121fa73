//go:build linux && (amd64 || arm64)

package abi

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
)

// TxBegin is shm_tx_begin: flags 0 or TxReadOnly. It may wait while the
// process's transaction slots are all in use.
func (l *Lib) TxBegin(h uint64, flags int32, out *uint64, e *Error) int32 {
	return l.txBegin(h, flags, -1, out, e)
}

// TxBeginTimeout is shm_tx_begin_timeout: TxBegin that waits at most
// timeoutMs milliseconds for a slot (see waitContext), then returns
// Timeout: call it again (after checking for signals, say).
func (l *Lib) TxBeginTimeout(h uint64, flags int32, timeoutMs int64, out *uint64, e *Error) int32 {
	return l.txBegin(h, flags, timeoutMs, out, e)
}

func (l *Lib) txBegin(h uint64, flags int32, timeoutMs int64, out *uint64, e *Error) (rc int32) {
	defer guard(&rc, e)
	if err := l.forked(); err != nil {
		return result(err, e)
	}
	if err := need(out, "out"); err != nil {
		return result(err, e)
	}
	if flags&^TxReadOnly != 0 {
		return result(badArg("transaction flags %#x: want 0 or 1 (read-only)", flags), e)
	}
	s, err := l.holdStore(h)
	if err != nil {
		return result(err, e)
	}
	ctx, cancel := l.waitContext(timeoutMs)
	defer cancel()
	s.running.Add(1)
	tx, err := s.st.BeginContext(ctx, flags&TxReadOnly != 0)
	if err != nil {
		s.running.Add(-1)
		l.releaseStore(s)
		return result(err, e) // a timeout: Timeout (Code)
	}
	t := &txEntry{lib: l, store: s, tx: tx} // keeps the store's hold until finish
	t.begin()
	l.mu.Lock()
	t.h = l.txs.add(t)
	l.mu.Unlock()
	*out = t.h
	return OK
}

// TxEnd is shm_tx_end: it ends the running attempt, whose body returned
// bodyRC, and returns OK (committed), Again (restart and run the body
// again) or a negative code (the transaction is over: the body's own
// code, or why the commit failed).
func (l *Lib) TxEnd(h uint64, bodyRC int32, e *Error) int32 {
	return l.withTx(h, false, e, func(t *txEntry) error {
		if !t.running {
			return failf(ErrTxClosed, "shmstore: shm_tx_end: transaction %#x has no attempt running (SHM_AGAIN: shm_tx_restart it)", h)
		}
		bodyErr := t.bodyErr(bodyRC)
		t.endAttempt()
		err := t.tx.End(bodyErr)
		switch {
		case err == nil:
			t.finish()
			return nil
		case errors.Is(err, errBodyRetry):
			// The retry error came back as it went in: txn ended the
			// transaction (an attempt doomed by a failed read on a
			// snapshot that holds, whose body retried anyway), though
			// Again says otherwise. It is over; its slot went back to
			// the store.
			t.finish()
			return failf(ErrOther, "shmstore: a read of the attempt failed on a consistent snapshot and its body retried: the transaction is over (%v)", err)
		case shmstore.Again(err):
			return status(Again)
		}
		t.finish()
		return err
	})
}

// bodyErr is what Tx.End is given for a body that returned code.
func (t *txEntry) bodyErr(code int32) error {
	switch {
	case code == OK:
		return nil
	case code == ErrConflict:
		return fmt.Errorf("shmstore: the body stopped on a conflict: %w", shmstore.ErrConflict)
	case code == ErrRetry && t.retried:
		return fmt.Errorf("shmstore: the body retried: %w: %w", shmstore.ErrRetry, errBodyRetry)
	case code == ErrRetry:
		// Nothing in the attempt asked to wait: End would give up the
		// transaction's slot yet report Again. Fail it instead.
		return badArg("shm_tx_end: body_rc SHM_ERR_RETRY, but no call of this attempt returned it")
	case code < 0 && Defined(code):
		return &bodyError{code: code}
	}
	return badArg("shm_tx_end: body_rc %d is not a body's result (SHM_OK or a negative SHM_ERR_*)", code)
}

// maxWait is the longest timeout taken as one; longer ones wait without
// limit.
const maxWait = int64(time.Duration(1<<62) / time.Millisecond)

// TxRestart is shm_tx_restart: it waits (at most timeoutMs milliseconds,
// see waitContext) for what the last attempt's end asked for, and begins
// the next attempt (OK). Timeout: still waiting; call it again (or roll
// back).
func (l *Lib) TxRestart(h uint64, timeoutMs int64, e *Error) int32 {
	return l.withTx(h, false, e, func(t *txEntry) error {
		if t.running {
			return failf(ErrTxClosed, "shmstore: shm_tx_restart: transaction %#x has an attempt running: shm_tx_end it first", h)
		}
		ctx, cancel := l.waitContext(timeoutMs)
		defer cancel()
		if err := t.tx.Restart(ctx); err != nil {
			return err // its context's end: Timeout (Code)
		}
		t.begin()
		return nil
	})
}

// TxRollback is shm_tx_rollback: the transaction is over, whatever state
// it was in; always OK (but ErrForked in a forked child). It waits for a
// call on the transaction in another thread to return.
func (l *Lib) TxRollback(h uint64) (rc int32) {
	defer guard(&rc, nil)
	if l.forked() != nil {
		return ErrForked
	}
	t, err := l.lockTx(h, true)
	if err != nil {
		return OK
	}
	defer t.mu.Unlock()
	t.endAttempt()
	t.tx.Rollback()
	t.finish()
	return OK
}

// TxRetry is shm_tx_retry: it returns ErrRetry, for the body to stop and
// pass to shm_tx_end, which then waits for a change to what the attempt
// read.
func (l *Lib) TxRetry(h uint64, e *Error) int32 {
	return l.withTx(h, true, e, func(t *txEntry) error { return t.tx.Retry() })
}

// TxOrElseBegin is shm_tx_or_else_begin: *token numbers this OrElse;
// OK: run the first alternative; False: run the second (the first
// retried in the attempt this one continues).
func (l *Lib) TxOrElseBegin(h uint64, token *int64, e *Error) int32 {
	return l.withTx(h, true, e, func(t *txEntry) error {
		if err := need(token, "token"); err != nil {
			return err
		}
		k, skip := layers.TxOf(t.tx).OrElseBegin()
		t.orElse = max(t.orElse, k+1)
		*token = int64(k)
		if skip {
			return status(False)
		}
		return nil
	})
}

// TxOrElseRetried is shm_tx_or_else_retried: the first alternative of the
// OrElse token retried; it returns ErrRetry for the body to stop and pass
// to shm_tx_end (which answers Again: the body reruns with that
// alternative skipped).
func (l *Lib) TxOrElseRetried(h uint64, token int64, e *Error) int32 {
	return l.withTx(h, true, e, func(t *txEntry) error {
		if token < 0 || token >= int64(t.orElse) {
			return badArg("OrElse token %d was not handed out in this attempt", token)
		}
		return layers.TxOf(t.tx).OrElseRetried(int(token))
	})
}

// TxRoot is shm_tx_root: the root Dict.
func (l *Lib) TxRoot(h uint64, out *uint64, e *Error) int32 {
	return l.withTx(h, true, e, func(t *txEntry) error {
		if err := need(out, "out"); err != nil {
			return err
		}
		d := t.tx.Root()
		return t.addOut(&object{kind: KindDict, v: d.Value(), d: d}, out)
	})
}

// TxOpen is shm_tx_open: the container id (ObjID) names, as a Value.
func (l *Lib) TxOpen(h uint64, id uint64, out *Value, e *Error) int32 {
	return l.withTx(h, true, e, func(t *txEntry) error {
		return t.valueOut(out, func() (shmstore.Value, error) { return t.tx.Open(id) })
	})
}

// ObjID is shm_obj_id: the id that names the container o across
// transactions and processes while it is linked (TxOpen).
func (l *Lib) ObjID(h, o uint64, id *uint64, e *Error) int32 {
	return l.withTx(h, true, e, func(t *txEntry) error {
		ob, err := t.obj(o)
		if err != nil {
			return err
		}
		if err := need(id, "id"); err != nil {
			return err
		}
		*id = ob.v.ID()
		return nil
	})
}

// The largest bound of a Queue, the most fields of a Record.
const (
	maxQueueCap = 1 << 31
	maxFields   = 1 << 16
)

// TxNew is shm_tx_new: a new, unlinked Dict, List, Counter, or Queue of
// at most capacity items (0: unbounded; ignored for the others).
func (l *Lib) TxNew(h uint64, kind int32, capacity int64, out *uint64, e *Error) int32 {
	return l.withTx(h, true, e, func(t *txEntry) error {
		if err := need(out, "out"); err != nil {
			return err
		}
		o := &object{kind: kind}
		var err error
		switch kind {
		case KindDict:
			o.d, err = t.tx.NewDict()
			o.v = o.d.Value()
		case KindList:
			o.l, err = t.tx.NewList()
			o.v = o.l.Value()
		case KindCounter:
			o.c, err = t.tx.NewCounter()
			o.v = o.c.Value()
		case KindQueue:
			if capacity < 0 || capacity > maxQueueCap {
				return badArg("queue capacity %d: want 0 (unbounded) to 2^31", capacity)
			}
			o.q, err = t.tx.NewQueue(int(capacity))
			o.v = o.q.Value()
		case KindRecord:
			return badArg("shm_tx_new of a Record: use shm_tx_new_record")
		default:
			return badArg("shm_tx_new: kind %d is not DICT, LIST, COUNTER or QUEUE", kind)
		}
		if err != nil {
			return err
		}
		return t.addOut(o, out)
	})
}

// TxNewRecord is shm_tx_new_record: cls a NUL-terminated class name,
// fields an array of nfields NUL-terminated field names.
func (l *Lib) TxNewRecord(h uint64, cls, fields unsafe.Pointer, nfields int32, out *uint64, e *Error) int32 {
	return l.withTx(h, true, e, func(t *txEntry) error {
		if err := need(out, "out"); err != nil {
			return err
		}
		c, err := cstring(cls, "cls")
		if err != nil {
			return err
		}
		switch {
		case nfields < 0:
			return badArg("nfields %d is negative", nfields)
		case nfields > maxFields:
			return badArg("nfields %d: a Record has at most %d fields", nfields, maxFields)
		case nfields > 0 && fields == nil:
			return badArg("fields is NULL")
		}
		names := make([]string, nfields)
		ptrs := unsafe.Slice((*unsafe.Pointer)(fields), nfields)
		for i, p := range ptrs {
			if names[i], err = cstring(p, fmt.Sprintf("fields[%d]", i)); err != nil {
				return err
			}
		}
		r, err := t.tx.NewRecord(c, names)
		if err != nil {
			return err
		}
		return t.addOut(&object{kind: KindRecord, v: r.Value(), r: r}, out)
	})
}
