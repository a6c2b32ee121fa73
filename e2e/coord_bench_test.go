//go:build linux && (amd64 || arm64)

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
	"github.com/shmstore/shmstore/internal/proctest"
	"github.com/shmstore/shmstore/shm"
	"github.com/shmstore/shmstore/shm/shmtest"
)

// Benchmarks of coordination between processes, each beside its floor
// measured in the same run by the same two worker processes:
//
//   - BenchmarkQueuePingPong: a round trip through two Queues (A puts to
//     q1 and takes from q2, B takes from q1 and puts to q2), beside a raw
//     futex ping-pong on a shared word (parking at once, and after a
//     short spin), a spin ping-pong (no system calls: the physical floor)
//     and a unix-socket ping-pong (1-byte messages);
//   - BenchmarkQueueBatch: a producer putting batches of 1, 16 and 256
//     items per Update and a consumer taking batches, beside one process
//     doing the same transactions alone (no hand-off);
//   - BenchmarkRetryWake: the time from a writer's commit to a waiter's
//     function running again after Tx.Retry, p50 and p99, beside the same
//     wake through a raw futex.
//
// The workers are the test binary re-executed (internal/proctest) in the
// role "coord", on a side named by the environment. Each worker serves
// phases: it reads a coordCmd (one JSON line) on stdin, prepares, prints
// "ready", waits for a line "go", runs the phase and prints a coordResult
// (one JSON line); EOF on stdin ends it. The shared word of the raw
// ping-pongs lives in a page of a file in the benchmark's /dev/shm
// directory, zeroed by the test before each phase.
//
// Nothing is pinned: these machines have 2 cores, and each pair of
// workers takes both, so other load on the machine shows in the numbers.
// Run with -count 5 and take medians:
//
//	go test -run '^$' -bench 'QueuePingPong|QueueBatch|RetryWake' -count 5 ./e2e/
//
// SHMSTORE_BENCH_CPUPROFILE=prefix profiles each worker during each
// phase, to prefix.coord-<phase>.<side>; SHMSTORE_COORD_PHASE=5s makes
// the timed phases longer than their 500ms.

const (
	coordRole    = "coord"
	coordSideEnv = "SHMSTORE_COORD_SIDE" // "a"/"b", "producer"/"consumer"/"solo", "waiter"/"writer"
	coordPageEnv = "SHMSTORE_COORD_PAGE" // the shared page's file
	coordSockEnv = "SHMSTORE_COORD_SOCK" // "1": fd 3 is this side's end of a socketpair
	// coordPhaseEnv, a Go duration, lengthens the timed phases (to
	// profile them, say).
	coordPhaseEnv = "SHMSTORE_COORD_PHASE"
	// coordWarmup is how many untimed round trips start a ping-pong phase.
	coordWarmup = 200
	// coordSpin mirrors the spin of txn's waitRetry before it parks
	// (txn.spinLoads loads, yielding every 32), for the futex-spin floors.
	coordSpin = 200
	// coordQueueCap bounds the Queue of BenchmarkQueueBatch.
	coordQueueCap = 1024
	// coordSleepBit marks a ping-pong word whose waiter is (about to be)
	// asleep: the passer wakes it only then.
	coordSleepBit = 1 << 31
	// Offsets in the shared page.
	coordTurnOff = 0 // u32: the ping-pong's turn counter (and sleep bit)
	coordStopOff = 4 // u32: set by A before its last pass
	coordTSOff   = 8 // u64: the writer's timestamp (BenchmarkRetryWake's futex floor)
	coordPage    = 4096
)

// coordPhase is how long each timed phase runs: 500ms, or
// $SHMSTORE_COORD_PHASE.
func coordPhase() time.Duration {
	if d, err := time.ParseDuration(os.Getenv(coordPhaseEnv)); err == nil && d > 0 {
		return d
	}
	return 500 * time.Millisecond
}

// coordCmd is one phase a worker runs.
type coordCmd struct {
	Phase  string        `json:"phase"`
	Dur    time.Duration `json:"dur,omitempty"`    // timed phases
	Batch  int           `json:"batch,omitempty"`  // BenchmarkQueueBatch
	Rounds int           `json:"rounds,omitempty"` // BenchmarkRetryWake
	Gap    time.Duration `json:"gap,omitempty"`    // BenchmarkRetryWake: the writer's pause between rounds
}

