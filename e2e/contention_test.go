//go:build linux && (amd64 || arm64)

package e2e

// One hot object and many processes:
//
//   - TestDeadHolder: a process that commits large transactions in a loop
//     is SIGKILLed at random times, often while it holds its commit's
//     locks; the processes that wait for those locks find the holder dead
//     at their next liveness check (every 10 ms), recover it and go on.
//     The test measures, for every kill that left locks held, how long
//     until the others had recovered the dead holder (no new process
//     attaches meanwhile, and the test process does not recover it), and
//     checks that no commit was lost or applied twice.
//   - TestFairness: 8 processes increment one Counter with Add (which
//     reads it, so they conflict) for a few seconds; every transaction's
//     attempts are counted. Aborted transactions wait for the word they
//     conflicted on and lock queues are served in order (package txn), so
//     no process starves and no transaction livelocks: the worst attempts
//     count stays small.

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
	"github.com/shmstore/shmstore/internal/proctest"
)

const (
	hotKey    = "hot"    // the hot Counter: every commit of every worker adds one
	victimKey = "victim" // the victim's commits (every incarnation's)
	bulkKey   = "bulk"   // a Dict the victim rewrites in every commit
	bulkKeys  = 256      // keys of bulk: a commit with that many locks and stores
	// bulkValueSize is the size of each value the victim writes: its
	// commit copies them into the store while it holds its locks.
	bulkValueSize = 1024
	durationEnv   = "SHMSTORE_CONTENTION_DURATION"
	fairKey       = "fair" // the Counter of TestFairness
	fairWorkEnv   = "SHMSTORE_FAIR_WORK"
)

func init() {
	for role, fn := range map[string]func(*shmstore.Store, roleEnvironment) (any, error){
		"holder-victim":   holderVictim,
		"holder-survivor": holderSurvivor,
		"fair-worker":     fairWorker,
	} {
		proctest.Register(role, func() int { return runRole(fn) })
	}
}

// holderVictim commits, until it is killed, transactions that add one to
// the hot Counter (blind: it conflicts with nobody, so that it commits
// often) and to its own count, and rewrite every key of bulk with a
// value of bulkValueSize bytes.
func holderVictim(st *shmstore.Store, w roleEnvironment) (any, error) {
	for i := 0; ; i++ {
		err := st.Update(func(tx *shmstore.Tx) error {
			root := tx.Root()
			v, err := root.GetInt(victimKey)
			if err != nil {
				return err
			}
			bulk, err := root.GetDict(bulkKey)
			if err != nil {
				return err
			}
			val := fmt.Sprintf("%d%0*d", i, bulkValueSize, 0)
			for k := 0; k < bulkKeys; k++ {
				if err := bulk.Set(k, val); err != nil {
					return err
				}
			}
			if err := root.Set(victimKey, v+1); err != nil {
				return err
			}
			hot, err := root.Counter(hotKey)
			if err != nil {
				return err
			}
			return hot.AddBlind(1) // no read: the victim does not conflict with the survivors

		})
		if err != nil {
			return nil, err
		}
	}
}

type survivorResult struct {
	Commits int64         `json:"commits"`
	Longest time.Duration `json:"longest"`  // the longest Update
	Over10  int           `json:"over_10"`  // Updates longer than 10 ms
	Over100 int           `json:"over_100"` // Updates longer than 100 ms
}

// holderSurvivor adds one to the hot Counter until stdin closes, in
// transactions that read everything the victim locks (the hot Counter,
// the victim key, every stripe of bulk through Len): whatever lock a
// dead victim holds, a survivor waits for it.
func holderSurvivor(st *shmstore.Store, w roleEnvironment) (any, error) {
	var stop atomic.Bool // set when the parent closes stdin (or writes a line)
	go func() {
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		stop.Store(true)
	}()
	var res survivorResult
	for !stop.Load() {
		start := time.Now()
		err := st.Update(func(tx *shmstore.Tx) error {
			root := tx.Root()
			if _, err := root.GetInt(victimKey); err != nil {
				return err
			}
			bulk, err := root.GetDict(bulkKey)
			if err != nil {
				return err
			}
			if _, err := bulk.Len(); err != nil {
				return err
			}
			hot, err := root.Counter(hotKey)
			if err != nil {
				return err
			}
			_, err = hot.Add(1) // reads it: waits while the victim holds it
			return err
		})
		if err != nil {
			return nil, err
		}
		d := time.Since(start)
		res.Longest = max(res.Longest, d)
		if d > 10*time.Millisecond {
			res.Over10++
		}
		if d > 100*time.Millisecond {
			res.Over100++
		}
		res.Commits++
	}
	return res, nil
}

