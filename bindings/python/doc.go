// Command python is built with -buildmode=c-shared into libshmstore.so, the
// library the CPython extension of this directory loads (a later issue).
// It will be a thin //export shim over the root package, in the manner of
// rclone's librclone: integer handles across the boundary, never Go
// pointers; errors as codes plus a per-thread last-error message; panics
// recovered at the boundary; getpid() compared with the attached pid at
// every entry point, because a forked Python child cannot use its parent's
// Go runtime.
//
// It must never contain logic the Go API lacks: everything it exports is
// tested without cgo through the root package.
package main

// main is required of a c-shared build; the library does its work in its
// exported functions.
func main() {}
