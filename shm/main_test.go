//go:build linux && (amd64 || arm64)

package shm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/shmstore/shmstore/internal/proctest"
	"github.com/shmstore/shmstore/shm/shmtest"

	"github.com/stretchr/testify/require"
)

// Multi-process tests re-execute this test binary (internal/proctest). The
// role travels in the environment, and its arguments in envArgs (JSON);
// TestMain dispatches on them before the testing package runs anything.
const envArgs = "SHMSTORE_TEST_ARGS"

// waitLong bounds every wait for something that should happen soon. It only
// turns a hang into a failure; no test asserts that anything is fast.
const waitLong = 20 * time.Second

// childArgs are the arguments of a child process.
type childArgs struct {
	Name     string    // store name
	Opts     []Options // options for Open (one per attempt for role "open")
	Index    int       // role "create": ensure at least Index+1 regions
	Lease    int       // role "hold": slots to lease
	Lock     bool      // role "hold": lock growLock, recoverLock and extraMutex
	Region   bool      // role "open": map region 1 and write to it
	GoFile   string    // role "create": start once this file exists
	ExitFile string    // role "create": close and exit once this file exists
}

// childReport is what a child prints, one JSON object per line.
type childReport struct {
	PID      int
	Proc     int
	Token    uint32
	Slots    []int
	Created  int64
	Regions  uint32
	Err      string
	IsPerm   bool // errors.Is(err, ErrPermission)
	IsFSPerm bool // errors.Is(err, fs.ErrPermission)
	Wrote    bool // role "open": wrote region 1
}

func TestMain(m *testing.M) { proctest.Main(m) }

func init() {
	proctest.Register("hold", withArgs(holdChild))
	proctest.Register("create", withArgs(createChild))
	proctest.Register("open", withArgs(openChild))
}

// withArgs makes a role of fn, which gets the arguments from envArgs.
func withArgs(fn func(a childArgs) int) func() int {
	return func() int {
		var a childArgs
		if err := json.Unmarshal([]byte(os.Getenv(envArgs)), &a); err != nil {
			return proctest.Fail(fmt.Errorf("bad arguments: %w", err))
		}
		return fn(a)
	}
}

// extraMutex is a Mutex in a global area no layer uses in these tests.
func extraMutex(s *Store) *Mutex { return (*Mutex)(s.GlobalPart(PartTxn)) }

// emit prints v as one line of JSON for the parent (proctest.Emit).
func emit(v any) {
	if err := proctest.Emit(v); err != nil {
		panic(err)
	}
}

