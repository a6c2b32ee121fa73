//go:build linux && (amd64 || arm64)

package shmstore_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
)

// Multi-process benchmarks re-execute the test binary with a role in
// benchRoleEnv. The dispatch is an init func (not TestMain, which the
// multi-process tests own with SHMSTORE_TEST_ROLE): a worker runs its role
// and exits before the testing package starts.
//
// Protocol: the worker opens the store, warms up (leases its slot),
// prints "ready", waits for a line on stdin, runs its operation for the
// duration, and prints one JSON benchResult.
const (
	benchRoleEnv     = "SHMSTORE_BENCH_ROLE"
	benchDirEnv      = "SHMSTORE_BENCH_DIR"
	benchStoreEnv    = "SHMSTORE_BENCH_STORE"
	benchWorkerEnv   = "SHMSTORE_BENCH_WORKER"
	benchDurationEnv = "SHMSTORE_BENCH_DURATION"
	// benchProfileEnv, set by whoever runs the benchmarks, makes each
	// worker write a CPU profile to $SHMSTORE_BENCH_CPUPROFILE.<role>.<n>.<worker>
	// (n: workers in the run).
	benchProfileEnv = "SHMSTORE_BENCH_CPUPROFILE"
	benchNEnv       = "SHMSTORE_BENCH_N"
)

