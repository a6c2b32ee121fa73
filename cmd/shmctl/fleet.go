//go:build linux && (amd64 || arm64)

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
)

// fleetFlags are the flags of the commands that run worker processes
// (bank, bench): how many, for how long, with which seed. Each command
// sets its own defaults before addFleetFlags.
type fleetFlags struct {
	procs    int
	duration time.Duration
	seed     uint64
}

// addFleetFlags registers --procs, --duration and --seed.
func (o *fleetFlags) addFleetFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.procs, "procs", o.procs, "`N` worker processes; with this one, each takes an entry of the store's process table (create --max-procs)")
	fs.DurationVar(&o.duration, "duration", o.duration, "how long the workers run (`DURATION`: 500ms, 5s, 1m)")
	fs.Uint64Var(&o.seed, "seed", o.seed, "random `SEED` (0: from the clock; printed)")
}

// validateFleet checks --procs and --duration.
func (o *fleetFlags) validateFleet() error {
	switch {
	case o.procs < 1 || o.procs > 1000:
		return fmt.Errorf("procs %d: want 1 to 1000", o.procs)
	case o.duration <= 0 || o.duration > 24*time.Hour:
		return fmt.Errorf("duration %v: want more than 0 and at most 24h", o.duration)
	}
	return nil
}

// fitProcTable refuses, before any worker starts, more workers than the
// process table of store name (opened by st) has room for: each takes an
// entry, besides the one this process (command) holds and those of other
// attached processes. Beyond the table's size it is a usage error; not
// fitting for the others now is a runtime one.
func (o *fleetFlags) fitProcTable(st *shmstore.Store, name, command string) error {
	s := layers.Of(st).Shm
	table := s.NumProcs()
	const bigger = "make a store with a larger table (shmctl create --max-procs N)"
	if o.procs > table-1 {
		return usagef("--procs %d: store %q has a process table of %d entries and %s takes one, so at most %d workers fit; %s",
			o.procs, name, table, command, table-1, bigger)
	}
	taken := len(s.Procs()) // this process's entry, the others' and any dead one's
	if free := table - taken; o.procs > free {
		return fmt.Errorf("--procs %d: only %d of the %d entries of store %q's process table are free (%s and %d other processes hold the rest); run fewer workers or %s",
			o.procs, free, table, name, command, taken-1, bigger)
	}
	return nil
}

// pickSeed replaces a seed of 0 with one from the clock.
func (o *fleetFlags) pickSeed() {
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
}

// workerArgs are the flags every worker command takes: the store
// directory, the worker's id, --duration and --seed.
func (o *fleetFlags) workerArgs(g *globalOptions, id int) []string {
	return []string{"--dir", g.baseDir(), "--worker", strconv.Itoa(id),
		"--duration", o.duration.String(), "--seed", strconv.FormatUint(o.seed, 10)}
}

// fleetTimeout is how long workers of --duration may run before the
// fleet kills them: well past their duration.
func (o *fleetFlags) fleetTimeout() time.Duration { return 2*o.duration + 30*time.Second }

