// Package reclaim frees unlinked memory once no transaction that could
// still see it is running, with LMDB's reader table as the model: each
// slot publishes the version it reads at, or "quiescent", in a word of its
// own; a committer retires what it unlinked into its slot's retire ring,
// tagged with its commit version; a collector frees a ring's batches once
// every active slot reads at or after their version. reclaim.go opens
// with the argument for why that is safe, and the contract the
// transaction layer keeps for it.
//
// The epochs are txn's global version clock: reclaim only receives the
// numbers (Enter, Retire). A retired batch lists plain blocks (freed
// through alloc), nested batches, and objects (freed by a Finalizer the
// objects layer registers per kind). What may be freed in a ring that
// nobody is collecting (a slot given back, or idle in a live process) is
// adopted by the next collector; a dead process's slots are made quiescent
// by recovery (Recover), so they stall reclamation only until it runs. A
// long transaction does stall it; Held and Active show who holds what
// back.
//
// It owns shm.PartReclaim: each slot's epoch word and retire ring, and the
// global part's format stamp and overflow ring. It frees through alloc and
// never decides what is unlinked: that is decided at commit, in txn.
//
// It must never free a block that a running transaction's snapshot can
// reach, never wait for a dead process's slot, never hold a ring lock
// while running a finalizer or allocating, and never trust a handle or a
// batch read from shared memory: they are resolved through alloc and
// bounded by their block's size. It must never import txn, objects, ipc
// or the root package.
package reclaim
