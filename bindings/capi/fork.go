//go:build linux && (amd64 || arm64) && cgo

package main

/*
#include <pthread.h>

// shmstore_forked is set in a child forked from this process (a
// pthread_atfork child handler: fork(3) runs it; the Go runtime's own
// forks exec at once and call nothing here).
volatile int shmstore_forked;

static void shmstore_atfork_child(void) { shmstore_forked = 1; }

static void shmstore_watch_fork(void) { pthread_atfork(NULL, NULL, shmstore_atfork_child); }
*/
import "C"

// init registers the handler that marks a forked child, while the
// library loads: before any call of the library returns.
func init() { C.shmstore_watch_fork() }

// forked reports whether this process is a forked child of the one that
// loaded the library: a load of a C int, where getpid(2) would cost a
// system call in every call of the library.
func forked() bool { return C.shmstore_forked != 0 }
