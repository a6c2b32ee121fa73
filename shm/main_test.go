//go:build linux && (amd64 || arm64)

package shm

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/shmstore/shmstore/shm/shmtest"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Multi-process tests re-execute this test binary. The role and its
// arguments travel in the environment; TestMain dispatches on them before
// the testing package runs anything.
const (
	envRole = "SHMSTORE_TEST_ROLE"
	envArgs = "SHMSTORE_TEST_ARGS"
)

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

func TestMain(m *testing.M) {
	if role := os.Getenv(envRole); role != "" {
		os.Exit(runChild(role, os.Getenv(envArgs)))
	}
	os.Exit(m.Run())
}

// extraMutex is a Mutex in a global area no layer uses in these tests.
func extraMutex(s *Store) *Mutex { return (*Mutex)(s.GlobalPart(PartTxn)) }

func emit(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(b))
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

func runChild(role, raw string) int {
	var a childArgs
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		fmt.Fprintf(os.Stderr, "child %s: bad arguments: %v\n", role, err)
		return 2
	}
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "child %s (pid %d): %s\n", role, os.Getpid(), fmt.Sprintf(format, args...))
		return 1
	}
	switch role {
	case "hold":
		// Attach, lease, maybe lock, report, then sleep until killed (or
		// until the parent closes stdin by dying).
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
	case "create":
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
	case "open":
		// One attempt per Options; report each outcome.
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
	return fail("unknown role")
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

// syncBuffer is a bytes.Buffer safe for the exec copier and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// child is a re-executed test binary playing a role.
type child struct {
	t      testing.TB
	cmd    *exec.Cmd
	pid    int
	stdin  io.WriteCloser
	lines  chan string
	done   chan struct{}
	werr   error
	stderr *syncBuffer
}

// startChild runs bin (the test binary or a copy) in role with args, as
// cred if not nil. The child is killed (by pid) and waited for when the
// test ends if it is still running.
func startChild(t testing.TB, bin, role string, a childArgs, cred *syscall.Credential) *child {
	t.Helper()
	raw, err := json.Marshal(a)
	require.NoError(t, err)
	cmd := exec.Command(bin, "-test.run=^"+t.Name()+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), envRole+"="+role, envArgs+"="+string(raw))
	cmd.Dir = "/"
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	r, w, err := os.Pipe()
	require.NoError(t, err)
	c := &child{t: t, cmd: cmd, lines: make(chan string, 16), done: make(chan struct{}), stderr: &syncBuffer{}}
	cmd.Stdout = w
	cmd.Stderr = c.stderr
	// The child's stdin stays open while the test holds c.stdin: a
	// "hold" child exits when it reads EOF, so it cannot outlive us.
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		_, _ = r.Close(), w.Close()
		require.NoError(t, err)
	}
	if err := cmd.Start(); err != nil {
		_, _ = r.Close(), w.Close()
		require.NoError(t, err, "start child %s", role)
	}
	_ = w.Close()
	c.pid = cmd.Process.Pid
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	go func() {
		c.werr = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			_ = unix.Kill(c.pid, unix.SIGKILL)
			<-c.done
		}
		_ = r.Close()
	})
	return c
}

// line returns the child's next line of output.
func (c *child) line() string {
	c.t.Helper()
	select {
	case l, ok := <-c.lines:
		if ok {
			return l
		}
		select {
		case <-c.done:
		case <-time.After(waitLong):
		}
		c.t.Fatalf("child %d ended without the expected output (%v); stderr:\n%s", c.pid, c.werr, c.stderr.String())
	case <-time.After(waitLong):
		c.t.Fatalf("child %d printed nothing for %v; stderr:\n%s", c.pid, waitLong, c.stderr.String())
	}
	return ""
}

// report returns the child's next report.
func (c *child) report() childReport {
	c.t.Helper()
	l := c.line()
	var rep childReport
	require.NoError(c.t, json.Unmarshal([]byte(l), &rep), "child line %q", l)
	return rep
}

// wait waits for the child to end and returns how it ended.
func (c *child) wait() error {
	c.t.Helper()
	select {
	case <-c.done:
		return c.werr
	case <-time.After(waitLong):
		c.t.Fatalf("child %d still running after %v; stderr:\n%s", c.pid, waitLong, c.stderr.String())
	}
	return nil
}

// kill SIGKILLs the child by pid and waits until it is gone (its files,
// and so its OFD locks, are closed before the parent can reap it).
func (c *child) kill() {
	c.t.Helper()
	require.NoError(c.t, unix.Kill(c.pid, unix.SIGKILL))
	err := c.wait()
	require.Error(c.t, err, "child %d should have died of SIGKILL", c.pid)
}

// testBinary returns the path of this test binary.
func testBinary(t testing.TB) string {
	t.Helper()
	bin := os.Args[0]
	if !filepath.IsAbs(bin) {
		p, err := os.Executable()
		require.NoError(t, err)
		bin = p
	}
	return bin
}

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