func init() {
	role := os.Getenv(benchRoleEnv)
	if role == "" {
		return
	}
	if err := benchWorker(role); err != nil {
		fmt.Fprintf(os.Stderr, "bench worker %s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// benchResult is what a worker reports: committed operations, the time
// they took, and its slots' commit and abort counts over the run.
type benchResult struct {
	Ops     int64 `json:"ops"`
	NS      int64 `json:"ns"`
	Commits int64 `json:"commits"`
	Aborts  int64 `json:"aborts"`
}

func (r benchResult) rate() float64 { return float64(r.Ops) / (float64(r.NS) / 1e9) }

// benchWorkerKeys is how many keys of its own a "set" worker cycles through.
const benchWorkerKeys = 1000

func benchWorkerKey(w, i int) string { return fmt.Sprintf("w%d-%04d", w, i) }

// benchRoles are the operations a worker runs; each returns the function
// doing one operation.
var benchRoles = map[string]func(st *shmstore.Store, w int) (func(i int) error, error){
	// "set": st.Set of its own (existing) keys of the Dict "d".
	"set": func(st *shmstore.Store, w int) (func(int) error, error) {
		paths := make([]string, benchWorkerKeys)
		for i := range paths {
			paths[i] = "d/" + benchWorkerKey(w, i)
		}
		return func(i int) error { return st.Set(paths[i%benchWorkerKeys], i) }, nil
	},
	// "txinc": read-modify-write of the hot Int in a transaction.
	"txinc": func(st *shmstore.Store, _ int) (func(int) error, error) {
		return func(int) error {
			return st.Update(func(tx *shmstore.Tx) error {
				r := tx.Root()
				v, err := r.GetInt("hot")
				if err != nil {
					return err
				}
				return r.Set("hot", v+1)
			})
		}, nil
	},
	// "ctradd": Counter.Add(1) on the hot Counter in a transaction.
	"ctradd": func(st *shmstore.Store, _ int) (func(int) error, error) {
		return func(int) error {
			return st.Update(func(tx *shmstore.Tx) error {
				c, err := tx.Root().Counter("hotc")
				if err != nil {
					return err
				}
				return c.AddBlind(1)
			})
		}, nil
	},
}

// benchOwnSlots sums the commit and abort counts of the slots this process
// owns.
func benchOwnSlots(st *shmstore.Store) (commits, aborts int64) {
	pid := uint32(os.Getpid())
	for _, s := range layers.Of(st).Engine.Slots() {
		if s.PID == pid {
			commits += int64(s.Commits)
			aborts += int64(s.Aborts)
		}
	}
	return commits, aborts
}

func benchWorker(role string) error {
	mk, ok := benchRoles[role]
	if !ok {
		return fmt.Errorf("unknown role")
	}
	w, err := strconv.Atoi(os.Getenv(benchWorkerEnv))
	if err != nil {
		return err
	}
	dur, err := time.ParseDuration(os.Getenv(benchDurationEnv))
	if err != nil {
		return err
	}
	st, err := shmstore.Open(os.Getenv(benchStoreEnv), shmstore.Options{Dir: os.Getenv(benchDirEnv), Create: shmstore.MustExist})
	if err != nil {
		return err
	}
	defer st.Close()
	op, err := mk(st, w)
	if err != nil {
		return err
	}
	// Warm up without changing anything: lease the slot, fault the pages in.
	if err := st.View(func(tx *shmstore.Tx) error { _, err := tx.Root().Len(); return err }); err != nil {
		return err
	}
	if prefix := os.Getenv(benchProfileEnv); prefix != "" {
		f, err := os.Create(fmt.Sprintf("%s.%s.%s.%d", prefix, role, os.Getenv(benchNEnv), w))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	c0, a0 := benchOwnSlots(st)
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fmt.Errorf("waiting for go: %w", err)
	}
	var n int64
	start := time.Now()
	deadline := start.Add(dur)
	for {
		if err := op(int(n)); err != nil {
			return err
		}
		n++
		if n%32 == 0 && time.Now().After(deadline) {
			break
		}
	}
	ns := time.Since(start).Nanoseconds()
	c1, a1 := benchOwnSlots(st)
	return json.NewEncoder(os.Stdout).Encode(benchResult{Ops: n, NS: ns, Commits: c1 - c0, Aborts: a1 - a0})
}

// benchRunWorkers starts n workers of role on store name in dir, starts them
// together once all are ready, and returns their results. Only the
// processes started here are ever killed (on failure).
func benchRunWorkers(b *testing.B, role, dir, name string, n int, dur time.Duration) []benchResult {
	b.Helper()
	type benchProc struct {
		cmd    *exec.Cmd
		stdin  io.WriteCloser
		out    *bufio.Reader
		stderr bytes.Buffer
	}
	procs := make([]*benchProc, n)
	kill := func() {
		for _, p := range procs {
			if p != nil && p.cmd.Process != nil && p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Kill()
				_ = p.cmd.Wait()
			}
		}
	}
	defer kill()
	fail := func(i int, err error) {
		kill()
		b.Fatalf("worker %d (%s): %v\nstderr:\n%s", i, role, err, procs[i].stderr.String())
	}
	env := make([]string, 0, len(os.Environ())+5)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SHMSTORE_TEST_ROLE=") && (!strings.HasPrefix(kv, "SHMSTORE_BENCH_") || strings.HasPrefix(kv, benchProfileEnv+"=")) {
			env = append(env, kv)
		}
	}
	for i := range procs {
		p := &benchProc{cmd: exec.Command(os.Args[0])}
		procs[i] = p
		p.cmd.Env = append(env[:len(env):len(env)], benchRoleEnv+"="+role, benchDirEnv+"="+dir, benchStoreEnv+"="+name,
			benchWorkerEnv+"="+strconv.Itoa(i), benchDurationEnv+"="+dur.String(), benchNEnv+"="+strconv.Itoa(n))
		p.cmd.Stderr = &p.stderr
		var err error
		if p.stdin, err = p.cmd.StdinPipe(); err != nil {
			fail(i, err)
		}
		stdout, err := p.cmd.StdoutPipe()
		if err != nil {
			fail(i, err)
		}
		p.out = bufio.NewReader(stdout)
		if err := p.cmd.Start(); err != nil {
			fail(i, err)
		}
	}
	for i, p := range procs {
		line, err := p.out.ReadString('\n')
		if err != nil || line != "ready\n" {
			fail(i, fmt.Errorf("not ready: %q %v", line, err))
		}
	}
	for i, p := range procs {
		if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
			fail(i, err)
		}
	}
	res := make([]benchResult, n)
	for i, p := range procs {
		line, err := p.out.ReadBytes('\n')
		if err == nil {
			err = json.Unmarshal(line, &res[i])
		}
		if err != nil {
			_ = p.cmd.Wait()
			fail(i, fmt.Errorf("result: %q: %v", line, err))
		}
	}
	for i, p := range procs {
		if err := p.cmd.Wait(); err != nil {
			fail(i, err)
		}
	}
	return res
}

// benchSum adds up workers' throughput (each over its own run time),
// operations, commits and aborts.
func benchSum(rs []benchResult) (opsPerSec float64, total benchResult) {
	for _, r := range rs {
		opsPerSec += r.rate()
		total.Ops += r.Ops
		total.Commits += r.Commits
		total.Aborts += r.Aborts
	}
	return opsPerSec, total
}