func contentionDuration(t *testing.T, short, long time.Duration) time.Duration {
	t.Helper()
	def := long
	if testing.Short() {
		def = short
	}
	d := envDuration(t, durationEnv, def)
	t.Logf("runs %v (%s)", d, durationEnv)
	return d
}

// deadSlotLocks reports whether the dead process pid has a slot in a
// commit (not idle) that logged locks: it holds them all when committing,
// some when active (taking them) or releasing.
func deadSlotLocks(st *shmstore.Store, pid int) (state string, locks int) {
	for _, s := range layers.Of(st).Engine.Slots() {
		if s.PID == uint32(pid) && !s.Alive && s.State != "idle" && s.Locks > 0 {
			return s.State, s.Locks
		}
	}
	return "", 0
}

// recovered reports whether no process is dead and unrecovered.
func recovered(st *shmstore.Store) bool { return len(layers.Of(st).Shm.DeadProcs()) == 0 }

// TestDeadHolder: 3 survivors and a victim that is SIGKILLed every
// 30-100 ms (and restarted). A kill that leaves the victim's commit locks
// held is recovered by the survivors waiting for them, within about a
// second (their liveness check runs every 10 ms); the hot value counts
// exactly the committed transactions of everyone.
func TestDeadHolder(t *testing.T) {
	const survivors, minReleases = 3, 3
	seed := testSeed(t)
	dur := contentionDuration(t, 3*time.Second, 8*time.Second)
	dir, st := newStore(t)
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		root := tx.Root()
		if _, err := root.Counter(hotKey); err != nil {
			return err
		}
		if err := root.Set(victimKey, 0); err != nil {
			return err
		}
		bulk, err := root.Dict(bulkKey)
		if err != nil {
			return err
		}
		for k := 0; k < bulkKeys; k++ {
			if err := bulk.Set(k, -1); err != nil {
				return err
			}
		}
		return nil
	}))
	start := time.Now()
	ps := make([]*proc, survivors)
	for i := range ps {
		ps[i] = startProc(t, dir, "holder-survivor", i+1, seed)
	}
	rng := rand.New(rand.NewPCG(seed, 0x686f6c64))
	incarnation := 0
	victim := startVictim(t, st, dir, seed)
	kills := 0
	var releases []time.Duration // per kill that left locks held: until the survivors recovered it
	states := map[string]int{}
	// Kill for dur, and on (for at most a minute) until at least
	// minReleases kills left locks that the survivors had to recover.
	for time.Since(start) < dur || (len(releases) < minReleases && time.Since(start) < time.Minute) {
		time.Sleep(30*time.Millisecond + time.Duration(rng.Int64N(int64(70*time.Millisecond))))
		killed, err := victim.Kill()
		require.NoError(t, err)
		require.True(t, killed, "the victim (pid %d) exited on its own: %v\nstderr:\n%s", victim.Pid(), victim.Wait(), victim.Stderr())
		kills++
		killedAt := time.Now()
		state, locks := deadSlotLocks(st, victim.Pid())
		if locks == 0 {
			states[killedState(st, victim.Pid())]++
		} else {
			// It may hold locks the survivors need: then they recover it
			// (nothing else does while no process attaches and this one
			// only looks). Committing, it holds every lock of its
			// commit: they must. Active (taking its locks) or releasing,
			// it may hold none they need: if they have not recovered it
			// within 300 ms (their liveness check runs every 10 ms),
			// it blocks nobody and its replacement's Open recovers it.
			wait := 300 * time.Millisecond
			if state == "committing" {
				wait = 30 * time.Second
			}
			for !recovered(st) && time.Since(killedAt) < wait {
				time.Sleep(100 * time.Microsecond)
			}
			switch {
			case recovered(st):
				releases = append(releases, time.Since(killedAt))
				states[state+", recovered by a waiter"]++
			case state == "committing":
				t.Fatalf("the victim (pid %d) died committing with %d locks; not recovered after %v; slots:\n%s",
					victim.Pid(), locks, wait, slotsDump(st))
			default:
				states[state+", blocking nobody (its locks released already)"]++
			}
		}
		incarnation++
		victim = startVictim(t, st, dir, seed, incarnationEnv+"="+strconv.Itoa(incarnation))
	}
	killed, err := victim.Kill()
	require.NoError(t, err)
	require.True(t, killed)
	for _, p := range ps {
		require.NoError(t, p.Stdin().Close()) // stop
	}

	var commits int64
	var longest time.Duration
	over10, over100 := 0, 0
	for i, p := range ps {
		var r survivorResult
		p.Result(&r)
		t.Logf("survivor %d: %d commits, longest Update %v, %d over 10 ms, %d over 100 ms",
			i+1, r.Commits, r.Longest.Round(time.Microsecond), r.Over10, r.Over100)
		require.Positive(t, r.Commits)
		commits += r.Commits
		longest = max(longest, r.Longest)
		over10 += r.Over10
		over100 += r.Over100
	}
	requireQuiet(t, st)
	hot, err := st.GetInt(hotKey)
	require.NoError(t, err)
	vc, err := st.GetInt(victimKey)
	require.NoError(t, err)
	slices.Sort(releases)
	worst := time.Duration(0)
	if len(releases) > 0 {
		worst = releases[len(releases)-1]
	}
	t.Logf("%d kills of the victim, where they landed: %v", kills, states)
	t.Logf("%d kills left locks held; recovered by the survivors after: median %v, worst %v (all: %v)",
		len(releases), median(releases).Round(time.Microsecond), worst.Round(time.Microsecond), roundAll(releases))
	t.Logf("hot %d = %d survivor commits + %d victim commits; survivors' longest Update %v", hot, commits, vc, longest.Round(time.Microsecond))
	require.Equal(t, commits+vc, hot, "every committed transaction counted once, none half-applied")
	require.Positive(t, vc, "the victim committed")
	require.GreaterOrEqual(t, len(releases), minReleases, "kills that left locks the survivors recovered (else this test proves nothing about dead holders)")
	require.Less(t, worst, 2*time.Second, "waiters released from a dead holder's locks within about a second")
	// The survivors' longest Update is logged above; on a quiet machine it
	// is well under a second. The bound here is liveness only (a wait that
	// never ends fails it), generous because a loaded machine can stall
	// any process for seconds.
	require.Less(t, longest, 30*time.Second, "no survivor waited without end (for a dead holder, or anything)")
	require.NoError(t, st.Check())
}

