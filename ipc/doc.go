// Package ipc will let processes wait for one another (DESIGN.md section 7):
// a parking table of futex words hashed by lock-word address, with waiter
// counts, serving lock queues, Retry and watches; releasers make a syscall
// only when someone waits.
//
// It owns shm.PartIPC and each slot's wait word, and builds on the futex
// primitives of package shm (FutexWait, FutexWake), which alloc needs too.
//
// It must never wait without a timeout (liveness is re-checked on every
// wake-up) and never wake waiters of what did not change.
package ipc
