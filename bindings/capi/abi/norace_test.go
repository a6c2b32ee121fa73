//go:build linux && (amd64 || arm64) && !race

package abi_test

// raceOn: the race detector is on (see race_test.go).
const raceOn = false
