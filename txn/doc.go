// Package txn will run serializable transactions over shared objects (DESIGN.md
// section 6): the slot table's transaction state, the global version clock,
// versioned lock words, read sets with snapshot extension, buffered writes,
// commit by locking the write set in handle order, redo records for crash
// atomicity, Retry and OrElse, and fairness through priority stamps.
//
// It owns the txn parts of the control segment (shm.PartTxn) and of each
// slot. It composes reclaim and ipc below it and drives their recovery, and
// alloc's, top-down.
//
// It must never import objects or the root package, never hold a lock while
// running user code, and never let a transaction observe a state that did
// not exist at one moment.
package txn
