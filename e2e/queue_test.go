//go:build linux && (amd64 || arm64)

package e2e

// The blocking half of the store across processes: producers and
// consumers of one bounded Queue, consumers SIGKILLed at random and
// replaced (every job processed exactly once), consumers that wait on an
// empty Queue without burning CPU, and a consumer killed while it sleeps
// in Retry (nothing left behind).
//
// A consumer takes a job and records it in ONE transaction: it pops the
// job, adds one to done[job] (a Dict: job -> times processed) and to the
// Counter "processed". A consumer killed before its commit point loses
// nothing (the job is still queued), one killed after it loses nothing
// either (recovery completes the commit); a job delivered twice would
// show as done[job] == 2. A job -1 is a pill: the consumer that takes it
// exits.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
	"github.com/shmstore/shmstore/internal/proctest"
	"github.com/shmstore/shmstore/txn"
)

const (
	qJobsKey      = "jobs"      // the Queue
	qDoneKey      = "done"      // Dict: job -> how many times it was processed
	qProcessedKey = "processed" // Counter: jobs processed (AddBlind, with the record)
	qCapacity     = 1024
	qPill         = -1
	// qJobsEnv overrides the number of jobs of TestQueueKill (100k, 15k
	// with -short).
	qJobsEnv = "SHMSTORE_QUEUE_JOBS"
	// qWorkEnv is how long a consumer of TestQueueKill works on a job
	// inside its transaction (a Go duration; default 100µs): the run
	// then lasts long enough for tens of kills, most of them landing in
	// a transaction. Other tests' consumers do no work.
	qWorkEnv = "SHMSTORE_QUEUE_WORK"
	// qRangeEnv is a producer's jobs: "lo-hi" (hi excluded).
	qRangeEnv = "SHMSTORE_QUEUE_RANGE"
	// waitTimeoutEnv is the waits' safety-net timeout (package txn): a
	// minute in the tests where a lost wake-up must show as a hang.
	waitTimeoutEnv = "SHMSTORE_WAIT_TIMEOUT"
	longWaits      = waitTimeoutEnv + "=1m"
)

func init() {
	for role, fn := range map[string]func(*shmstore.Store, roleEnvironment) (any, error){
		"queue-producer": queueProducer,
		"queue-consumer": queueConsumer,
	} {
		proctest.Register(role, func() int { return runRole(fn) })
	}
}

type queueProducerResult struct {
	Put        int    `json:"put"`
	RetryWaits uint64 `json:"retry_waits"` // sleeps in Retry (a full Queue)
}

// queueProducer puts its range of jobs, one Update each, waiting while the
// Queue is full.
func queueProducer(st *shmstore.Store, w roleEnvironment) (any, error) {
	var lo, hi int
	if _, err := fmt.Sscanf(os.Getenv(qRangeEnv), "%d-%d", &lo, &hi); err != nil {
		return nil, fmt.Errorf("%s=%q: %w", qRangeEnv, os.Getenv(qRangeEnv), err)
	}
	var res queueProducerResult
	for job := lo; job < hi; job++ {
		err := st.Update(func(tx *shmstore.Tx) error {
			q, err := tx.Root().GetQueue(qJobsKey)
			if err != nil {
				return err
			}
			return q.Put(job)
		})
		if err != nil {
			return nil, fmt.Errorf("put %d: %w", job, err)
		}
		res.Put++
	}
	res.RetryWaits = layers.Of(st).Engine.RetryWaits()
	return res, nil
}

type queueConsumerResult struct {
	Processed  int    `json:"processed"`
	Dups       int    `json:"dups"` // jobs it found processed already
	RetryWaits uint64 `json:"retry_waits"`
}