// coordResult is what a worker reports of a phase; each phase fills
// what it measures.
type coordResult struct {
	Ops   int64   `json:"ops"`             // round trips, or items
	NS    int64   `json:"ns"`              // the time they took
	Waits uint64  `json:"waits"`           // this process's sleeps in Retry (txn RetryWaits)
	Polls int64   `json:"polls,omitempty"` // queue-poll: TryGet transactions
	CSw   int64   `json:"csw"`             // voluntary context switches of the process (all its threads)
	P50   float64 `json:"p50,omitempty"`   // latencies, ns (ping-pongs: of a round trip, over batches of 16)
	P99   float64 `json:"p99,omitempty"`
	Max   float64 `json:"max,omitempty"`
}

func (r coordResult) perOp() float64 { return float64(r.NS) / float64(r.Ops) }
func (r coordResult) rate() float64  { return float64(r.Ops) / (float64(r.NS) / 1e9) }

func init() {
	proctest.Register(coordRole, func() int {
		if err := coordWorkerMain(); err != nil {
			return proctest.Fail(err)
		}
		return 0
	})
}

// coordWorker is one worker process's state.
type coordWorker struct {
	side string
	st   *shmstore.Store
	page []byte
	sock int // -1: none
}

func (w *coordWorker) word(off int) *atomic.Uint32 {
	return (*atomic.Uint32)(unsafe.Pointer(&w.page[off]))
}

func (w *coordWorker) word64(off int) *atomic.Uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&w.page[off]))
}

func (w *coordWorker) retryWaits() uint64 { return layers.Of(w.st).Engine.RetryWaits() }

// coordPhases are the phases a worker runs, by name.
var coordPhases = map[string]func(w *coordWorker, cmd coordCmd) (coordResult, error){
	"spin": func(w *coordWorker, cmd coordCmd) (coordResult, error) {
		return w.pingPongWord(cmd, spinPolicy{loads: -1})
	},
	"futex": func(w *coordWorker, cmd coordCmd) (coordResult, error) { return w.pingPongWord(cmd, spinPolicy{}) },
	"futex-spin": func(w *coordWorker, cmd coordCmd) (coordResult, error) {
		return w.pingPongWord(cmd, spinPolicy{loads: coordSpin, yield: runtime.Gosched})
	},
	"futex-yield": func(w *coordWorker, cmd coordCmd) (coordResult, error) {
		return w.pingPongWord(cmd, spinPolicy{loads: coordSpin, yield: schedYield})
	},
	"unix":       (*coordWorker).pingPongUnix,
	"queue":      (*coordWorker).pingPongQueue,
	"queue-poll": (*coordWorker).pingPongQueuePoll,
	"batch":      (*coordWorker).batch,
	"wake-retry": (*coordWorker).wakeRetry,
	"wake-futex": (*coordWorker).wakeFutex,
}

