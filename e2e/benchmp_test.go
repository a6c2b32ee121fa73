//go:build linux && (amd64 || arm64)

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
	"github.com/shmstore/shmstore/internal/proctest"
	"github.com/shmstore/shmstore/shm/shmtest"
)

// Multi-process benchmarks: the workers are the test binary re-executed
// (internal/proctest) in a role "bench-" plus a key of benchRoles.
//
// Protocol: the worker opens the store, warms up (leases its slot),
// prints "ready", waits for a line on stdin, runs its operation for the
// duration, and prints one JSON benchResult.
//
// Run them with a time -benchtime, never "Nx": each iteration is a whole
// measurement of a second or more (the default 1s gives one each):
//
//	go test -run '^$' -bench . -benchmem -benchtime 1s ./e2e/
//
// Set SHMSTORE_BENCH_CPUPROFILE=prefix to profile the worker processes.
const (
	benchRolePrefix  = "bench-"
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
	for role := range benchRoles {
		proctest.Register(benchRolePrefix+role, func() int {
			if err := benchWorker(role); err != nil {
				return proctest.Fail(err)
			}
			return 0
		})
	}
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
		return func(i int) error { return st.SetInt(paths[i%benchWorkerKeys], int64(i)) }, nil
	},
	// "setown": as "set", of the same keys in a Dict of its own, "d<w>":
	// two such workers share no stripe of a Dict, only the clock.
	"setown": func(st *shmstore.Store, w int) (func(int) error, error) {
		paths := make([]string, benchWorkerKeys)
		for i := range paths {
			paths[i] = fmt.Sprintf("d%d/%s", w, benchWorkerKey(w, i))
		}
		return func(i int) error { return st.SetInt(paths[i%benchWorkerKeys], int64(i)) }, nil
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
	procs := make([]*proctest.Proc, n)
	for i := range procs {
		procs[i] = proctest.Start(b, benchRolePrefix+role, proctest.Options{
			Name: fmt.Sprintf("worker %d (%s)", i, role),
			Env: []string{benchDirEnv + "=" + dir, benchStoreEnv + "=" + name,
				benchWorkerEnv + "=" + strconv.Itoa(i), benchDurationEnv + "=" + dur.String(), benchNEnv + "=" + strconv.Itoa(n)},
		})
	}
	for _, p := range procs {
		if line := p.Line(); line != "ready" {
			b.Fatalf("%s: not ready: %q\nstderr:\n%s", p.Name(), line, p.Stderr())
		}
	}
	for _, p := range procs {
		if _, err := io.WriteString(p.Stdin(), "go\n"); err != nil {
			b.Fatalf("%s: %v\nstderr:\n%s", p.Name(), err, p.Stderr())
		}
	}
	res := make([]benchResult, n)
	for i, p := range procs {
		p.Result(&res[i])
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

var benchOpts = shmstore.Options{RegionSize: 64 << 20, MaxSize: 1 << 30}

func openBench(b *testing.B, dir, name string) *shmstore.Store {
	b.Helper()
	o := benchOpts
	o.Dir = dir
	st, err := shmstore.Open(name, o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	return st
}

// benchPhase is how long each multi-process phase runs.
const benchPhase = time.Second

// BenchmarkScaling: worker processes st.SetInt their own keys (1000 each,
// disjoint) of one Dict "d": one process for a phase, then two, then
// four. Reports each phase's total ops/s and the ratios to one process.
// Target: x-scaling (2 processes over 1) >= 1.7. On a 2-core machine four
// processes share two cores: x-scaling-4 shows what oversubscription
// costs, not more parallelism. x-scaling-own is two processes again, each
// on the same keys in a Dict of its own ("setown"): its gap to x-scaling
// is what sharing one Dict costs (an overwrite locks its entry and only
// reads the stripe's lock word, so what remains is read traffic and the
// lines two neighbouring entries share; it was the stripes' lock words).
func BenchmarkScaling(b *testing.B) {
	dir := shmtest.Dir(b)
	st := openBench(b, dir, "scale")
	err := st.Update(func(tx *shmstore.Tx) error {
		d, err := tx.Root().Dict("d")
		if err != nil {
			return err
		}
		for w := range 4 {
			own, err := tx.Root().Dict(fmt.Sprintf("d%d", w))
			if err != nil {
				return err
			}
			for i := range benchWorkerKeys {
				if err := d.Set(benchWorkerKey(w, i), 0); err != nil {
					return err
				}
				if err := own.Set(benchWorkerKey(w, i), 0); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	var one, two, four, twoOwn, aborts2 float64
	rounds := 0
	for b.Loop() {
		r1, _ := benchSum(benchRunWorkers(b, "set", dir, "scale", 1, benchPhase))
		r2, t2 := benchSum(benchRunWorkers(b, "set", dir, "scale", 2, benchPhase))
		r4, _ := benchSum(benchRunWorkers(b, "set", dir, "scale", 4, benchPhase))
		r2own, _ := benchSum(benchRunWorkers(b, "setown", dir, "scale", 2, benchPhase))
		one += r1
		two += r2
		four += r4
		twoOwn += r2own
		aborts2 += float64(t2.Aborts) / float64(t2.Ops)
		rounds++
	}
	n := float64(rounds)
	b.ReportMetric(one/n, "ops/s-1proc")
	b.ReportMetric(two/n, "ops/s-2proc")
	b.ReportMetric(four/n, "ops/s-4proc")
	b.ReportMetric(aborts2/n, "aborts/op-2proc")
	b.ReportMetric(two/one, "x-scaling")
	b.ReportMetric(four/one, "x-scaling-4")
	b.ReportMetric(twoOwn/one, "x-scaling-own")
}

// BenchmarkHotValue: two processes increment one value: by a transaction
// that reads and writes an Int ("tx"), then by Counter.Add ("ctr").
// Reports ops/s and aborts per committed increment (from the workers'
// slot counters), and checks that no increment was lost. Counter.Add must
// never abort.
func BenchmarkHotValue(b *testing.B) {
	dir := shmtest.Dir(b)
	st := openBench(b, dir, "hot")
	err := st.Update(func(tx *shmstore.Tx) error {
		if err := tx.Root().Set("hot", 0); err != nil {
			return err
		}
		_, err := tx.Root().Counter("hotc")
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	var txOps, ctrOps, txSum, ctrSum int64
	var txRate, ctrRate, txAborts, ctrAborts float64
	rounds := 0
	for b.Loop() {
		r, t := benchSum(benchRunWorkers(b, "txinc", dir, "hot", 2, benchPhase))
		txRate += r
		txAborts += float64(t.Aborts) / float64(t.Ops)
		txSum += t.Ops
		r, t = benchSum(benchRunWorkers(b, "ctradd", dir, "hot", 2, benchPhase))
		ctrRate += r
		ctrAborts += float64(t.Aborts) / float64(t.Ops)
		ctrSum += t.Ops
		if t.Aborts != 0 {
			b.Errorf("Counter.Add aborted %d times in %d adds", t.Aborts, t.Ops)
		}
		rounds++
	}
	err = st.View(func(tx *shmstore.Tx) error {
		var err error
		if txOps, err = tx.Root().GetInt("hot"); err != nil {
			return err
		}
		c, err := tx.Root().Counter("hotc")
		if err != nil {
			return err
		}
		ctrOps, err = c.Get()
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	if txOps != txSum || ctrOps != ctrSum {
		b.Fatalf("lost increments: Int %d of %d, Counter %d of %d", txOps, txSum, ctrOps, ctrSum)
	}
	n := float64(rounds)
	b.ReportMetric(txRate/n, "tx-ops/s")
	b.ReportMetric(txAborts/n, "tx-aborts/op")
	b.ReportMetric(ctrRate/n, "ctr-ops/s")
	b.ReportMetric(ctrAborts/n, "ctr-aborts/op")
}
