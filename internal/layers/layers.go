// Package layers hands the layers under an open store to the programs of
// this module that inspect them (shmctl, the end-to-end tests). Users of
// the store never see them: package shmstore is the whole user API, and it
// registers Of when it is loaded.
package layers

import (
	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/objects"
	"github.com/shmstore/shmstore/reclaim"
	"github.com/shmstore/shmstore/shm"
	"github.com/shmstore/shmstore/txn"
)

// Store is what an open shmstore.Store is made of, bottom up.
type Store struct {
	Shm     *shm.Store         // files, mappings, processes
	Alloc   *alloc.Allocator   // the block allocator
	Reclaim *reclaim.Reclaimer // retire rings and epochs
	Engine  *txn.Engine        // transactions
	Space   *objects.Space     // the object space; nil for a store opened read-only before it had a root
}

// Of returns the layers of an open *shmstore.Store. Package shmstore sets
// it in its init; it panics on anything else, which is a bug in a caller
// of this module, never reachable by a user of the store.
var Of func(store any) *Store

// TxOf returns the object-level transaction under a *shmstore.Tx (set by
// package shmstore; for the C ABI, which steps OrElse itself).
var TxOf func(tx any) *objects.Tx
