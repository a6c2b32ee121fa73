//go:build linux

// Package proctest is the one harness of shmstore's multi-process tests.
// A test binary re-executes itself with a role named in the environment
// (RoleEnv); the re-executed binary, a worker, runs that role instead of
// the tests and exits.
//
// It owns the life of the workers a test starts, and nothing else:
//   - the roles a worker may run (Register), the dispatch to one from
//     TestMain (Main), and what a role uses to report (Emit, Fail);
//   - starting a worker (Start): this test binary (or Options.Binary) run
//     with -test.run=^$, the role and extra environment, stdin a pipe,
//     stdout and stderr captured;
//   - reading what it prints (Line, DecodeLine, Result, Stdout, Stderr),
//     waiting for it (Wait, WaitTimeout, Done), signalling and killing it
//     (Signal, Kill) and telling how it ended (Exited, Killed, KilledBy);
//   - ending it: when the test that started it ends, however it ends, a
//     worker still running is SIGKILLed and reaped (t.Cleanup); and the
//     kernel SIGKILLs it if the test process dies first, on a panic or
//     -test.timeout (Pdeathsig; strictly, when the OS thread that started
//     it exits, which a Go program's threads do only with the process or
//     under a goroutine that ends locked to its thread), so that no
//     worker outlives its test.
//
// It must never signal a process it did not start. Every signal goes to a
// worker's own pid through the os.Process that started it, which on Linux
// holds a pidfd: once the worker is reaped the signal fails
// (os.ErrProcessDone) instead of reaching whatever reused the pid. It never
// signals by name, process group or -1. It knows nothing of stores: a test
// makes and removes its stores itself (shm/shmtest.Dir).
//
// It is test-support code: import it only from _test.go files. Methods
// that fail the test (Line, DecodeLine, Result) must be called from the
// goroutine of the test that started the worker.
package proctest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RoleEnv is the environment variable that names a worker's role. It is
// set only in the workers Start starts.
const RoleEnv = "SHMSTORE_TEST_ROLE"

// DefaultTimeout is how long Line waits for a line when Options.Timeout
// is 0. It turns a hang into a failure; it is no speed bound.
const DefaultTimeout = time.Minute

// roles are the registered roles, by name.
var roles = map[string]func() int{}

// Register makes run the role called name: a worker started with that
// role runs it and exits with the status it returns (0 for success; see
// Fail). Call it from an init func or a package-level var of a _test.go
// file, so that every role of the test binary, whichever of its packages
// (internal or _test) defines it, is known before TestMain runs. It panics
// on an empty or duplicate name.
func Register(name string, run func() int) {
	if name == "" || roles[name] != nil {
		panic(fmt.Sprintf("proctest: role %q registered twice (or empty)", name))
	}
	roles[name] = run
}

// Main is what TestMain calls in a package with multi-process tests. In a
// worker (RoleEnv set) it runs the registered role of that name and exits
// with its status (2 for a role not registered); otherwise it runs the
// tests and exits with their status. It does not return.
func Main(m *testing.M) {
	if role := Role(); role != "" {
		run, ok := roles[role]
		if !ok {
			Fail(errors.New("no such role registered"))
			os.Exit(2)
		}
		os.Exit(run())
	}
	os.Exit(m.Run())
}

// Role is the role this process runs as a worker, "" in a test process.
func Role() string { return os.Getenv(RoleEnv) }

// Fail reports a role's error on stderr, naming the role and this pid, and
// returns 1, the status of a failed role: `return proctest.Fail(err)`.
func Fail(err error) int {
	fmt.Fprintf(os.Stderr, "%s (pid %d): %v\n", Role(), os.Getpid(), err)
	return 1
}

// Emit writes v to stdout as one line of JSON: what the test reads with
// DecodeLine or Result.
func Emit(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(b, '\n'))
	return err
}