// waitFile polls for path; false if it did not appear within waitLong (the
// parent died or gave up).
func waitFile(path string) bool {
	deadline := time.Now().Add(waitLong)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

// fail reports a child's error (proctest.Fail) and returns its status.
func fail(format string, args ...any) int { return proctest.Fail(fmt.Errorf(format, args...)) }

// holdChild attaches, leases, maybe locks, reports, then sleeps until
// killed (or until the parent closes stdin by dying).
func holdChild(a childArgs) int {
	s, err := Open(a.Name, a.Opts[0])
	if err != nil {
		return fail("open: %v", err)
	}
	rep := childReport{PID: os.Getpid(), Proc: s.ProcIndex(), Token: s.Token()}
	for i := 0; i < a.Lease; i++ {
		slot, err := s.Lease()
		if err != nil {
			return fail("lease: %v", err)
		}
		rep.Slots = append(rep.Slots, slot)
	}
	if a.Lock {
		s.Lock(&s.hdr.growLock)
		s.Lock(&s.hdr.recoverLock)
		s.Lock(extraMutex(s))
	}
	emit(rep)
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// createChild says "ready", waits for GoFile, opens the store and grows
// it to at least Index+1 regions, reports, and closes and exits once
// ExitFile exists.
func createChild(a childArgs) int {
	emit("ready")
	if !waitFile(a.GoFile) {
		return fail("no start signal")
	}
	s, err := Open(a.Name, a.Opts[0])
	if err != nil {
		return fail("open: %v", err)
	}
	for s.Regions() < uint32(a.Index+1) {
		if _, err := s.Grow(s.Regions()); err != nil {
			return fail("grow: %v", err)
		}
	}
	emit(childReport{PID: os.Getpid(), Proc: s.ProcIndex(), Token: s.Token(),
		Created: s.Header().Created, Regions: s.Regions()})
	if !waitFile(a.ExitFile) {
		return fail("no exit signal")
	}
	if err := s.Close(); err != nil {
		return fail("close: %v", err)
	}
	return 0
}

// openChild makes one attempt per Options and reports each outcome.
func openChild(a childArgs) int {
	for _, o := range a.Opts {
		rep := childReport{PID: os.Getpid(), Proc: -1}
		s, err := Open(a.Name, o)
		if err == nil && a.Region {
			var p []byte
			if p, err = regionBytes(s, 1); err == nil {
				p[1] = 0x5a
				rep.Wrote = true
			}
			if err != nil {
				_ = s.Close()
				s = nil
			}
		}
		if err != nil {
			rep.Err = err.Error()
			rep.IsPerm = errors.Is(err, ErrPermission)
			rep.IsFSPerm = errors.Is(err, fs.ErrPermission)
		} else {
			rep.Proc = s.ProcIndex()
			if err := s.Close(); err != nil {
				rep.Err = "close: " + err.Error()
			}
		}
		emit(rep)
	}
	return 0
}

// testDir is shmtest.Dir: a tmpfs directory removed when the test ends.
func testDir(t testing.TB) string { return shmtest.Dir(t) }

// smallOpts are options for a small store in dir.
func smallOpts(dir string) Options {
	return Options{Dir: dir, RegionSize: 1 << 20, MaxSize: 4 << 20, Procs: 8, Slots: 8, SlotsPerProc: 2}
}

// openT opens a store and closes it when the test ends (a second Close is
// harmless).
func openT(t testing.TB, name string, o Options) *Store {
	t.Helper()
	s, err := Open(name, o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// regionBytes maps region id and returns it as a byte slice.
func regionBytes(s *Store, id uint16) ([]byte, error) {
	p, err := s.Region(id)
	if err != nil {
		return nil, err
	}
	return unsafe.Slice((*byte)(p), s.RegionSize()), nil
}

// startChild runs bin (the test binary, or a copy: publicTestBinary) in
// role with args, as cred if not nil. Its stdin stays open while the test
// runs: a "hold" child exits when it reads EOF, so it cannot outlive the
// test. It is killed (by pid) and waited for when the test ends if it is
// still running.
func startChild(t testing.TB, bin, role string, a childArgs, cred *syscall.Credential) *proctest.Proc {
	t.Helper()
	raw, err := json.Marshal(a)
	require.NoError(t, err)
	return proctest.Start(t, role, proctest.Options{
		Name:       "child " + role,
		Binary:     bin,
		Env:        []string{envArgs + "=" + string(raw)},
		Dir:        "/", // reachable by another user
		Credential: cred,
		Timeout:    waitLong,
	})
}

// report decodes the child's next report.
func report(c *proctest.Proc) childReport {
	var rep childReport
	c.DecodeLine(&rep)
	return rep
}

// waitChild waits for the child to end and returns how it ended; it fails the
// test if the child is still running after waitLong.
func waitChild(t testing.TB, c *proctest.Proc) error {
	t.Helper()
	exited, err := c.WaitTimeout(waitLong)
	if !exited {
		t.Fatalf("child %d still running after %v; stderr:\n%s", c.Pid(), waitLong, c.Stderr())
	}
	return err
}

// killChild SIGKILLs the child by pid and waits until it is gone (its files,
// and so its OFD locks, are closed before the parent can reap it).
func killChild(t testing.TB, c *proctest.Proc) {
	t.Helper()
	killed, err := c.Kill()
	require.NoError(t, err)
	require.True(t, killed, "child %d should have died of SIGKILL: %v", c.Pid(), c.Wait())
}

// testBinary returns the path of this test binary.
func testBinary(t testing.TB) string { return proctest.Executable(t) }

// publicTestBinary copies the test binary to a world-readable directory so
// that a child running as another user can execute it.
func publicTestBinary(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "shmstore-bin-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	src, err := os.Open(testBinary(t))
	require.NoError(t, err)
	defer src.Close()
	dst := filepath.Join(dir, "shm.test")
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(out, src)
	require.NoError(t, err)
	require.NoError(t, out.Close())
	require.NoError(t, os.Chmod(dst, 0o755))
	return dst
}
