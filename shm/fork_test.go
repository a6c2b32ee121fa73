package shm

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// forkChildGuard forks with a raw syscall; the child reads its copy of the
// fork-guard page and exits at once through the raw exit syscall, with the
// guard byte as its status (the Go runtime cannot run in a forked child, so
// the child does nothing else). nosplit: no stack growth in the child.
//
//go:nosplit
func forkChildGuard(g *byte) (pid int, errno unix.Errno) {
	r, _, e := unix.RawSyscall(unix.SYS_CLONE, uintptr(unix.SIGCHLD), 0, 0)
	if e != 0 {
		return -1, e
	}
	if r == 0 {
		unix.RawSyscall(unix.SYS_EXIT_GROUP, uintptr(*g), 0, 0)
	}
	return int(r), 0
}

// A store used in a forked child fails with ErrForked: the guard page is
// MADV_WIPEONFORK, so the child's copy reads zero while the parent's still
// says attached.
func TestForkGuard(t *testing.T) {
	s := openT(t, "fork", smallOpts(testDir(t)))
	require.NoError(t, s.Guard())
	require.Equal(t, byte(1), *s.forkGuard)
	pid, errno := forkChildGuard(s.forkGuard)
	require.Zero(t, errno)
	var ws unix.WaitStatus
	_, err := unix.Wait4(pid, &ws, 0, nil)
	require.NoError(t, err)
	require.True(t, ws.Exited())
	require.Equal(t, 0, ws.ExitStatus(), "the child's guard byte is wiped")
	require.Equal(t, byte(1), *s.forkGuard, "the parent's is not")
	require.NoError(t, s.Guard())
	// What the child would have been told, shown through the parent's page.
	*s.forkGuard = 0
	require.ErrorIs(t, s.Guard(), ErrForked)
	_, err = s.Lease()
	require.ErrorIs(t, err, ErrForked)
	*s.forkGuard = 1
}