// queueConsumer takes jobs until it takes a pill: each job is taken and
// recorded in one Update.
func queueConsumer(st *shmstore.Store, w roleEnvironment) (any, error) {
	var res queueConsumerResult
	var work time.Duration
	if s := os.Getenv(qWorkEnv); s != "" {
		var err error
		if work, err = time.ParseDuration(s); err != nil {
			return nil, fmt.Errorf("%s: %w", qWorkEnv, err)
		}
	}
	for {
		var job, seen int64
		err := st.Update(func(tx *shmstore.Tx) error {
			job, seen = 0, 0
			q, err := tx.Root().GetQueue(qJobsKey)
			if err != nil {
				return err
			}
			v, err := q.Get() // waits (Retry) while the Queue is empty
			if err != nil {
				return err
			}
			if job, err = v.AsInt(); err != nil || job == qPill {
				return err
			}
			for t0 := time.Now(); time.Since(t0) < work; {
				// the job's processing, inside the transaction
			}
			done, err := tx.Root().GetDict(qDoneKey)
			if err != nil {
				return err
			}
			if old, ok, err := done.Lookup(job); err != nil {
				return err
			} else if ok {
				if seen, err = old.AsInt(); err != nil {
					return err
				}
			}
			if err := done.Set(job, seen+1); err != nil {
				return err
			}
			c, err := tx.Root().Counter(qProcessedKey)
			if err != nil {
				return err
			}
			return c.AddBlind(1)
		})
		if err != nil {
			return nil, fmt.Errorf("take a job: %w", err)
		}
		if job == qPill {
			break
		}
		res.Processed++
		if seen > 0 {
			res.Dups++
		}
	}
	res.RetryWaits = layers.Of(st).Engine.RetryWaits()
	return res, nil
}

// setupQueue makes the Queue, the done Dict and the processed Counter.
func setupQueue(t *testing.T, st *shmstore.Store) {
	t.Helper()
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		if _, err := tx.Root().Queue(qJobsKey, qCapacity); err != nil {
			return err
		}
		if _, err := tx.Root().Dict(qDoneKey); err != nil {
			return err
		}
		_, err := tx.Root().Counter(qProcessedKey)
		return err
	}))
}

// putPills puts n pills (each ends one consumer).
func putPills(t *testing.T, st *shmstore.Store, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
			q, err := tx.Root().GetQueue(qJobsKey)
			if err != nil {
				return err
			}
			return q.Put(qPill)
		}))
	}
}

// putJobs puts jobs lo..hi-1 from the test process.
func putJobs(t *testing.T, st *shmstore.Store, lo, hi int) {
	t.Helper()
	for job := lo; job < hi; job++ {
		require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
			q, err := tx.Root().GetQueue(qJobsKey)
			if err != nil {
				return err
			}
			return q.Put(job)
		}))
	}
}

// processed reads the processed Counter.
func processed(t *testing.T, st *shmstore.Store) int64 {
	t.Helper()
	n, err := st.GetInt(qProcessedKey)
	require.NoError(t, err)
	return n
}

