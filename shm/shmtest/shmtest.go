// Package shmtest has helpers for the tests of shmstore's packages.
package shmtest

import (
	"os"
	"testing"
)

// Dir makes a directory for stores on tmpfs (/dev/shm) and removes it,
// with everything in it, when the test ends, whatever its outcome.
func Dir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "shmstore-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
