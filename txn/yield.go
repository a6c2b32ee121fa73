//go:build linux && (amd64 || arm64)

package txn

import "runtime"

// yield lets another goroutine (or, through the scheduler, another
// process) run while a waiter spins.
func yield() { runtime.Gosched() }