// waitAtGate is a worker's side of the fleet's gate (--gate): it says
// "ready" on w (standard output) and waits until standard input closes,
// which the fleet does once every worker is ready.
func waitAtGate(w io.Writer) {
	fmt.Fprintln(w, "ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
}

// fleetSpec says which worker processes a fleet runs.
type fleetSpec struct {
	// procs is the number of workers; their ids run from 1 to procs.
	procs int
	// command is the hidden command of this program that a worker runs.
	// It must take --gate: set up, print "ready", then wait for standard
	// input to close before working, and print its result (JSON) on
	// standard output at the end.
	command string
	// args are the flags and arguments of worker id, after the command
	// (and the --gate the fleet puts first).
	args func(id int) []string
	// env, if not nil, is added to this process's environment for every
	// worker.
	env []string
	// timeout is how long after the fleet started a worker may still be
	// running: then every worker left is killed.
	timeout time.Duration
}

// fleet runs worker processes: this program re-executed with a hidden
// worker command, one process per worker (a restart replaces it). Every
// worker says "ready" and waits at a gate (its standard input) until
// openGate, so that they all start working together. Cancelling the
// fleet's context sends every worker SIGTERM (bank's workers then stop
// between transactions and report; bench's die of it); the timeout kills
// them (SIGKILL). The fleet signals and waits for only the processes it
// started, and each of them dies with this program's thread that started
// it (Pdeathsig), so no worker outlives it.
//
// Goroutines: each process has one watch goroutine, the only reader of
// its standard output and the only caller of its Wait; it sends the
// "ready" line's verdict on the process's ready channel, closes the
// process's done channel once it waited, and then releases the process's
// hold on the fleet (see running). The timer (timeout) and
// context.AfterFunc (cancellation) run their callbacks in goroutines of
// their own; both take mu.
type fleet struct {
	spec fleetSpec
	exe  string

	// mu guards what follows. It is held while processes are started or
	// signalled, so that a stop (cancellation, timeout) never misses a
	// process that a start or restart adds.
	mu sync.Mutex
	// procs holds the current process of worker id at id-1.
	procs []*fleetProc
	// running counts holds on done: one per process not yet waited for,
	// plus one while startFleet or restart is at work. The release that
	// takes it to 0 closes done; nothing holds again after that.
	running int
	// gateOpen: openGate was called; a restarted worker goes at once.
	gateOpen bool
	// interrupted: the context ended while workers ran, and they were
	// sent SIGTERM.
	interrupted bool
	// timedOut: the timeout passed while workers ran, and they were
	// killed.
	timedOut bool
	// done is closed by the last release, once every process ended and
	// was waited for.
	done chan struct{}
	// timer kills the workers at the timeout; stopped when done closes.
	timer *time.Timer
	// stopAfterFunc unhooks the stop on cancellation when done closes.
	stopAfterFunc func() bool
}

// fleetProc is one process of a worker.
type fleetProc struct {
	id   int
	cmd  *exec.Cmd
	gate io.WriteCloser // the worker's standard input: closing it opens its gate
	out  *bufio.Reader  // its standard output, read by watch only
	// ready gets, once, from watch: nil when the worker said "ready",
	// else why it did not. Buffered, so watch never blocks on it.
	ready chan error
	// done is closed by watch once the output is read (into stdout) and
	// the process waited for; the fields below are read after it.
	done     chan struct{}
	readyErr error        // what was sent on ready
	stdout   bytes.Buffer // the output after the "ready" line: the result
	stderr   bytes.Buffer // written by exec's copying goroutine, complete once Wait returned
	waitErr  error        // from Wait
	// replaced: restart killed this process on purpose and started
	// another in its place (guarded by fleet.mu).
	replaced bool
}

// startFleet starts spec.procs workers and returns once each said it
// is ready, waiting at the gate: the caller then calls openGate. If a
// worker cannot be started or fails before it is ready, or ctx ended
// before the start, startFleet kills the workers it started, waits for
// them and returns why (with a failed worker's stderr).
func startFleet(ctx context.Context, spec fleetSpec) (*fleet, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find this program to start workers: %w", err)
	}
	// The starter's hold (running: 1) keeps done open while workers start.
	f := &fleet{spec: spec, exe: exe, procs: make([]*fleetProc, 0, spec.procs), running: 1, done: make(chan struct{})}
	// Both are set before any watch goroutine starts (which may release).
	f.timer = time.AfterFunc(spec.timeout, func() { f.stop(&f.timedOut, syscall.SIGKILL) })
	f.stopAfterFunc = context.AfterFunc(ctx, func() { f.stop(&f.interrupted, syscall.SIGTERM) })

	var startErr error
	f.mu.Lock()
	if ctx.Err() != nil {
		startErr = errors.New("interrupted before the workers started")
	}
	for id := 1; id <= spec.procs && startErr == nil; id++ {
		p, err := f.startProc(id)
		if err != nil {
			startErr = fmt.Errorf("start worker %d: %w", id, err)
			break
		}
		f.procs = append(f.procs, p)
	}
	procs := f.procs
	f.mu.Unlock()

	var failed []*fleetProc
	if startErr == nil {
		for _, p := range procs {
			if err := <-p.ready; err != nil {
				failed = append(failed, p)
			}
		}
	}
	if startErr == nil && len(failed) == 0 {
		f.release()
		return f, nil
	}
	// Kill every worker (those still at the gate too) and wait for them.
	f.stop(nil, syscall.SIGKILL)
	f.release()
	<-f.done
	errs := []error{startErr}
	for _, p := range failed {
		errs = append(errs, f.outcome(p))
	}
	return nil, errors.Join(errs...)
}

