//go:build linux

package objects

import "sync/atomic"

// loadFence orders the loads before it, plain ones too, before the loads
// after it: an atomic read-modify-write (acquire and release) is a
// barrier for both on arm64, where an acquiring load alone orders only
// what follows it.
func loadFence() {
	var x atomic.Uint32
	x.Add(1)
}
