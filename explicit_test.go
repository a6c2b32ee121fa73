//go:build linux && (amd64 || arm64)

package shmstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
)

// runExplicit is Update's loop written with Begin's steps.
func runExplicit(ctx context.Context, st *shmstore.Store, body func(tx *shmstore.Tx) error) (runs int, err error) {
	tx, err := st.Begin(false)
	if err != nil {
		return 0, err
	}
	for {
		runs++
		err = tx.End(body(tx))
		if !shmstore.Again(err) {
			return runs, err
		}
		if err = tx.Restart(ctx); err != nil {
			tx.Rollback()
			return runs, err
		}
	}
}

func TestExplicitTransaction(t *testing.T) {
	st := openTest(t)
	require.NoError(t, st.Set("n", 1))
	var kept shmstore.Dict
	runs, err := runExplicit(context.Background(), st, func(tx *shmstore.Tx) error {
		root := tx.Root()
		n, err := root.GetInt("n")
		if err != nil {
			return err
		}
		if kept.Value().IsNone() {
			kept = root
			// A commit under this run: its End must ask for another.
			done := make(chan error)
			go func() { done <- st.Set("n", 10) }()
			if err := <-done; err != nil {
				return err
			}
		}
		return root.Set("n", n+1)
	})
	require.NoError(t, err)
	require.Equal(t, 2, runs)
	n, err := st.GetInt("n")
	require.NoError(t, err)
	require.EqualValues(t, 11, n)
	require.ErrorIs(t, kept.Set("n", 0), shmstore.ErrTxClosed, "objects of a run die with it")
}

func TestExplicitRetryAndRollback(t *testing.T) {
	st := openTest(t)
	e := layers.Of(st).Engine
	before := e.RetryWaits()
	done := make(chan error, 1)
	go func() {
		_, err := runExplicit(context.Background(), st, func(tx *shmstore.Tx) error {
			q, err := tx.Root().Queue("q", 0)
			if err != nil {
				return err
			}
			_, err = q.Get()
			return err
		})
		done <- err
	}()
	sleeping(t, st, before)
	require.NoError(t, st.Put(context.Background(), "q", "job"))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("an explicit transaction in Retry was not woken")
	}

	// A Restart that its context ends can be rolled back, leaving nothing
	// held: Close then succeeds.
	tx := retrying(t, st)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, tx.Restart(ctx), context.DeadlineExceeded)
	tx.Rollback()
	require.ErrorIs(t, tx.Commit(), shmstore.ErrTxClosed)

	// Steps of Begin's on an Update's Tx are refused.
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		require.ErrorIs(t, tx.Commit(), shmstore.ErrTxClosed)
		return nil
	}))
	require.NoError(t, st.Check())
}

func TestExplicitRollbackKeepsNothing(t *testing.T) {
	st := openTest(t)
	tx, err := st.Begin(false)
	require.NoError(t, err)
	require.NoError(t, tx.Root().Set("x", "never"))
	tx.Rollback()
	_, err = st.Get("x")
	require.ErrorIs(t, err, shmstore.ErrKeyNotFound)
	tx.Rollback() // a no-op once over
	require.NoError(t, st.Check())
}

// TestExplicitEndTwice: a second End before Restart is refused and the
// transaction goes on: Rollback still ends it, and Close then succeeds.
func TestExplicitEndTwice(t *testing.T) {
	st := openTest(t)
	tx, err := st.Begin(false)
	require.NoError(t, err)
	_, err = tx.Root().Queue("q", 0)
	require.NoError(t, err)
	q, err := tx.Root().GetQueue("q")
	require.NoError(t, err)
	_, err = q.Get()
	err = tx.End(err)
	require.True(t, shmstore.Again(err), "%v", err)
	require.ErrorIs(t, tx.End(nil), shmstore.ErrTxClosed)
	tx.Rollback()
	require.NoError(t, st.Close())
}

// TestRestartIgnoresAnEndedContextWithNothingToWaitFor: a restart after
// a conflict waits at most for a commit under way, and one after a Retry
// whose change was made already waits for nothing, so a context that
// ended already (the C ABI's shortest timeout is 1 ms, which a loaded
// machine can spend before the call) refuses neither; a Retry with no
// change yet is refused (TestExplicitRetryAndRollback).
func TestRestartIgnoresAnEndedContextWithNothingToWaitFor(t *testing.T) {
	st := openTest(t)
	ended, cancel := context.WithCancel(context.Background())
	cancel()

	tx, err := st.Begin(false)
	require.NoError(t, err)
	err = tx.End(fmt.Errorf("body: %w", shmstore.ErrConflict))
	require.True(t, shmstore.Again(err), "%v", err)
	require.NoError(t, tx.Restart(ended), "after a conflict")
	require.NoError(t, tx.Root().SetInt("k", 1))
	require.NoError(t, tx.Commit())
	n, err := st.GetInt("k")
	require.NoError(t, err)
	require.Equal(t, int64(1), n)

	tx = retrying(t, st)
	require.NoError(t, st.Put(context.Background(), "q", "job")) // the change, before the restart
	require.NoError(t, tx.Restart(ended), "after a Retry whose change was made")
	q, err := tx.Root().Queue("q", 0)
	require.NoError(t, err)
	v, err := q.Get()
	require.NoError(t, err)
	require.NoError(t, tx.Commit())
	s, err := v.AsString()
	require.NoError(t, err)
	require.Equal(t, "job", s)
}

// retrying begins an explicit transaction whose attempt takes from the
// empty Queue "q" and ends in Retry: it waits for a Restart.
func retrying(t *testing.T, st *shmstore.Store) *shmstore.Tx {
	t.Helper()
	tx, err := st.Begin(false)
	require.NoError(t, err)
	q, err := tx.Root().Queue("q", 0)
	require.NoError(t, err)
	_, err = q.Get()
	require.ErrorIs(t, err, shmstore.ErrRetry)
	err = tx.End(err)
	require.True(t, shmstore.Again(err), "%v", err)
	return tx
}