// Options are the particulars of a worker; the zero value runs this test
// binary in the test's directory with the test's environment.
type Options struct {
	// Env is added to the test's environment ("KEY=value"); a key given
	// here overrides the inherited one.
	Env []string
	// Name is how failure messages call the worker; "" is the role.
	Name string
	// Binary is the executable to run; "" is this test binary
	// (Executable). It must dispatch to roles with Main.
	Binary string
	// Dir is the worker's working directory; "" is the test's.
	Dir string
	// Credential, if not nil, runs the worker as another user (the test
	// must run as root).
	Credential *syscall.Credential
	// ExtraFiles become the worker's file descriptors 3 and up, as in
	// exec.Cmd. The test closes its own copies once Start returns.
	ExtraFiles []*os.File
	// Timeout bounds how long Line waits for a line; 0 is DefaultTimeout.
	Timeout time.Duration
}

// Proc is a worker a test started. Its methods may be called from any
// goroutine, except those that fail the test (see the package comment).
type Proc struct {
	t       testing.TB
	name    string
	timeout time.Duration
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stdout  output
	stderr  output
	done    chan struct{} // closed once the worker is reaped and its output copied
	err     error         // cmd.Wait's, once done is closed
}

// Executable is the absolute path of this test binary.
func Executable(t testing.TB) string {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatalf("proctest: the test binary: %v", err)
	}
	return bin
}

// Start starts a worker running role and returns at once. Its stdin is a
// pipe (Stdin), its stdout and stderr are captured. When t ends, the
// worker is SIGKILLed if it still runs, reaped, and its stdin closed;
// Start fails the test if the worker cannot be started.
func Start(t testing.TB, role string, o Options) *Proc {
	t.Helper()
	bin := o.Binary
	if bin == "" {
		bin = Executable(t)
	}
	p := &Proc{t: t, name: o.Name, timeout: o.Timeout, done: make(chan struct{})}
	if p.name == "" {
		p.name = role
	}
	if p.timeout <= 0 {
		p.timeout = DefaultTimeout
	}
	p.stdout.more = make(chan struct{})
	p.stderr.more = make(chan struct{})
	p.cmd = exec.Command(bin, "-test.run=^$")
	// exec.Cmd keeps the last value of a key: the role and o.Env win.
	p.cmd.Env = append(append(os.Environ(), RoleEnv+"="+role), o.Env...)
	p.cmd.Dir = o.Dir
	p.cmd.ExtraFiles = o.ExtraFiles
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.Credential, Pdeathsig: syscall.SIGKILL}
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatalf("proctest: %s: stdin: %v", p.name, err)
	}
	if err := p.cmd.Start(); err != nil {
		_ = p.stdin.Close()
		t.Fatalf("proctest: start %s: %v", p.name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.Exited() {
			_ = p.Signal(syscall.SIGKILL)
			<-p.done
		}
		_ = p.stdin.Close()
	})
	return p
}

// Pid is the worker's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Name is how messages call the worker (Options.Name, or its role).
func (p *Proc) Name() string { return p.name }

// Stdin is the write end of the worker's stdin. Closing it gives the
// worker EOF; the test's cleanup closes it in any case.
func (p *Proc) Stdin() io.WriteCloser { return p.stdin }

// Stdout is what the worker printed on stdout so far.
func (p *Proc) Stdout() string { return p.stdout.String() }

// Stderr is what the worker printed on stderr so far (all of it once it
// exited).
func (p *Proc) Stderr() string { return p.stderr.String() }

// Line returns the next line the worker prints on stdout, without its
// newline. It fails the test if the worker exits without printing one, or
// prints none within Options.Timeout.
func (p *Proc) Line() string {
	p.t.Helper()
	timer := time.NewTimer(p.timeout)
	defer timer.Stop()
	for {
		l, ok, more := p.stdout.line()
		if ok {
			return l
		}
		select {
		case <-more:
		case <-p.done: // the output is all copied: one last look
			if l, ok, _ := p.stdout.line(); ok {
				return l
			}
			p.t.Fatalf("%s (pid %d) exited (%v) without the line expected; stderr:\n%s", p.name, p.Pid(), p.err, p.Stderr())
			return ""
		case <-timer.C:
			p.t.Fatalf("%s (pid %d) printed no line for %v; stderr:\n%s", p.name, p.Pid(), p.timeout, p.Stderr())
			return ""
		}
	}
}