// startVictim starts an incarnation of the victim and returns once it has
// a transaction slot: the kills' random delays count from there, not from
// its start (under the race detector a start alone can outlast them, and
// then no kill would land in a transaction).
func startVictim(t *testing.T, st *shmstore.Store, dir string, seed uint64, env ...string) *proctest.Proc {
	t.Helper()
	v := startProc(t, dir, "holder-victim", 0, seed, env...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, s := range layers.Of(st).Engine.Slots() {
			if s.PID == uint32(v.Pid()) {
				return v
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the victim (pid %d) has no transaction slot 30 s after its start; stderr:\n%s", v.Pid(), v.Stderr())
		}
		time.Sleep(time.Millisecond)
	}
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(100 * time.Microsecond)
	}
	return out
}

type fairResult struct {
	Commits  int64         `json:"commits"`
	Attempts map[int]int64 `json:"attempts"` // attempts of a transaction -> how many transactions took that many
	Worst    int           `json:"worst"`
	Longest  time.Duration `json:"longest"`
}

// fairWorker adds one to the fair Counter with Add (a read and a write)
// until the deadline it reads on stdin (the start line), counting each
// transaction's attempts.
func fairWorker(st *shmstore.Store, w roleEnvironment) (any, error) {
	line, err := startLine()
	if err != nil {
		return nil, err
	}
	until, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("the start line %q: %w", line, err)
	}
	work, err := time.ParseDuration(os.Getenv(fairWorkEnv)) // between the Add and the commit
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fairWorkEnv, err)
	}
	res := fairResult{Attempts: map[int]int64{}}
	for time.Now().UnixNano() < until {
		runs := 0
		start := time.Now()
		err := st.Update(func(tx *shmstore.Tx) error {
			runs++
			c, err := tx.Root().Counter(fairKey)
			if err != nil {
				return err
			}
			if _, err = c.Add(1); err != nil {
				return err
			}
			for t0 := time.Now(); time.Since(t0) < work; {
				// work between the read and the commit: a window for others' commits
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		res.Longest = max(res.Longest, time.Since(start))
		res.Commits++
		res.Attempts[runs]++
		res.Worst = max(res.Worst, runs)
	}
	return res, nil
}

// TestFairness: 8 processes hammer one Counter with Add for a few
// seconds, each transaction's attempts counted. Every process commits a
// fair part (at least a tenth of an equal share: a starved process would
// not), no Update waits for seconds, the Counter counts every commit, and
// the worst transaction took a bounded number of attempts. txn's fairness
// token (txn/fair.go) bounds a read-write transaction's attempts by
// privilegedAfter (8) + the commits already under way when it took the
// token (at most one per other process here: 7) + 1 = 16, with or without
// work between the Add and the commit (a window in which the others
// commit: before the token, an unlucky transaction retried up to 227
// times there).
func TestFairness(t *testing.T) {
	t.Run("add", func(t *testing.T) { testFairness(t, 0, 16) })
	t.Run("add+work", func(t *testing.T) { testFairness(t, 20*time.Microsecond, 16) })
}

func testFairness(t *testing.T, work time.Duration, bound int) {
	const workers = 8
	seed := testSeed(t)
	dur := contentionDuration(t, 2*time.Second, 5*time.Second)
	dir, st := newStore(t)
	_, err := st.Add(fairKey, 0)
	require.NoError(t, err)
	ps := make([]*proc, workers)
	for i := range ps {
		ps[i] = startProc(t, dir, "fair-worker", i+1, seed, fairWorkEnv+"="+work.String())
	}
	for _, p := range ps {
		require.Equal(t, "ready", p.Line())
	}
	until := strconv.FormatInt(time.Now().Add(dur).UnixNano(), 10) + "\n"
	for _, p := range ps {
		_, err := io.WriteString(p.Stdin(), until)
		require.NoError(t, err)
	}
	res := waitResults[fairResult](t, st, dur+time.Minute, "fair workers", ps)

	var total int64
	all := map[int]int64{}
	worst := 0
	var longest time.Duration
	for i, r := range res {
		total += r.Commits
		for a, n := range r.Attempts {
			all[a] += n
		}
		worst = max(worst, r.Worst)
		longest = max(longest, r.Longest)
		t.Logf("worker %d: %d commits, worst %d attempts, longest Update %v", i+1, r.Commits, r.Worst, r.Longest.Round(time.Microsecond))
	}
	t.Logf("%d processes, %v of work in each transaction, %v: %d commits (%.0f/s), longest Update %v",
		workers, work, dur, total, float64(total)/dur.Seconds(), longest.Round(time.Microsecond))
	t.Logf("attempts per transaction: median %d, p99 %d, p99.9 %d, p99.99 %d, worst %d; by count: %s",
		quantile(all, 0.5), quantile(all, 0.99), quantile(all, 0.999), quantile(all, 0.9999), worst, histogram(all))
	n, err := st.GetInt(fairKey)
	require.NoError(t, err)
	require.Equal(t, total, n, "the Counter counts every commit")
	for i, r := range res {
		require.GreaterOrEqual(t, r.Commits, total/workers/10, "worker %d starved: %d of %d commits", i+1, r.Commits, total)
	}
	require.Less(t, longest, 10*time.Second, "an Update waited for seconds")
	require.LessOrEqual(t, worst, bound, "a transaction took %d attempts", worst)
	requireQuiet(t, st)
	require.NoError(t, st.Check())
}

// quantile is the attempts count at or below which a fraction q of the
// transactions lie.
func quantile(m map[int]int64, q float64) int {
	var keys []int
	var total int64
	for a, n := range m {
		keys = append(keys, a)
		total += n
	}
	sort.Ints(keys)
	var acc int64
	for _, a := range keys {
		acc += m[a]
		if float64(acc) >= q*float64(total) {
			return a
		}
	}
	return 0
}

// histogram describes how many transactions took 1, 2, 3-4, 5-8, ...
// attempts, with the share of each.
func histogram(m map[int]int64) string {
	var total int64
	buckets := map[int]int64{} // upper bound (a power of two) -> count
	for a, n := range m {
		total += n
		b := 1
		for b < a {
			b *= 2
		}
		buckets[b] += n
	}
	var bs []int
	for b := range buckets {
		bs = append(bs, b)
	}
	sort.Ints(bs)
	var out []string
	for _, b := range bs {
		label := strconv.Itoa(b)
		if b > 2 {
			label = fmt.Sprintf("%d-%d", b/2+1, b)
		}
		out = append(out, fmt.Sprintf("%s: %d (%.3g%%)", label, buckets[b], 100*float64(buckets[b])/float64(total)))
	}
	return strings.Join(out, ", ")
}
