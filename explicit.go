//go:build linux && (amd64 || arm64)

package shmstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/shmstore/shmstore/txn"
)

// Begin starts a transaction that the caller runs step by step instead
// of handing Update or View a function: for interactive use, and for
// bindings to other languages, whose own loop runs the body so that Go
// never calls back into them. The loop that Update runs:
//
//	tx, err := st.Begin(false)
//	if err != nil { ... }
//	for {
//		err = body(tx)       // reads and writes through tx
//		err = tx.End(err)    // commits if body succeeded
//		if !shmstore.Again(err) {
//			break            // committed (nil) or failed; tx is over
//		}
//		if err = tx.Restart(ctx); err != nil {
//			tx.Rollback()
//			break
//		}
//	}
//
// The rules of Update hold: a run whose reads failed never commits, and
// what a run handed out dies with it (ErrTxClosed). A Tx is used by one
// goroutine at a time. Rollback gives the transaction up at any point.
func (s *Store) Begin(readOnly bool) (*Tx, error) {
	return s.BeginContext(context.Background(), readOnly)
}

// BeginContext is Begin that gives up, with ctx.Err(), if ctx ends while
// it waits for one of the process's transaction slots to be free.
func (s *Store) BeginContext(ctx context.Context, readOnly bool) (*Tx, error) {
	if s.sp == nil || s.readOnly {
		return nil, errNoSpace
	}
	t, err := s.sp.BeginContext(ctx, readOnly)
	if err != nil {
		return nil, err
	}
	tx := newTx(t)
	tx.explicit = true
	return tx, nil
}

// Again reports whether an error from Tx.End or Tx.Commit means "Restart
// and run the body again": a conflict with another commit, a Retry, or
// an OrElse alternative that retried.
func Again(err error) bool { return txn.Again(err) }

// errNotExplicit: a step of Begin's on a transaction Update runs.
var errNotExplicit = fmt.Errorf("shmstore: Commit, End, Restart and Rollback are for transactions begun with Begin: %w", ErrTxClosed)

// step checks that tx is an explicit transaction that is not over.
func (tx *Tx) step() error {
	if !tx.explicit {
		return errNotExplicit
	}
	if tx.over {
		return fmt.Errorf("shmstore: transaction already over: %w", ErrTxClosed)
	}
	return nil
}

// Commit is End(nil): it commits what the body wrote, or says to run it
// again (Again), or fails.
func (tx *Tx) Commit() error { return tx.End(nil) }

// End ends a run of the body of a transaction begun with Begin, which
// returned bodyErr: nil commits. It returns nil when the transaction
// committed, an error for which Again is true when the body must run
// again after Restart, and any other error when it failed. Unless Again,
// the transaction is over.
func (tx *Tx) End(bodyErr error) error {
	if err := tx.step(); err != nil {
		return err
	}
	err := tx.t.End(bodyErr)
	if errors.Is(err, txn.ErrDone) {
		// A second End before Restart: refused, the transaction goes on.
		return fmt.Errorf("shmstore: End again before Restart: %w", ErrTxClosed)
	}
	if !Again(err) {
		tx.over = true
	}
	return err
}

// Restart waits as Update would before running the body again (for the
// conflicting commit to finish, or, after a Retry, for something the run
// read to change) and begins the next run. When ctx ends first it returns
// ctx.Err(), and the transaction may be restarted again or rolled back.
func (tx *Tx) Restart(ctx context.Context) error {
	if err := tx.step(); err != nil {
		return err
	}
	if err := tx.t.Restart(ctx); err != nil {
		if errors.Is(err, txn.ErrDone) {
			return fmt.Errorf("shmstore: Restart without an End that asked for it: %w", ErrTxClosed)
		}
		return err
	}
	tx.gen = tx.t.Gen()
	return nil
}

// Rollback gives up a transaction begun with Begin, wherever it is:
// nothing the current run wrote is kept, and nothing stays held. It does
// nothing on one that is over.
func (tx *Tx) Rollback() {
	if tx.step() != nil {
		return
	}
	tx.over = true
	tx.t.Rollback()
}
