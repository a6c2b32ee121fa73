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
//		if err != nil {
//			return err
//		}
//		...
//		return accounts.Set("alice", a-10)
//	})
//
// # Transactions
//
// Update runs its function in a read-write transaction and commits it:
// everything the function wrote happens at one instant, or nothing does.
// The function may run more than once: when another transaction changed
// what it read, Update waits for that change and runs it again, so it must
// have no effects outside the transaction. A run in which a read failed (a
// conflict, an object removed under it) is never committed and never
// reported as success, even if the function ignored the error and
// returned nil. An error from the function aborts: nothing it wrote is
// kept, and the error is returned.
//
// View runs a read-only transaction: one consistent snapshot, no locks.
// UpdateContext and ViewContext take a context that ends their waits.
//
// # Waiting
//
// Tx.Retry gives up a run of the function and sleeps until something it
// read has been changed by another commit (futexes, no polling, nothing
// held), then runs it again; Tx.OrElse runs a second alternative when the
// first retries. Queue is a shared FIFO whose Get and Put wait that way;
// Store.Watch yields the value at a path at each change.
// Get, Set, Delete, Add, Export and Decode are single operations, each its
// own small transaction, on paths such as "accounts/alice".
//
// # Lifetimes
//
// A Tx, and every Dict, List, Record, Counter and container Value reached
// through it, is valid only inside the function it was given to. Used
// afterwards (or in a later run of the function) every method fails with
// ErrTxClosed: a kept object never reads stale data and never drops a write
// silently. Scalar Values (None, Bool, Int, Float, String, Bytes) are
// copies and stay valid.
//
// # Values
//
// Values are None, Bool, Int (int64), Float (float64), String, Bytes, and
// the shared containers. Go maps, slices and structs (with msgpack tags)
// stored with Set become shared Dicts and Lists; Decode and Export copy
// them back. A container stored under two keys is one object.
//
// # Crashes
//
// A process that dies at any instruction loses nothing and blocks nobody:
// a committed transaction is completed, an unfinished one rolled back, by
// the next process that waits for its locks, attaches, or runs
// `shmctl check`.
//
// Underneath, in layers that never import the ones above them: shm
// (files, mappings, processes), handle (region+offset handles), alloc (a
// Hoard-style allocator), reclaim (epochs), ipc (futex parking), txn
// (transactions) and objects (the shared kinds). Programs use only this
// package.
package shmstore