// waitProcessed waits until n jobs are processed, failing the test if
// none is processed for stall (a hang, not a speed bound).
func waitProcessed(t *testing.T, st *shmstore.Store, n int64, stall time.Duration, during func()) {
	t.Helper()
	last, lastAt := int64(-1), time.Now()
	for {
		got := processed(t, st)
		if got >= n {
			require.Equal(t, n, got, "processed")
			return
		}
		if got != last {
			last, lastAt = got, time.Now()
		} else if time.Since(lastAt) > stall {
			t.Fatalf("no job processed for %v: %d of %d processed; slots:\n%s", stall, got, n, slotsDump(st))
		}
		if during != nil {
			during()
		} else {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// requireDoneOnce checks that jobs 0..n-1 are each recorded processed
// exactly once, and nothing else is.
func requireDoneOnce(t *testing.T, st *shmstore.Store, n int) {
	t.Helper()
	var bad []string
	count := 0
	require.NoError(t, st.View(func(tx *shmstore.Tx) error {
		bad, count = nil, 0
		done, err := tx.Root().GetDict(qDoneKey)
		if err != nil {
			return err
		}
		seen := make([]bool, n)
		if err := done.Range(func(k, v shmstore.Value) bool {
			count++
			job, kerr := k.AsInt()
			times, verr := v.AsInt()
			switch {
			case kerr != nil || verr != nil || job < 0 || job >= int64(n):
				bad = append(bad, fmt.Sprintf("unexpected entry %v: %v", k, v))
			case times != 1:
				bad = append(bad, fmt.Sprintf("job %d processed %d times", job, times))
			default:
				seen[job] = true
			}
			return len(bad) < 20
		}); err != nil {
			return err
		}
		for job, ok := range seen {
			if !ok && len(bad) < 20 {
				bad = append(bad, fmt.Sprintf("job %d never processed", job))
			}
		}
		return nil
	}))
	require.Empty(t, bad, "every job processed exactly once")
	require.Equal(t, n, count, "entries in %s", qDoneKey)
	qlen := -1
	require.NoError(t, st.View(func(tx *shmstore.Tx) error {
		q, err := tx.Root().GetQueue(qJobsKey)
		if err != nil {
			return err
		}
		qlen, err = q.Len()
		return err
	}))
	require.Zero(t, qlen, "the Queue is empty")
}

// slotsDump describes the slots with an owner, for failure messages.
func slotsDump(st *shmstore.Store) string {
	var b strings.Builder
	for _, s := range layers.Of(st).Engine.Slots() {
		fmt.Fprintf(&b, "  %+v\n", s)
	}
	return b.String()
}

// killedState says where the dead process pid was when it died, from its
// slot as seen now (before it is recovered): "committing" or "releasing"
// (past the commit point), "locking" (taking its commit's locks),
// "parked in Retry", "waiting for a lock", "in a transaction", "between
// transactions", or "no slot" (it had not attached, or it was recovered
// already).
func killedState(st *shmstore.Store, pid int) string {
	for _, s := range layers.Of(st).Engine.Slots() {
		if s.PID != uint32(pid) || s.Alive {
			continue
		}
		switch {
		case s.State == "committing" || s.State == "releasing":
			return s.State
		case s.State == "active" && s.Locks > 0:
			return "locking"
		case s.WaitOn != 0 && !s.Active:
			return "parked in Retry"
		case s.WaitOn != 0:
			return "waiting for a lock"
		case s.Active:
			return "in a transaction"
		default:
			return "between transactions"
		}
	}
	return "no slot"
}

// queueJobs is the number of jobs of TestQueueKill.
func queueJobs(t *testing.T) int {
	t.Helper()
	n := 100_000
	if testing.Short() {
		n = 15_000
	}
	if s := os.Getenv(qJobsEnv); s != "" {
		var err error
		n, err = strconv.Atoi(s)
		require.NoError(t, err, "%s", qJobsEnv)
	}
	return n
}

// TestQueueKill: 2 producers and 3 consumers, real processes, move N jobs
// (100k, 15k with -short) through a Queue bounded at 1024 while the test
// SIGKILLs a random consumer every 100-200 ms and starts a new one in its
// place. A consumer works on each job for 100 µs inside its transaction,
// so that the run lasts long enough for tens of kills, most of which land
// mid-transaction (the test logs where each landed). Every job is
// processed exactly once (none lost, none twice), the Queue ends empty,
// no lock stays held, no dead process is left unrecovered, and Check is
// clean.
func TestQueueKill(t *testing.T) {
	const producers, consumers = 2, 3
	seed := testSeed(t)
	jobs := queueJobs(t)
	work := envDuration(t, qWorkEnv, 100*time.Microsecond)
	t.Logf("%d jobs (%s), %v of work on each inside its transaction (%s)", jobs, qJobsEnv, work, qWorkEnv)
	dir, st := newStore(t)
	setupQueue(t, st)

	start := time.Now()
	prods := make([]*proc, producers)
	for i := range prods {
		lo, hi := i*jobs/producers, (i+1)*jobs/producers
		prods[i] = startProc(t, dir, "queue-producer", i+1, seed, fmt.Sprintf("%s=%d-%d", qRangeEnv, lo, hi))
	}
	cons := make([]*proc, consumers)
	incarnations := make([]int, consumers)
	startConsumer := func(i int) {
		cons[i] = startProc(t, dir, "queue-consumer", i+1, seed, incarnationEnv+"="+strconv.Itoa(incarnations[i]), qWorkEnv+"="+work.String())
	}
	for i := range cons {
		startConsumer(i)
	}

	rng := rand.New(rand.NewPCG(seed, 0x71756575))
	kills, attachedKills := 0, 0
	killedIn := map[string]int{}
	nextKill := time.Now().Add(100*time.Millisecond + time.Duration(rng.Int64N(int64(100*time.Millisecond))))
	killer := func() {
		time.Sleep(5 * time.Millisecond)
		if time.Now().Before(nextKill) {
			return
		}
		i := rng.IntN(consumers)
		p := cons[i]
		wasRunning, err := p.Kill()
		require.NoError(t, err)
		require.True(t, wasRunning, "consumer %d (incarnation %d, pid %d) exited on its own: %v\nstderr:\n%s",
			i+1, incarnations[i], p.Pid(), p.Wait(), p.Stderr())
		kills++
		if strings.Contains(p.Stderr(), attachedMark) {
			attachedKills++
		}
		killedIn[killedState(st, p.Pid())]++
		incarnations[i]++
		startConsumer(i)
		nextKill = time.Now().Add(100*time.Millisecond + time.Duration(rng.Int64N(int64(100*time.Millisecond))))
	}
	// Kill until every job is processed; a stall of 30 s is a hang.
	waitProcessed(t, st, int64(jobs), 30*time.Second, killer)
	elapsed := time.Since(start)

	var putWaits uint64
	for _, p := range prods {
		var res queueProducerResult
		p.Result(&res)
		putWaits += res.RetryWaits
	}
	putPills(t, st, consumers)
	lastProcessed, dups := 0, 0
	var takeWaits uint64
	for _, p := range cons {
		var res queueConsumerResult
		p.Result(&res)
		lastProcessed += res.Processed
		dups += res.Dups
		takeWaits += res.RetryWaits
	}
	rec := layers.Of(st).Shm.Header().Recovered.Load()
	t.Logf("%d jobs through a Queue of %d in %v (%.0f jobs/s): %d consumers killed (%d known attached), %d recovered; "+
		"the last incarnations processed %d; sleeps in Retry: producers %d, last consumers %d",
		jobs, qCapacity, elapsed.Round(time.Millisecond), float64(jobs)/elapsed.Seconds(),
		kills, attachedKills, rec, lastProcessed, putWaits, takeWaits)
	t.Logf("where the kills landed (the dead consumer's slot as seen right after it was reaped): %v", killedIn)
	require.Zero(t, dups, "a consumer found a job processed already")
	require.Positive(t, kills)

	requireQuiet(t, st)
	require.EqualValues(t, jobs, processed(t, st))
	requireDoneOnce(t, st, jobs)
	rec = layers.Of(st).Shm.Header().Recovered.Load()
	require.GreaterOrEqual(t, rec, uint64(attachedKills), "every killed consumer that attached is recovered")
	require.LessOrEqual(t, rec, uint64(kills), "recoveries")
	require.NoError(t, st.Check())
}

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on every Linux this store runs on).
const clockTick = 10 * time.Millisecond

// cpuTime is the CPU time (user + system, all threads) process pid has
// used so far, from /proc/PID/stat.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command may hold spaces
	require.Positive(t, i, "/proc/%d/stat: %q", pid, s)
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state): utime is field 14, stime 15
	require.Greater(t, len(f), 12, "/proc/%d/stat: %q", pid, s)
	utime, err := strconv.ParseInt(f[11], 10, 64)
	require.NoError(t, err)
	stime, err := strconv.ParseInt(f[12], 10, 64)
	require.NoError(t, err)
	return time.Duration(utime+stime) * clockTick
}

