//go:build linux && (amd64 || arm64) && race

package shmstore_test

// raceOn: the race detector is on (its instrumentation changes what is
// allocated: allocation counts are not checked then).
const raceOn = true
