//go:build linux && (amd64 || arm64)

package shmstore_test

import (
	"os"
	"testing"
)

// TestMain raises the waits' safety-net timeout to a minute, so that a
// lost wake-up makes a test hang (and its watchdog fail) instead of
// being hidden by a timeout that re-checks.
func TestMain(m *testing.M) {
	if os.Getenv("SHMSTORE_WAIT_TIMEOUT") == "" {
		_ = os.Setenv("SHMSTORE_WAIT_TIMEOUT", "1m")
	}
	os.Exit(m.Run())
}
