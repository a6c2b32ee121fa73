// Package e2e holds shmstore's end-to-end tests: whole stores driven
// through the public API (package shmstore) by several real processes,
// checked through the layers underneath (internal/layers). It has no code
// of its own, only tests:
//
//   - bank_test.go: worker processes transfer money among accounts while
//     another sums them, with and without SIGKILLs of random workers (and
//     the same with goroutines of one process, for the race detector);
//   - linearize_test.go: histories of concurrent operations from three
//     processes, each checked linearizable (porcupine);
//   - reclamation_test.go: memory unlinked by other processes is freed,
//     including when a process dies in the middle of a merge;
//   - queue_test.go: producers and consumers of a bounded Queue with
//     consumers SIGKILLed and replaced (every job processed exactly
//     once), consumers waiting on an empty Queue use no CPU, and one
//     killed while it sleeps in Retry leaves nothing behind;
//   - wake_test.go: lost wake-ups (ping-pong, a ring, a hot key) with the
//     waits' safety-net timeout raised to a minute, under a watchdog;
//   - contention_test.go: waiters recover a holder SIGKILLed while it
//     commits, and 8 processes on one Counter (attempts per transaction);
//   - benchmp_test.go: benchmarks of several processes (scaling over
//     disjoint keys, a hot value);
//   - coord_bench_test.go: benchmarks of coordination between processes
//     (a Queue round trip, Queue throughput in batches, the wake-up from
//     Retry), each beside its floor (raw futex, spin and unix-socket
//     ping-pongs, one process alone, a raw futex wake) in the same run;
//   - multiproc_test.go: the roles the workers run and the helpers the
//     tests share.
//
// The workers are the test binary re-executed in a role
// (internal/proctest). Each test ends only the processes it started, by
// pid, and removes the stores it made (shm/shmtest.Dir), also when it
// fails. The facade's own unit tests and in-process benchmarks stay with
// package shmstore.
package e2e