// DecodeLine reads the next line (Line) and decodes it as JSON into out,
// failing the test if it is not JSON of out's type.
func (p *Proc) DecodeLine(out any) {
	p.t.Helper()
	l := p.Line()
	if err := json.Unmarshal([]byte(l), out); err != nil {
		p.t.Fatalf("%s (pid %d) printed %q: %v; stderr:\n%s", p.name, p.Pid(), l, err, p.Stderr())
	}
}

// Result waits for the worker to exit, fails the test unless it exited
// with status 0, and decodes the last line it printed on stdout (see
// Emit) as JSON into out.
func (p *Proc) Result(out any) {
	p.t.Helper()
	if err := p.Wait(); err != nil {
		p.t.Fatalf("%s (pid %d) failed: %v; stderr:\n%s", p.name, p.Pid(), err, p.Stderr())
	}
	s := p.Stdout()
	last := bytes.TrimSpace([]byte(s))
	if i := bytes.LastIndexByte(last, '\n'); i >= 0 {
		last = last[i+1:]
	}
	if err := json.Unmarshal(last, out); err != nil {
		p.t.Fatalf("%s (pid %d) said: %s\n(%v); stderr:\n%s", p.name, p.Pid(), s, err, p.Stderr())
	}
}

// Done is closed once the worker has exited and been reaped.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited reports whether the worker has exited (and been reaped).
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits for the worker to exit and returns how it ended, as
// exec.Cmd.Wait does (nil for status 0). It may be called any number of
// times, from any goroutine.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// WaitTimeout waits at most d for the worker to exit. It reports whether
// it exited and, if it did, how (as Wait).
func (p *Proc) WaitTimeout(d time.Duration) (exited bool, err error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.done:
		return true, p.err
	case <-timer.C:
		return false, nil
	}
}

// Signal sends sig to the worker (SIGSTOP and SIGCONT, say). Once the
// worker has been reaped it fails with os.ErrProcessDone and reaches no
// other process.
func (p *Proc) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill SIGKILLs the worker and waits until it is reaped (its files, and
// so its locks, are closed by then). It reports whether the SIGKILL ended
// it: a worker that had already exited on its own keeps its status and
// Kill returns false.
func (p *Proc) Kill() (killed bool, err error) {
	if err := p.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return false, fmt.Errorf("proctest: kill %s (pid %d): %w", p.name, p.Pid(), err)
	}
	_ = p.Wait()
	return p.Killed(), nil
}

// Killed reports whether the worker has exited because of a SIGKILL.
func (p *Proc) Killed() bool { return p.Exited() && KilledBy(p.err, syscall.SIGKILL) }

// KilledBy reports whether err, from Wait, says that the process died of
// signal sig.
func KilledBy(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// output collects what a worker prints on one stream; Line reads it line
// by line as it comes.
type output struct {
	mu   sync.Mutex
	buf  []byte
	next int           // where the next line starts
	more chan struct{} // closed (and replaced) by every Write
}

// Write appends b (exec.Cmd's copier calls it).
func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = append(o.buf, b...)
	close(o.more)
	o.more = make(chan struct{})
	return len(b), nil
}

// String is everything written so far.
func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return string(o.buf)
}

// line takes the next whole line if there is one; if not, it returns a
// channel that is closed when more arrives.
func (o *output) line() (l string, ok bool, more <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if i := bytes.IndexByte(o.buf[o.next:], '\n'); i >= 0 {
		l = string(o.buf[o.next : o.next+i])
		o.next += i + 1
		return l, true, nil
	}
	return "", false, o.more
}
