// Package reclaim will free unlinked memory once no transaction that could
// still see it is running (DESIGN.md section 8): a global epoch, each slot's
// published epoch or "quiescent", and per-slot retire lists in shared
// memory, adopted by recovery when their process dies.
//
// It owns shm.PartReclaim. It frees through alloc and never decides what is
// unlinked: that is decided at commit, in txn.
//
// It must never free a block that a running transaction's snapshot can
// reach, and never wait for a dead process's slot.
package reclaim