// startProc starts worker id's process and its watch goroutine, with a
// hold for it. f.mu is held.
func (f *fleet) startProc(id int) (*fleetProc, error) {
	p := &fleetProc{id: id, ready: make(chan error, 1), done: make(chan struct{})}
	p.cmd = exec.Command(f.exe, append([]string{f.spec.command, "--gate"}, f.spec.args(id)...)...)
	if f.spec.env != nil {
		p.cmd.Env = append(os.Environ(), f.spec.env...)
	}
	p.cmd.Stderr = &p.stderr
	// A worker must not outlive this program: if it dies, so do they (a
	// store recovers them like any dead process).
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := p.cmd.StdoutPipe()
	if err == nil {
		p.gate, err = p.cmd.StdinPipe()
	}
	if err == nil {
		err = p.cmd.Start()
	}
	if err != nil {
		return nil, err
	}
	p.out = bufio.NewReader(stdout)
	f.running++ // released by watch
	go f.watch(p)
	return p, nil
}

// watch reads the worker's "ready" line (its verdict goes to p.ready),
// then the rest of its output, waits for the process, closes p.done and
// releases the process's hold. One goroutine per process.
func (f *fleet) watch(p *fleetProc) {
	line, err := p.out.ReadString('\n')
	switch {
	case errors.Is(err, io.EOF) && line == "":
		err = errors.New("it ended without saying it was ready")
	case err == nil && line != "ready\n":
		err = fmt.Errorf("it said %q, not ready", line)
	case err != nil:
		err = fmt.Errorf("it said %q, not ready: %w", line, err)
	}
	p.readyErr = err
	p.ready <- err
	_, _ = io.Copy(&p.stdout, p.out)
	p.waitErr = p.cmd.Wait()
	close(p.done)
	f.release()
}

// release drops a hold on done, and closes done with the last one.
func (f *fleet) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running--
	if f.running == 0 {
		f.timer.Stop()
		f.stopAfterFunc()
		close(f.done)
	}
}

// stop sends sig to every worker's current process and sets *why (if
// not nil), unless every worker ended already. Signal returns
// ErrProcessDone for a process that was waited for: its pid, perhaps
// another process's by now, is not signalled.
func (f *fleet) stop(why *bool, sig syscall.Signal) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running == 0 {
		return
	}
	if why != nil {
		*why = true
	}
	for _, p := range f.procs {
		_ = p.cmd.Process.Signal(sig)
	}
}

// openGate lets every worker go.
func (f *fleet) openGate() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gateOpen = true
	for _, p := range f.procs {
		_ = p.gate.Close()
	}
}

// pids are the process ids of the workers' current processes, by id.
func (f *fleet) pids() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	pids := make([]int, len(f.procs))
	for i, p := range f.procs {
		pids[i] = p.cmd.Process.Pid
	}
	return pids
}

// ended returns a channel closed once every worker's process ended.
func (f *fleet) ended() <-chan struct{} { return f.done }

// wasInterrupted reports whether the context ended while workers ran (and
// they were sent SIGTERM).
func (f *fleet) wasInterrupted() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.interrupted
}