// wakeups is how many times the threads of process pid have gone to
// sleep so far (voluntary context switches, summed over its threads): a
// process that sleeps in a wait adds one per wake-up, whatever woke it.
func wakeups(t *testing.T, pid int) int64 {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	require.NoError(t, err)
	var n int64
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		if err != nil {
			continue // the thread ended since the listing
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				k, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				require.NoError(t, err)
				n += k
			}
		}
	}
	return n
}

// wakes is wake1[i]-wake0[i] for each i.
func wakes(wake0, wake1 []int64) []int64 {
	d := make([]int64, len(wake0))
	for i := range d {
		d[i] = wake1[i] - wake0[i]
	}
	return d
}

// parkedInRetry reports whether a live process pid has a slot waiting in
// Retry (WaitOn set, no snapshot published).
func parkedInRetry(st *shmstore.Store, pid int) bool {
	for _, s := range layers.Of(st).Engine.Slots() {
		if s.PID == uint32(pid) && s.Alive && s.WaitOn != 0 && !s.Active {
			return true
		}
	}
	return false
}

// waitParked waits until every process of ps sleeps in Retry, then a
// little more (past waitRetry's short spin, into the futex wait).
func waitParked(t *testing.T, st *shmstore.Store, ps ...*proc) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for _, p := range ps {
		for !parkedInRetry(st, p.Pid()) {
			if p.Exited() {
				t.Fatalf("%s (pid %d) exited: %v; stderr:\n%s", p.Name(), p.Pid(), p.Wait(), p.Stderr())
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s (pid %d) is not waiting in Retry; slots:\n%s", p.Name(), p.Pid(), slotsDump(st))
			}
			time.Sleep(time.Millisecond)
		}
	}
	time.Sleep(50 * time.Millisecond)
}