func coordWorkerMain() error {
	w := &coordWorker{side: os.Getenv(coordSideEnv), sock: -1}
	var err error
	w.st, err = shmstore.Open(os.Getenv(benchStoreEnv), shmstore.Options{Dir: os.Getenv(benchDirEnv), Create: shmstore.MustExist})
	if err != nil {
		return err
	}
	defer w.st.Close()
	if err := w.st.View(func(tx *shmstore.Tx) error { _, err := tx.Root().Len(); return err }); err != nil {
		return err // (a warm-up: the slot leased, the pages faulted in)
	}
	f, err := os.OpenFile(os.Getenv(coordPageEnv), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	w.page, err = unix.Mmap(int(f.Fd()), 0, coordPage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	f.Close()
	if err != nil {
		return err
	}
	defer unix.Munmap(w.page)
	if os.Getenv(coordSockEnv) == "1" {
		w.sock = 3 // inherited blocking: raw read(2) and write(2), no poller
	}
	in := bufio.NewReader(os.Stdin)
	for {
		line, err := in.ReadBytes('\n')
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return nil
		}
		if err != nil {
			return err
		}
		var cmd coordCmd
		if err := json.Unmarshal(line, &cmd); err != nil {
			return err
		}
		run, ok := coordPhases[cmd.Phase]
		if !ok {
			return fmt.Errorf("no phase %q", cmd.Phase)
		}
		fmt.Println("ready")
		if _, err := in.ReadString('\n'); err != nil {
			return fmt.Errorf("waiting for go: %w", err)
		}
		stop, err := coordProfile(cmd, w.side)
		if err != nil {
			return err
		}
		csw := ctxSwitches()
		res, err := run(w, cmd)
		res.CSw = ctxSwitches() - csw
		stop()
		if err != nil {
			return fmt.Errorf("%s: %w", cmd.Phase, err)
		}
		if err := proctest.Emit(res); err != nil {
			return err
		}
	}
}

// coordProfile starts a CPU profile of this phase if the runner asked for
// one (benchProfileEnv), and returns what stops it.
func coordProfile(cmd coordCmd, side string) (func(), error) {
	prefix := os.Getenv(benchProfileEnv)
	if prefix == "" {
		return func() {}, nil
	}
	name := cmd.Phase
	if cmd.Batch > 0 {
		name += "-b" + strconv.Itoa(cmd.Batch)
	}
	f, err := os.Create(fmt.Sprintf("%s.coord-%s.%s", prefix, name, side))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// ctxSwitches is the voluntary context switches of this process so far
// (every thread's: the Go runtime's own hand-offs count too).
func ctxSwitches() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Nvcsw
}

// monoNow is CLOCK_MONOTONIC in ns: one clock for every process.
func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// pingPong runs a ping-pong phase: side "a" runs rt (one round trip)
// coordWarmup times, then for cmd.Dur, then end (which tells side "b" to
// stop), and reports round trips and their time; side "b" runs serve,
// which returns when told to stop. Both report their Retry sleeps.
func (w *coordWorker) pingPong(cmd coordCmd, rt func(i int) error, end func() error, serve func() error) (coordResult, error) {
	w0 := w.retryWaits()
	if w.side != "a" {
		err := serve()
		return coordResult{Waits: w.retryWaits() - w0}, err
	}
	i := 0
	for ; i < coordWarmup; i++ {
		if err := rt(i); err != nil {
			return coordResult{}, err
		}
	}
	w0 = w.retryWaits()
	var n int64
	batches := make([]int64, 0, 1<<16) // ns of each 16 round trips
	start := time.Now()
	last := start
	for {
		if err := rt(i); err != nil {
			return coordResult{}, err
		}
		i++
		n++
		if n%16 == 0 {
			now := time.Now()
			batches = append(batches, now.Sub(last).Nanoseconds())
			last = now
			if now.Sub(start) >= cmd.Dur {
				break
			}
		}
	}
	ns := time.Since(start).Nanoseconds()
	res := coordResult{Ops: n, NS: ns, Waits: w.retryWaits() - w0}
	latencies(&res, batches)
	res.P50, res.P99, res.Max = res.P50/16, res.P99/16, res.Max/16
	return res, end()
}

// wordPass hands the turn over: word becomes v, and its waiter is woken
// if it said it sleeps.
func wordPass(word *atomic.Uint32, v uint32) {
	if word.Swap(v)&coordSleepBit != 0 {
		shm.FutexWake(word, 1)
	}
}

// spinPolicy is how a ping-pong's waiter spins before it parks: loads
// loads of the word (-1: forever, never parking), calling yield (if not
// nil) every 32 as txn's waiters do.
type spinPolicy struct {
	loads int
	yield func()
}

// schedYield gives this thread's CPU to another runnable thread, if any
// (sched_yield(2)); runtime.Gosched only lets this process's other
// goroutines run, and first wakes an idle P's thread to look for them.
func schedYield() { _, _, _ = syscall.Syscall(syscall.SYS_SCHED_YIELD, 0, 0, 0) }

// wordAwait returns once word holds want: it spins first (sp), then sets
// the sleep bit and sleeps on the futex.
func wordAwait(word *atomic.Uint32, want uint32, sp spinPolicy) {
	for i := 0; sp.loads < 0 || i < sp.loads; i++ {
		if word.Load()&^coordSleepBit == want {
			return
		}
		if sp.yield != nil && i%32 == 31 {
			sp.yield()
		}
	}
	for {
		v := word.Load()
		if v&^coordSleepBit == want {
			return
		}
		if v&coordSleepBit == 0 {
			if !word.CompareAndSwap(v, v|coordSleepBit) {
				continue
			}
			v |= coordSleepBit
		}
		shm.FutexWait(word, v, time.Second)
	}
}

// pingPongWord is the ping-pong on one shared word with turns: A makes
// it odd, B makes it even. sp: how a waiter spins before it parks.
func (w *coordWorker) pingPongWord(cmd coordCmd, sp spinPolicy) (coordResult, error) {
	turn, stop := w.word(coordTurnOff), w.word(coordStopOff)
	var seq uint32
	return w.pingPong(cmd,
		func(int) error {
			seq++
			wordPass(turn, seq)
			seq++
			wordAwait(turn, seq, sp)
			return nil
		},
		func() error {
			stop.Store(1)
			wordPass(turn, seq+1)
			return nil
		},
		func() error {
			for {
				seq++
				wordAwait(turn, seq, sp)
				if stop.Load() != 0 {
					return nil
				}
				seq++
				wordPass(turn, seq)
			}
		})
}

func sockIO(f func(int, []byte) (int, error), fd int, b []byte) error {
	for {
		n, err := f(fd, b)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err == nil && n != len(b) {
			err = io.ErrShortWrite
		}
		return err
	}
}

// pingPongUnix is the ping-pong of 1-byte messages over a socketpair;
// the byte 0 tells B to stop.
func (w *coordWorker) pingPongUnix(cmd coordCmd) (coordResult, error) {
	if w.sock < 0 {
		return coordResult{}, errors.New("no socket")
	}
	b := []byte{1}
	return w.pingPong(cmd,
		func(int) error {
			b[0] = 1
			if err := sockIO(syscall.Write, w.sock, b); err != nil {
				return err
			}
			return sockIO(syscall.Read, w.sock, b)
		},
		func() error { b[0] = 0; return sockIO(syscall.Write, w.sock, b) },
		func() error {
			for {
				if err := sockIO(syscall.Read, w.sock, b); err != nil {
					return err
				}
				if b[0] == 0 {
					return nil
				}
				if err := sockIO(syscall.Write, w.sock, b); err != nil {
					return err
				}
			}
		})
}

// pingPongQueue is the ping-pong through the Queues q1 and q2 with
// Store.Put and Store.Take (each its own transaction; a Take of an empty
// Queue waits in Retry); the item -1 tells B to stop.
func (w *coordWorker) pingPongQueue(cmd coordCmd) (coordResult, error) {
	ctx := coordCtx()
	return w.pingPong(cmd,
		func(i int) error {
			if err := w.st.Put(ctx, "q1", i); err != nil {
				return err
			}
			v, err := w.st.Take(ctx, "q2")
			if err != nil {
				return err
			}
			if v != int64(i) {
				return fmt.Errorf("took %v, want %d", v, i)
			}
			return nil
		},
		func() error { return w.st.Put(ctx, "q1", -1) },
		func() error {
			for {
				v, err := w.st.Take(ctx, "q1")
				if err != nil {
					return err
				}
				if v == int64(-1) {
					return nil
				}
				if err := w.st.Put(ctx, "q2", v); err != nil {
					return err
				}
			}
		})
}

// coordCtx is the context of the Queue operations: Background (no
// cancellation word to wait on).
func coordCtx() context.Context { return context.Background() }

// tryTake takes the first item of the Queue under key in an Update with
// TryGet: no Retry, so no wait.
func (w *coordWorker) tryTake(key string) (shmstore.Value, bool, error) {
	var v shmstore.Value
	var ok bool
	err := w.st.Update(func(tx *shmstore.Tx) error {
		q, err := tx.Root().GetQueue(key)
		if err != nil {
			return err
		}
		v, ok, err = q.TryGet()
		return err
	})
	return v, ok, err
}

// pingPongQueuePoll is pingPongQueue with the taker polling (TryGet in a
// loop of transactions) instead of waiting in Retry: what the Queue's
// round trip costs when the waiter is already there and spinning, with
// no wait path at all.
func (w *coordWorker) pingPongQueuePoll(cmd coordCmd) (coordResult, error) {
	ctx := coordCtx()
	var polls int64
	take := func(key string) (shmstore.Value, error) {
		for {
			polls++
			v, ok, err := w.tryTake(key)
			if err != nil || ok {
				return v, err
			}
		}
	}
	res, err := w.pingPong(cmd,
		func(i int) error {
			if i == coordWarmup {
				polls = 0
			}
			if err := w.st.Put(ctx, "q1", i); err != nil {
				return err
			}
			v, err := take("q2")
			if err != nil {
				return err
			}
			if got, err := v.AsInt(); err != nil || got != int64(i) {
				return fmt.Errorf("took %v, want %d (%v)", v, i, err)
			}
			return nil
		},
		func() error { return w.st.Put(ctx, "q1", -1) },
		func() error {
			for {
				v, err := take("q1")
				if err != nil {
					return err
				}
				if n, _ := v.AsInt(); n == -1 {
					return nil
				}
				if err := w.st.Put(ctx, "q2", v); err != nil {
					return err
				}
			}
		})
	res.Polls = polls
	return res, err
}

// batch is a phase of BenchmarkQueueBatch. The producer puts cmd.Batch
// items (consecutive Ints) per Update into the bounded Queue "bq" for
// cmd.Dur, then the item -1; the consumer takes up to cmd.Batch items
// per Update (waiting in Retry for the first), checks their order, and
// reports the items and the time until the -1; "solo" puts a batch then
// takes it back, in one process, for cmd.Dur.
func (w *coordWorker) batch(cmd coordCmd) (coordResult, error) {
	k := cmd.Batch
	put := func(key string, from int64, n int) error {
		return w.st.Update(func(tx *shmstore.Tx) error {
			q, err := tx.Root().Queue(key, coordQueueCap)
			if err != nil {
				return err
			}
			for j := range n {
				v := from + int64(j)
				if from < 0 {
					v = -1
				}
				if err := q.Put(v); err != nil {
					return err
				}
			}
			return nil
		})
	}
	got := make([]int64, 0, k)
	take := func(key string) error {
		return w.st.Update(func(tx *shmstore.Tx) error {
			got = got[:0]
			q, err := tx.Root().Queue(key, coordQueueCap)
			if err != nil {
				return err
			}
			v, err := q.Get()
			if err != nil {
				return err
			}
			for {
				n, err := v.AsInt()
				if err != nil {
					return err
				}
				got = append(got, n)
				if len(got) == k {
					return nil
				}
				var ok bool
				if v, ok, err = q.TryGet(); err != nil || !ok {
					return err
				}
			}
		})
	}
	w0 := w.retryWaits()
	start := time.Now()
	var items int64
	switch w.side {
	case "producer":
		for time.Since(start) < cmd.Dur {
			if err := put("bq", items, k); err != nil {
				return coordResult{}, err
			}
			items += int64(k)
		}
		if err := put("bq", -1, 1); err != nil {
			return coordResult{}, err
		}
	case "consumer":
		for {
			if err := take("bq"); err != nil {
				return coordResult{}, err
			}
			for _, n := range got {
				if n == -1 {
					return coordResult{Ops: items, NS: time.Since(start).Nanoseconds(), Waits: w.retryWaits() - w0}, nil
				}
				if n != items {
					return coordResult{}, fmt.Errorf("took %d, want %d", n, items)
				}
				items++
			}
		}
	case "solo":
		for time.Since(start) < cmd.Dur {
			if err := put("sq", items, k); err != nil {
				return coordResult{}, err
			}
			if err := take("sq"); err != nil {
				return coordResult{}, err
			}
			if len(got) != k || got[0] != items {
				return coordResult{}, fmt.Errorf("took %v, want %d items from %d", got, k, items)
			}
			items += int64(k)
		}
	default:
		return coordResult{}, fmt.Errorf("no side %q", w.side)
	}
	return coordResult{Ops: items, NS: time.Since(start).Nanoseconds(), Waits: w.retryWaits() - w0}, nil
}

// latencies summarizes a waiter's samples (ns).
func latencies(res *coordResult, lat []int64) {
	slices.Sort(lat)
	if len(lat) == 0 {
		return
	}
	res.P50 = float64(lat[len(lat)/2])
	res.P99 = float64(lat[len(lat)*99/100])
	res.Max = float64(lat[len(lat)-1])
}

// wakeRetry is a phase of BenchmarkRetryWake through the store: the
// writer, every cmd.Gap, cmd.Rounds times, sets the Int "lat" to
// CLOCK_MONOTONIC read in its transaction function (just before the
// commit), reporting how long the commit took (until Update returned),
// and then sets it to -1; the waiter waits in a View that calls Retry
// until "lat" changes, and reports the time from the writer's timestamp
// to its function reading the new value. (Had the waiter been too slow to
// see a value, it sees the next one: a round is lost, never waited for.)
func (w *coordWorker) wakeRetry(cmd coordCmd) (coordResult, error) {
	w0 := w.retryWaits()
	lat := make([]int64, 0, cmd.Rounds)
	switch w.side {
	case "writer":
		for r := 0; r <= cmd.Rounds; r++ {
			time.Sleep(cmd.Gap)
			var ts int64
			if err := w.st.Update(func(tx *shmstore.Tx) error {
				ts = monoNow()
				if r == cmd.Rounds {
					ts = -1
				}
				return tx.Root().Set("lat", ts)
			}); err != nil {
				return coordResult{}, err
			}
			if ts >= 0 {
				lat = append(lat, monoNow()-ts)
			}
		}
	case "waiter":
		var last int64
		if err := w.st.View(func(tx *shmstore.Tx) error {
			var err error
			last, err = tx.Root().GetInt("lat")
			return err
		}); err != nil {
			return coordResult{}, err
		}
		for last != -1 {
			var v, at int64
			if err := w.st.View(func(tx *shmstore.Tx) error {
				var err error
				if v, err = tx.Root().GetInt("lat"); err != nil {
					return err
				}
				at = monoNow()
				if v == last {
					return tx.Retry()
				}
				return nil
			}); err != nil {
				return coordResult{}, err
			}
			if v != -1 {
				lat = append(lat, at-v)
			}
			last = v
		}
	default:
		return coordResult{}, fmt.Errorf("no side %q", w.side)
	}
	res := coordResult{Ops: int64(len(lat)), Waits: w.retryWaits() - w0}
	latencies(&res, lat)
	return res, nil
}

// wakeFutex is wakeRetry's floor: the writer stores the timestamp in the
// shared page and passes the turn word on (waking the waiter, who parks
// at once), and at the end sets the stop word; the waiter reports the
// time from the timestamp to its wake.
func (w *coordWorker) wakeFutex(cmd coordCmd) (coordResult, error) {
	turn, stop, ts := w.word(coordTurnOff), w.word(coordStopOff), w.word64(coordTSOff)
	lat := make([]int64, 0, cmd.Rounds)
	switch w.side {
	case "writer":
		for r := 0; r <= cmd.Rounds; r++ {
			time.Sleep(cmd.Gap)
			if r == cmd.Rounds {
				stop.Store(1)
			} else {
				ts.Store(uint64(monoNow()))
			}
			wordPass(turn, uint32(r+1))
		}
	case "waiter":
		for seq := uint32(0); ; {
			seq = wordAwaitChange(turn, seq)
			if stop.Load() != 0 {
				break
			}
			lat = append(lat, monoNow()-int64(ts.Load()))
		}
	default:
		return coordResult{}, fmt.Errorf("no side %q", w.side)
	}
	res := coordResult{Ops: int64(len(lat))}
	latencies(&res, lat)
	return res, nil
}

// wordAwaitChange parks at once until word no longer holds old, and
// returns what it holds.
func wordAwaitChange(word *atomic.Uint32, old uint32) uint32 {
	for {
		v := word.Load()
		if v&^coordSleepBit != old {
			return v &^ coordSleepBit
		}
		if v&coordSleepBit == 0 {
			if !word.CompareAndSwap(v, v|coordSleepBit) {
				continue
			}
			v |= coordSleepBit
		}
		shm.FutexWait(word, v, time.Second)
	}
}

// coordSet is the workers of one benchmark, on the store name in dir and
// the shared page of the file page.
type coordSet struct {
	procs []*proctest.Proc
	page  string
}

// startCoord makes the shared page in dir and starts a worker for each
// side; with sock, sides 0 and 1 get the ends of a socketpair as fd 3.
func startCoord(b *testing.B, dir, name string, sides []string, sock bool) *coordSet {
	b.Helper()
	c := &coordSet{page: filepath.Join(dir, "coord-page")}
	if err := os.WriteFile(c.page, make([]byte, coordPage), 0o600); err != nil {
		b.Fatal(err)
	}
	var ends [2]*os.File
	if sock {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			b.Fatal(err)
		}
		ends[0], ends[1] = os.NewFile(uintptr(fds[0]), "sock-a"), os.NewFile(uintptr(fds[1]), "sock-b")
	}
	for i, side := range sides {
		o := proctest.Options{
			Name: fmt.Sprintf("coord worker %s", side),
			Env: []string{benchDirEnv + "=" + dir, benchStoreEnv + "=" + name,
				coordSideEnv + "=" + side, coordPageEnv + "=" + c.page},
		}
		if sock && i < 2 {
			o.ExtraFiles = []*os.File{ends[i]}
			o.Env = append(o.Env, coordSockEnv+"=1")
		}
		c.procs = append(c.procs, proctest.Start(b, coordRole, o))
	}
	return c
}

