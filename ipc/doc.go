// Package ipc lets processes wait for one another: a parking table of
// futex words hashed by the store-wide address of what is waited on,
// serving lock queues (a reader or committer waiting for a locked word), the
// wait after an abort (for the conflicting object to change) and, later,
// Retry and watches. Many flags share one kernel object; a releaser makes a
// system call only when a waiter announced itself.
//
// It owns shm.PartIPC. It builds on the futex primitives of package shm
// (FutexWait, FutexWake), which alloc needs too.
//
// It must never wait without a timeout (liveness is re-checked on every
// wake-up) and never wake waiters of what did not change: wakes go to one
// bucket, and the waiters of other words that share it re-check and sleep
// again.
package ipc
