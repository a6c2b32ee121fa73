//go:build linux && (amd64 || arm64)

package txn

// This file owns transactions that the caller runs step by step instead
// of handing Run a function: bindings to other languages (whose own code
// runs the body, so Go never calls back into them) and interactive use.
// The steps are the ones Run takes:
//
//	tx := Begin(readOnly)
//	for {
//		body (reads and writes through tx)
//		err := tx.Commit()          // or End(bodyErr) when the body failed
//		if err == nil || !Again(err) {
//			break                   // over; tx went back to the engine
//		}
//		tx.Restart(ctx)             // waits as Run would; ctx may end it
//	}
//	(tx.Rollback() at any point gives up)

import (
	"context"
	"errors"
)

// ErrDone: a step of a transaction that is over.
var ErrDone = errors.New("transaction over")

// Begin starts a transaction run step by step (see the file comment). It
// leases a slot, which Commit, End or Rollback give back when the
// transaction is over. A Tx belongs to one goroutine (or thread) at a
// time.
func (e *Engine) Begin(readOnly bool) (*Tx, error) {
	return e.BeginContext(context.Background(), readOnly)
}

// BeginContext is Begin that gives up, with ctx.Err(), when ctx ends
// while it waits for one of the process's slots.
func (e *Engine) BeginContext(ctx context.Context, readOnly bool) (*Tx, error) {
	tx, err := e.getContext(ctx)
	if err != nil {
		return nil, err
	}
	tx.start(readOnly)
	tx.explicit = true
	return tx, nil
}

// Again reports whether an error from Commit or End means "restart and
// run the body again" (a conflict, a Retry, a retried alternative).
func Again(err error) bool { return errors.Is(err, ErrConflict) || errors.Is(err, ErrRetry) }

// Commit ends the running attempt of an explicit transaction with a body
// that succeeded: nil when it committed; an error for which Again is true
// when it must run again (call Restart first); any other error when it
// failed. When the transaction is over (nil, or not Again) its slot goes
// back to the engine and tx must not be used again.
func (tx *Tx) Commit() error { return tx.End(nil) }

// End is Commit for a body that returned bodyErr (nil: Commit): a body
// whose reads failed runs again even though it failed (it saw a state
// that never existed); otherwise its error ends the transaction.
func (tx *Tx) End(bodyErr error) error {
	if !tx.explicit || tx.next != nextNone {
		return ErrDone
	}
	err := tx.endAttempt(bodyErr)
	if tx.next == nextNone {
		tx.release()
	}
	return err
}

// Rollback gives up an explicit transaction wherever it is: the running
// attempt is aborted (nothing it wrote is kept), a wait is abandoned, and
// the slot goes back to the engine. A no-op on one that is over.
func (tx *Tx) Rollback() {
	if !tx.explicit {
		return
	}
	if tx.next == nextNone {
		tx.abort() // the attempt under way
	}
	tx.Abandon()
	tx.release()
}

// release gives an explicit transaction's slot back.
func (tx *Tx) release() {
	tx.explicit = false
	tx.afterRun()
	tx.e.put(tx)
}