// run runs cmd on the workers whose indexes are in which (all if none):
// the shared page zeroed, each told the phase, started together once all
// are ready, and their results returned in the order of which.
func (c *coordSet) run(b *testing.B, cmd coordCmd, which ...int) []coordResult {
	b.Helper()
	if len(which) == 0 {
		for i := range c.procs {
			which = append(which, i)
		}
	}
	if err := os.WriteFile(c.page, make([]byte, coordPage), 0o600); err != nil {
		b.Fatal(err)
	}
	line, err := json.Marshal(cmd)
	if err != nil {
		b.Fatal(err)
	}
	for _, i := range which {
		if _, err := c.procs[i].Stdin().Write(append(line, '\n')); err != nil {
			b.Fatalf("%s: %v\nstderr:\n%s", c.procs[i].Name(), err, c.procs[i].Stderr())
		}
	}
	for _, i := range which {
		if l := c.procs[i].Line(); l != "ready" {
			b.Fatalf("%s: not ready: %q\nstderr:\n%s", c.procs[i].Name(), l, c.procs[i].Stderr())
		}
	}
	for _, i := range which {
		if _, err := io.WriteString(c.procs[i].Stdin(), "go\n"); err != nil {
			b.Fatalf("%s: %v\nstderr:\n%s", c.procs[i].Name(), err, c.procs[i].Stderr())
		}
	}
	res := make([]coordResult, len(which))
	for j, i := range which {
		c.procs[i].DecodeLine(&res[j])
	}
	return res
}

