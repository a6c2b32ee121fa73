//go:build linux

package objects

// loadFence orders the loads before it before the loads after it. On
// amd64 loads are never reordered with other loads: nothing to do.
func loadFence() {}
