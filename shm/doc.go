// Package shm owns a store's files and their mappings: the store directory,
// the control segment (header, region table, process table, slot table and the
// fixed areas the upper layers keep there), the region files, the per-process
// liveness locks, and the two primitives every layer above waits with: futex
// words and a robust cross-process Mutex.
//
// A store on disk:
//
//	<dir>/<name>/
//	  control        header, region table, process table, global parts, slot table
//	  region-00001   data regions, all the same size, created on demand and
//	  region-00002   mapped lazily by the other processes
//	  lock           byte 0: create/attach lock; byte 1+i: liveness of process i
//
// Creation is race-free: every opener takes an OFD write lock on byte 0 of
// lock; the first finds no control file, writes the whole segment as
// control.new, stores the magic word last and renames it to control; the
// others find it and check the layout. A creator that dies midway leaves
// only control.new, so a control file without magic is damage, as are a
// short control or region file and a missing lock or region file: Open
// says which (ErrDamaged), and only Remove with force deletes such a store.
//
// Liveness: an attached process holds an OFD lock on its own byte of lock.
// The kernel drops it when the process dies, whatever the reason, so a reused
// pid cannot pass for a live process. A dead process is repaired by
// RecoverDead, which runs the registered layers' Recover from the highest
// layer down, then frees the process's slots and its table entry.
//
// This package knows nothing of superblocks, objects or transactions: the
// areas it reserves for the upper layers are opaque bytes whose sizes are
// fixed here and folded into the layout stamp. It must never import another
// shmstore package except handle.
package shm