// close ends the workers (EOF on stdin) and waits for them.
func (c *coordSet) close(b *testing.B) {
	b.Helper()
	for _, p := range c.procs {
		_ = p.Stdin().Close()
	}
	for _, p := range c.procs {
		if err := p.Wait(); err != nil {
			b.Errorf("%s: %v\nstderr:\n%s", p.Name(), err, p.Stderr())
		}
	}
}

// coordLoad notes the load average beside the numbers: these machines
// have 2 cores, and each benchmark's workers want both.
func coordLoad(b *testing.B) {
	b.Helper()
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		b.Logf("%d CPUs, nothing pinned; load average %s", runtime.NumCPU(), l[:len(l)-1])
	}
}

// BenchmarkQueuePingPong: two processes bounce one item through two
// Queues (A: Put q1, Take q2; B: Take q1, Put q2; Store.Put and
// Store.Take, a Take waiting in Retry), and, in the same run and between
// the same two processes, the floors: a ping-pong on a shared word with
// futex wait/wake parking at once ("futex"), spinning first like txn's
// waiters (200 loads, runtime.Gosched every 32: "futexspin"), the same
// spin with sched_yield(2) in place of Gosched ("futexyield"), spinning
// only ("spin"); a socketpair of 1-byte
// messages ("unix"); and the Queue ping-pong with the taker polling
// TryGet instead of waiting ("queuepoll": the Queue's transactions with
// no wait path). Reports, for each, ns per round trip: the mean
// (ns/rt-) and the median of batches of 16 (p50ns/rt-), which a
// preemption by other load on the machine does not move; the voluntary
// context switches of both processes per round trip (csw/rt-); the Retry
// sleeps per round trip of the Queue; and the ratios of the medians
// queue/futex (target <= 1), queue/spin and queuepoll/spin (target <= 3
// when the taker is already waiting and spinning).
func BenchmarkQueuePingPong(b *testing.B) {
	coordLoad(b)
	dir := shmtest.Dir(b)
	st := openBench(b, dir, "pp")
	err := st.Update(func(tx *shmstore.Tx) error {
		for _, k := range []string{"q1", "q2"} {
			if _, err := tx.Root().Queue(k, 0); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	c := startCoord(b, dir, "pp", []string{"a", "b"}, true)
	phases := []struct{ name, metric string }{
		{"spin", "spin"}, {"futex-spin", "futexspin"}, {"futex-yield", "futexyield"}, {"futex", "futex"}, {"unix", "unix"},
		{"queue", "queue"}, {"queue-poll", "queuepoll"},
	}
	sum, p50, csw := map[string]float64{}, map[string]float64{}, map[string]float64{}
	var waits, rts, polls float64
	rounds := 0
	for b.Loop() {
		for _, ph := range phases {
			r := c.run(b, coordCmd{Phase: ph.name, Dur: coordPhase()})
			sum[ph.metric] += r[0].perOp()
			p50[ph.metric] += r[0].P50
			csw[ph.metric] += float64(r[0].CSw+r[1].CSw) / float64(r[0].Ops+coordWarmup)
			switch ph.name {
			case "queue":
				waits += float64(r[0].Waits + r[1].Waits)
				rts += float64(r[0].Ops)
			case "queue-poll":
				polls += float64(r[0].Polls) / float64(r[0].Ops)
			}
		}
		rounds++
	}
	c.close(b)
	n := float64(rounds)
	for _, ph := range phases {
		b.ReportMetric(sum[ph.metric]/n, "ns/rt-"+ph.metric)
		b.ReportMetric(p50[ph.metric]/n, "p50ns/rt-"+ph.metric)
		b.ReportMetric(csw[ph.metric]/n, "csw/rt-"+ph.metric)
	}
	b.ReportMetric(waits/rts, "sleeps/rt-queue")
	b.ReportMetric(polls/n, "polls/rt-queuepoll")
	b.ReportMetric(p50["queue"]/p50["futex"], "x-queue/futex")
	b.ReportMetric(p50["queue"]/p50["spin"], "x-queue/spin")
	b.ReportMetric(p50["queuepoll"]/p50["spin"], "x-queuepoll/spin")
}

// BenchmarkQueueBatch: a producer process puts batches of 1, 16 and 256
// items per Update into a Queue bounded at 1024, a consumer process takes
// up to as many per Update (waiting in Retry while it is empty; the
// producer waits while it is full); and, as the floor without a
// hand-off, one process alone puts a batch and takes it back. Reports
// items/s of each.
func BenchmarkQueueBatch(b *testing.B) {
	coordLoad(b)
	dir := shmtest.Dir(b)
	openBench(b, dir, "batch")
	c := startCoord(b, dir, "batch", []string{"producer", "consumer", "solo"}, false)
	batches := []int{1, 16, 256}
	pair, solo, sleeps := map[int]float64{}, map[int]float64{}, map[int]float64{}
	rounds := 0
	for b.Loop() {
		for _, k := range batches {
			r := c.run(b, coordCmd{Phase: "batch", Batch: k, Dur: coordPhase()}, 0, 1)
			if r[0].Ops != r[1].Ops {
				b.Fatalf("batch %d: %d items put, %d taken", k, r[0].Ops, r[1].Ops)
			}
			pair[k] += r[1].rate()
			sleeps[k] += float64(r[0].Waits+r[1].Waits) / float64(r[1].Ops) * float64(k)
			r = c.run(b, coordCmd{Phase: "batch", Batch: k, Dur: coordPhase()}, 2)
			solo[k] += r[0].rate()
		}
		rounds++
	}
	c.close(b)
	n := float64(rounds)
	for _, k := range batches {
		b.ReportMetric(pair[k]/n, fmt.Sprintf("items/s-b%d", k))
		b.ReportMetric(solo[k]/n, fmt.Sprintf("items/s-solo-b%d", k))
		b.ReportMetric(sleeps[k]/n, fmt.Sprintf("sleeps/batch-b%d", k))
	}
}

// BenchmarkRetryWake: a waiter process sleeps in Retry on the key "lat"
// (a View that retries until it changes); a writer process sets it, every
// 300µs, to CLOCK_MONOTONIC read just before its commit; the waiter
// records the time until its function reads the new value. Beside it,
// the floor: the same through a raw futex (the waiter parked at once).
// Reports p50 and p99 of each, the writer's commit time (p50), and the
// waiter's Retry sleeps per round (1: it was asleep each time).
func BenchmarkRetryWake(b *testing.B) {
	coordLoad(b)
	dir := shmtest.Dir(b)
	st := openBench(b, dir, "wake")
	if err := st.Set("lat", 0); err != nil {
		b.Fatal(err)
	}
	c := startCoord(b, dir, "wake", []string{"waiter", "writer"}, false)
	const rounds, gap = 2000, 300 * time.Microsecond
	var p50, p99, max, f50, f99, commit, sleeps, lost float64
	n := 0
	for b.Loop() {
		r := c.run(b, coordCmd{Phase: "wake-retry", Rounds: rounds, Gap: gap})
		p50 += r[0].P50
		p99 += r[0].P99
		max += r[0].Max
		commit += r[1].P50
		sleeps += float64(r[0].Waits) / float64(r[0].Ops)
		lost += float64(rounds - r[0].Ops)
		r = c.run(b, coordCmd{Phase: "wake-futex", Rounds: rounds, Gap: gap})
		f50 += r[0].P50
		f99 += r[0].P99
		n++
	}
	c.close(b)
	d := float64(n)
	b.ReportMetric(p50/d, "p50-ns-retry")
	b.ReportMetric(p99/d, "p99-ns-retry")
	b.ReportMetric(max/d, "max-ns-retry")
	b.ReportMetric(f50/d, "p50-ns-futex")
	b.ReportMetric(f99/d, "p99-ns-futex")
	b.ReportMetric(commit/d, "p50-ns-commit")
	b.ReportMetric(sleeps/d, "sleeps/round-retry")
	b.ReportMetric(lost/d, "lost-rounds-retry")
	b.ReportMetric(p50/f50, "x-p50-retry/futex")
}
