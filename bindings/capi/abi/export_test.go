//go:build linux && (amd64 || arm64)

package abi

// Hooks for the tests of package abi_test.

// SetPid makes l believe it was loaded in process pid: every call then
// acts as in a forked child.
func (l *Lib) SetPid(pid int) { l.pid = pid }

// SetError is Error.set.
func SetError(e *Error, code int32, msg string) { e.set(code, msg) }

// Attempt is the number of the attempt an object handle names.
func Attempt(h uint64) uint64 { a, _, _ := splitObj(h); return a }

// SlicesTicking reports whether l's ticker of wait slices runs.
func (l *Lib) SlicesTicking() bool {
	l.slices.mu.Lock()
	defer l.slices.mu.Unlock()
	return l.slices.cur != nil
}