// waitResults waits for the processes' results, failing the test if they
// do not all exit within d (a lost wake-up: they wait with a one-minute
// safety net).
func waitResults[R any](t *testing.T, st *shmstore.Store, d time.Duration, what string, ps []*proc) []R {
	t.Helper()
	deadline := time.Now().Add(d)
	for _, p := range ps {
		if exited, _ := p.WaitTimeout(time.Until(deadline)); !exited {
			t.Fatalf("%s: %s (pid %d) still runs after %v: a lost wake-up?\nslots:\n%s\nstderr:\n%s",
				what, p.Name(), p.Pid(), d, slotsDump(st), p.Stderr())
		}
	}
	out := make([]R, len(ps))
	for i, p := range ps {
		p.Result(&out[i])
	}
	return out
}

// TestQueueIdleConsumersSleep: 3 consumer processes wait on an empty
// Queue; over an idle window of a second each uses (almost) no CPU: less
// than 5% of the window (a consumer that polled would use about all of
// it, or its share of a loaded machine's cores: far above 5%). The pills
// put afterwards end them promptly although their waits' safety-net
// timeout is a minute: the Puts' commits woke them.
func TestQueueIdleConsumersSleep(t *testing.T) {
	const consumers = 3
	const window = time.Second
	seed := testSeed(t)
	dir, st := newStore(t)
	setupQueue(t, st)
	cons := make([]*proc, consumers)
	for i := range cons {
		cons[i] = startProc(t, dir, "queue-consumer", i+1, seed, longWaits)
	}
	waitParked(t, st, cons...)

	time.Sleep(500 * time.Millisecond) // the engines' tickers stop (a window of 40 ticks after the one with the last starts)
	cpu0 := make([]time.Duration, consumers)
	wake0 := make([]int64, consumers)
	for i, p := range cons {
		cpu0[i], wake0[i] = cpuTime(t, p.Pid()), wakeups(t, p.Pid())
	}
	start := time.Now()
	time.Sleep(window)
	cpu1 := make([]time.Duration, consumers)
	wake1 := make([]int64, consumers)
	for i, p := range cons {
		cpu1[i], wake1[i] = cpuTime(t, p.Pid()), wakeups(t, p.Pid())
	}
	idle := time.Since(start)
	require.Zero(t, processed(t, st), "the Queue stayed empty")

	var fracs []string
	worst := 0.0
	for i, p := range cons {
		used := cpu1[i] - cpu0[i]
		frac := float64(used) / float64(idle)
		worst = max(worst, frac)
		fracs = append(fracs, fmt.Sprintf("%s: %v (%.2f%%)", p.Name(), used, 100*frac))
	}
	t.Logf("CPU used by each waiting consumer over %v idle: %s (worst %.2f%%); wake-ups: %v", idle.Round(time.Millisecond), strings.Join(fracs, ", "), 100*worst, wakes(wake0, wake1))
	for i, p := range cons {
		used := cpu1[i] - cpu0[i]
		require.Less(t, float64(used), 0.05*float64(idle),
			"%s (pid %d) used %v of CPU over %v while it waited on an empty Queue: it polls", p.Name(), p.Pid(), used, idle)
	}
	for i, p := range cons {
		// A timer or ticker that runs while nothing happens shows here (a
		// 5 ms ticker: some 200 a second) long before it shows as CPU.
		require.Less(t, wake1[i]-wake0[i], int64(50),
			"%s (pid %d) woke %d times over %v while it waited on an empty Queue", p.Name(), p.Pid(), wake1[i]-wake0[i], idle)
	}
	for _, p := range cons {
		require.True(t, parkedInRetry(st, p.Pid()), "%s still waits in Retry", p.Name())
	}

	putPills(t, st, consumers)
	res := waitResults[queueConsumerResult](t, st, 30*time.Second, "consumers given a pill each", cons)
	for i, r := range res {
		require.Zero(t, r.Processed)
		// One sleep for the wait, a few more for wake-ups of their bucket
		// by the pills' commits before theirs came: a poller sleeps never
		// (or, with a no-op sleep, millions of times).
		require.LessOrEqual(t, r.RetryWaits, uint64(16), "%s: sleeps in Retry", cons[i].Name())
	}
	requireQuiet(t, st)
	require.NoError(t, st.Check())
}