// restart kills worker id's process (SIGKILL) and starts the worker anew,
// with the same arguments: the new process goes at once if the gate is
// open, else it waits there too. It returns the new pid once the process
// said it is ready. The killed process's result is dropped: a worker's
// result is its last process's. It fails once every worker ended, after
// cancellation or the timeout, and while id is being restarted.
func (f *fleet) restart(id int) (int, error) {
	f.mu.Lock()
	if id < 1 || id > len(f.procs) {
		f.mu.Unlock()
		return 0, fmt.Errorf("restart worker %d: there are workers 1 to %d", id, len(f.procs))
	}
	old := f.procs[id-1]
	if err := f.stopped(id); err != nil {
		f.mu.Unlock()
		return 0, err
	}
	if old.replaced {
		f.mu.Unlock()
		return 0, fmt.Errorf("restart worker %d: it is being restarted", id)
	}
	old.replaced = true
	f.running++ // this hold keeps done open between the old process's end and the new one's start
	f.mu.Unlock()
	defer f.release()

	_ = old.cmd.Process.Kill() // ours; ErrProcessDone if it already ended
	<-old.done

	f.mu.Lock()
	if err := f.stopped(id); err != nil {
		f.mu.Unlock()
		return 0, err
	}
	p, err := f.startProc(id)
	if err != nil {
		f.mu.Unlock()
		return 0, fmt.Errorf("restart worker %d: %w", id, err)
	}
	f.procs[id-1] = p
	if f.gateOpen {
		_ = p.gate.Close()
	}
	f.mu.Unlock()

	if err := <-p.ready; err != nil {
		_ = p.cmd.Process.Kill() // ours: it may still run, saying something else
		<-p.done
		return 0, f.outcome(p)
	}
	return p.cmd.Process.Pid, nil
}

// stopped says why worker id cannot be restarted now, or nil. f.mu is
// held.
func (f *fleet) stopped(id int) error {
	switch {
	case f.running == 0:
		return fmt.Errorf("restart worker %d: every worker ended", id)
	case f.interrupted:
		return fmt.Errorf("restart worker %d: interrupted", id)
	case f.timedOut:
		return fmt.Errorf("restart worker %d: the workers ran out of time", id)
	}
	return nil
}

// fleetResults waits for every worker to end and decodes each one's
// result (JSON) into a T, in the order of the ids. A worker that failed is
// left out, and its error joins the one returned, which names the worker
// and its pid and tells what it said on stderr.
func fleetResults[T any](f *fleet) ([]T, error) {
	<-f.done
	f.mu.Lock()
	procs := f.procs
	f.mu.Unlock()
	var rs []T
	var errs []error
	for _, p := range procs {
		if err := f.outcome(p); err != nil {
			errs = append(errs, err)
			continue
		}
		var r T
		if err := json.Unmarshal(p.stdout.Bytes(), &r); err != nil {
			errs = append(errs, fmt.Errorf("worker %d (pid %d): unreadable report %q: %w",
				p.id, p.cmd.Process.Pid, oneLine(p.stdout.String()), err))
			continue
		}
		rs = append(rs, r)
	}
	return rs, errors.Join(errs...)
}

// outcome is nil for a process that said ready and exited 0, else how it
// failed, in words: interrupted, killed at the timeout, or its own error
// line from stderr (else how it ended). p.done is closed.
func (f *fleet) outcome(p *fleetProc) error {
	pid := p.cmd.Process.Pid
	err := p.waitErr
	switch {
	case err == nil && p.readyErr == nil:
		return nil
	case err != nil && signaled(p.cmd.ProcessState, syscall.SIGINT, syscall.SIGTERM):
		// Ctrl-C reaches the workers directly too, perhaps before the
		// fleet's context ends.
		return fmt.Errorf("worker %d (pid %d) stopped: interrupted", p.id, pid)
	case err != nil && signaled(p.cmd.ProcessState, syscall.SIGKILL) && f.timedOutNow():
		return fmt.Errorf("worker %d (pid %d) did not finish in time and was killed", p.id, pid)
	}
	if msg := strings.TrimPrefix(oneLine(p.stderr.String()), "shmctl: "); msg != "" {
		return fmt.Errorf("worker %d (pid %d) failed: %s", p.id, pid, msg)
	}
	if err == nil {
		err = p.readyErr
	}
	return fmt.Errorf("worker %d (pid %d) failed: %w", p.id, pid, err)
}

// timedOutNow reports whether the timeout killed the workers.
func (f *fleet) timedOutNow() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.timedOut
}

// signaled reports whether a process ended by one of sigs.
func signaled(ps *os.ProcessState, sigs ...syscall.Signal) bool {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return false
	}
	for _, s := range sigs {
		if ws.Signal() == s {
			return true
		}
	}
	return false
}
