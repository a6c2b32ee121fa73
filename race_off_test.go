//go:build linux && (amd64 || arm64) && !race

package shmstore_test

// raceOn: the race detector is on (see race_on_test.go).
const raceOn = false
