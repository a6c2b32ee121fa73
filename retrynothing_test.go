//go:build linux && (amd64 || arm64)

package shmstore_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
)

// TestErrRetryNothing: a Retry in a run that read nothing ends the
// transaction with ErrRetryNothing, from Update and from an explicit
// transaction's End alike.
func TestErrRetryNothing(t *testing.T) {
	st := openTest(t)
	err := st.Update(func(tx *shmstore.Tx) error { return tx.Retry() })
	require.ErrorIs(t, err, shmstore.ErrRetryNothing)
	require.NotErrorIs(t, err, shmstore.ErrRetry)

	tx, err := st.Begin(false)
	require.NoError(t, err)
	err = tx.End(tx.Retry())
	require.ErrorIs(t, err, shmstore.ErrRetryNothing)
	require.False(t, shmstore.Again(err))
	tx.Rollback() // over already: nothing to do
	require.NoError(t, st.Check())
}