// TestQueueDeadWaiter: a consumer SIGKILLed while it sleeps in Retry on
// an empty Queue leaves nothing behind that blocks anyone: the other
// consumers, woken by the Puts that follow, take every job (the dead
// waiter's waiters bits only cost a wake-up); the dead process holds no
// lock and no snapshot (its slot is idle, quiescent); Recover frees its
// slot; a new consumer takes its place; every job is processed exactly
// once, no retired memory is held back, and Check is clean.
func TestQueueDeadWaiter(t *testing.T) {
	const consumers, before, after = 3, 200, 500
	seed := testSeed(t)
	dir, st := newStore(t)
	setupQueue(t, st)
	cons := make([]*proc, consumers)
	for i := range cons {
		cons[i] = startProc(t, dir, "queue-consumer", i+1, seed, longWaits)
	}
	// Some jobs first, so that every consumer has committed and holds
	// slot state worth recovering; then they all wait on the empty Queue.
	putJobs(t, st, 0, before)
	waitProcessed(t, st, before, 30*time.Second, nil)
	waitParked(t, st, cons...)

	victim := cons[0]
	killed, err := victim.Kill()
	require.NoError(t, err)
	require.True(t, killed, "the victim was running")
	where := killedState(st, victim.Pid())
	t.Logf("killed %s (pid %d): %s", victim.Name(), victim.Pid(), where)
	require.Equal(t, "parked in Retry", where, "the victim died while it slept in Retry")
	var dead []txn.SlotInfo
	for _, s := range layers.Of(st).Engine.Slots() {
		if s.PID == uint32(victim.Pid()) {
			dead = append(dead, s)
			require.False(t, s.Alive)
			require.Equal(t, "idle", s.State, "slot %d of the dead waiter: %+v", s.Slot, s)
			require.False(t, s.Active, "the dead waiter publishes no snapshot: %+v", s)
		}
	}
	require.NotEmpty(t, dead, "the dead waiter's slot, not yet recovered")

	// The survivors take every job, within a stall bound far below the
	// one-minute wait timeout: each Put's commit woke them.
	putJobs(t, st, before, before+after)
	waitProcessed(t, st, before+after, 20*time.Second, nil)
	// The survivors go back to sleep (a waiter publishes a snapshot for a
	// moment while it announces itself): quiet means all of them parked.
	waitParked(t, st, cons[1:]...)

	n, err := st.Recover()
	require.NoError(t, err)
	require.Equal(t, 1, n, "one dead process recovered")
	for _, s := range layers.Of(st).Engine.Slots() {
		require.NotEqual(t, uint32(victim.Pid()), s.PID, "slot %d still owned by the dead waiter: %+v", s.Slot, s)
	}
	requireQuiet(t, st)

	// A new consumer takes the victim's place, then everyone stops.
	cons[0] = startProc(t, dir, "queue-consumer", 1, seed, longWaits, incarnationEnv+"=1")
	waitParked(t, st, cons...)
	putPills(t, st, consumers)
	waitResults[queueConsumerResult](t, st, 30*time.Second, "consumers given a pill each", cons)
	requireQuiet(t, st)
	requireDoneOnce(t, st, before+after)
	_, held := driveReclamation(t, st)
	require.Zero(t, held, "no retired memory held back")
	require.NoError(t, st.Check())
}
