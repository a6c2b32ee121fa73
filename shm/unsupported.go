//go:build !linux || !(amd64 || arm64)

package shm

// shmstore runs on Linux on amd64 and arm64 only: it relies on futexes, OFD
// locks, tmpfs and the memory ordering of those CPUs. The undefined name
// below makes the build fail with a message that says so.
var _ = shmstore_supports_only_linux_on_amd64_or_arm64
