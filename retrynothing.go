//go:build linux && (amd64 || arm64)

package shmstore

import "github.com/shmstore/shmstore/txn"

// ErrRetryNothing: Tx.Retry (or a Queue's Get or Put that waits) in a run
// of a transaction that had read nothing, so that no commit could ever
// wake it: it would wait forever. Update, View and Tx.End return it
// (wrapped) instead of waiting; the transaction is over. It does not
// match ErrRetry.
var ErrRetryNothing = txn.ErrRetryNothing
