// Package shmstore is a multi-process shared-memory object store for Linux.
//
// Several processes open the same store by name and share Dicts, Lists,
// Records and Counters that live in shared memory. They change them with
// serializable transactions, in the manner of bbolt:
//
//	st, err := shmstore.Open("bank", shmstore.Options{})
//	if err != nil { ... }
//	defer st.Close()
//	err = st.Update(func(tx *shmstore.Tx) error {
//		accounts, err := tx.Root().Dict("accounts") // made if missing
//		if err != nil {
//			return err
//		}
//		a, err := accounts.GetInt("alice")
//		...
//		return accounts.Set("alice", a-10)
//	})
//
// Update re-runs its function when another transaction changed what it
// read (after waiting for that change to finish), so the function must
// have no effects outside the transaction; an error from it aborts, and
// nothing it wrote is kept. View runs a read-only transaction: one
// consistent snapshot, no locks. Get, Set, Delete, Add, Export and Decode
// are single operations, each its own small transaction, on paths such as
// "accounts/alice".
//
// Go maps, slices and structs (with msgpack tags) stored with Set become
// shared Dicts and Lists; Decode and Export copy them back.
//
// A process that dies at any instruction loses nothing and blocks nobody:
// a committed transaction is completed, an unfinished one rolled back, by
// the next process that waits for its locks, attaches, or runs
// `shmctl check`.
//
// The layers (see DESIGN.md): shm (files, mappings, processes), handle,
// alloc (the Hoard-style allocator, also usable directly through
// Allocator), reclaim (epochs), ipc (futex parking), txn (transactions)
// and objects (the shared kinds).
package shmstore
