//go:build linux && (amd64 || arm64)

package e2e

// Lost wake-ups across processes. A waiter announces itself (Prepare a
// ticket, set the waiters bit of the lock word, re-check) and sleeps; a
// committer releases the word and, if the bit was set, wakes the bucket.
// If any interleaving of the two lost the wake-up, the waiter would sleep
// until its safety-net timeout, which these tests raise to a minute in
// the workers (SHMSTORE_WAIT_TIMEOUT=1m): a lost wake-up is a stall of a
// minute, not a hiccup of a millisecond. The workers hammer that race
// thousands of times; the parent's watchdog (45 s, for work that takes
// a second or two) fails the test at the first lost wake-up, and every
// worker reports the longest single transaction it saw, which must stay
// far below the minute.
//
//   - TestWakePingPong: two processes pass a ball through one key, each
//     waiting in Retry for its turn (A for odd, B for even);
//   - TestWakeRing: the same with four processes, so that each commit
//     wakes three waiters of which two find it is not their turn and
//     announce themselves again;
//   - TestWakeHotKey: four processes increment one key with GetInt+Set:
//     readers and committers that find its word locked wait for the
//     holder's release (lock waits), and aborted attempts wait for the
//     word they conflicted on.

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
	"github.com/shmstore/shmstore/internal/proctest"
)

const (
	wakeKey      = "ball"
	wakePlayers  = "SHMSTORE_WAKE_PLAYERS"
	wakeRounds   = "SHMSTORE_WAKE_ROUNDS" // turns of each player, or increments of each hot-key worker
	wakeWatchdog = 45 * time.Second
	// wakeStall bounds one transaction of a worker: far below the
	// minute a lost wake-up costs, far above a scheduling delay.
	wakeStall = 30 * time.Second
)

func init() {
	for role, fn := range map[string]func(*shmstore.Store, roleEnvironment) (any, error){
		"wake-player": wakePlayer,
		"wake-hot":    wakeHot,
	} {
		proctest.Register(role, func() int { return runRole(fn) })
	}
}

type wakeResult struct {
	Turns      int           `json:"turns"`       // committed
	Attempts   int           `json:"attempts"`    // runs of the function, over all turns
	RetryWaits uint64        `json:"retry_waits"` // sleeps in Retry
	Longest    time.Duration `json:"longest"`     // the longest Update
	Aborts     uint64        `json:"aborts"`      // of its slots
}

func (r *wakeResult) finish(st *shmstore.Store) {
	r.RetryWaits = layers.Of(st).Engine.RetryWaits()
	for _, s := range layers.Of(st).Engine.Slots() {
		if s.PID == uint32(os.Getpid()) {
			r.Aborts += s.Aborts
		}
	}
}

// wakePlayer is player Worker (0 to n-1) of n: it takes its turn when the
// ball is at a value v with v%n == Worker, by setting it to v+1, and
// waits in Retry otherwise; it stops after its rounds.
func wakePlayer(st *shmstore.Store, w roleEnvironment) (any, error) {
	n, err := w.int(wakePlayers)
	if err != nil {
		return nil, err
	}
	rounds, err := w.int(wakeRounds)
	if err != nil {
		return nil, err
	}
	if _, err := startLine(); err != nil {
		return nil, err
	}
	var res wakeResult
	for res.Turns < int(rounds) {
		start := time.Now()
		err := st.Update(func(tx *shmstore.Tx) error {
			res.Attempts++
			v, err := tx.Root().GetInt(wakeKey)
			if err != nil {
				return err
			}
			if v%n != int64(w.Worker) {
				return tx.Retry()
			}
			if v != n*int64(res.Turns)+int64(w.Worker) {
				return fmt.Errorf("turn %d: the ball is at %d", res.Turns, v)
			}
			return tx.Root().Set(wakeKey, v+1)
		})
		if err != nil {
			return nil, err
		}
		res.Longest = max(res.Longest, time.Since(start))
		res.Turns++
	}
	res.finish(st)
	return res, nil
}

// startLine says "ready" on stdout and returns the line it then reads on
// stdin: the parent's start signal, so that the workers run at once, not
// one after another as they start up. (Not through the store: a lost
// wake-up must show in the work, not in the start.)
func startLine() (string, error) {
	fmt.Println("ready")
	return bufio.NewReader(os.Stdin).ReadString('\n')
}

// wakeHot increments the hot key rounds times, each with GetInt and Set
// in one Update.
func wakeHot(st *shmstore.Store, w roleEnvironment) (any, error) {
	rounds, err := w.int(wakeRounds)
	if err != nil {
		return nil, err
	}
	if _, err := startLine(); err != nil {
		return nil, err
	}
	var res wakeResult
	for res.Turns < int(rounds) {
		start := time.Now()
		err := st.Update(func(tx *shmstore.Tx) error {
			res.Attempts++
			v, err := tx.Root().GetInt(wakeKey)
			if err != nil {
				return err
			}
			return tx.Root().Set(wakeKey, v+1)
		})
		if err != nil {
			return nil, err
		}
		res.Longest = max(res.Longest, time.Since(start))
		res.Turns++
	}
	res.finish(st)
	return res, nil
}

// wakeRun starts the workers (role, numbered 0 to n-1, with a one-minute
// wait timeout), waits for them under the watchdog and returns their
// results; each one's longest Update must be below wakeStall.
func wakeRun(t *testing.T, role string, n, rounds int) ([]wakeResult, time.Duration, waitSamples) {
	t.Helper()
	seed := testSeed(t)
	dir, st := newStore(t)
	require.NoError(t, st.Set(wakeKey, 0))
	ps := make([]*proc, n)
	for i := range ps {
		ps[i] = startProc(t, dir, role, i, seed, longWaits,
			wakePlayers+"="+strconv.Itoa(n), wakeRounds+"="+strconv.Itoa(rounds))
	}
	for _, p := range ps {
		require.Equal(t, "ready", p.Line())
	}
	start := time.Now()
	for _, p := range ps {
		_, err := io.WriteString(p.Stdin(), "go\n")
		require.NoError(t, err)
	}
	stop := sampleWaits(t, st)
	res := waitResults[wakeResult](t, st, wakeWatchdog, role+" workers", ps)
	elapsed := time.Since(start)
	ws := stop()
	t.Logf("sampled every 100µs: %d samples, %d with a slot past the spin into a lock wait, %d with one in a Retry wait",
		ws.Samples, ws.LockWaits, ws.RetryWaits)
	for i, r := range res {
		t.Logf("%s %d: %d turns, %d attempts, %d sleeps in Retry, %d aborts, longest Update %v",
			role, i, r.Turns, r.Attempts, r.RetryWaits, r.Aborts, r.Longest.Round(time.Microsecond))
		require.Equal(t, rounds, r.Turns)
		require.Less(t, r.Longest, wakeStall, "%s %d: one Update took %v: a lost wake-up", role, i, r.Longest)
	}
	v, err := st.GetInt(wakeKey)
	require.NoError(t, err)
	require.EqualValues(t, n*rounds, v, "the key counts every turn")
	requireQuiet(t, st)
	require.NoError(t, st.Check())
	return res, elapsed, ws
}

// waitSamples counts how often a sampler of the slots saw some slot
// waiting: for a lock (WaitOn set during a transaction: waitUnlock past
// its spin) or in Retry.
type waitSamples struct {
	Samples, LockWaits, RetryWaits int
}

// sampleWaits samples the slots until the returned func is called, which
// returns the counts (or the test ends: before its store is closed).
func sampleWaits(t *testing.T, st *shmstore.Store) func() waitSamples {
	var ws waitSamples
	done := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			ws.Samples++
			lock, retry := false, false
			for _, s := range layers.Of(st).Engine.Slots() {
				if s.WaitOn != 0 && s.Active {
					lock = true
				} else if s.WaitOn != 0 {
					retry = true
				}
			}
			if lock {
				ws.LockWaits++
			}
			if retry {
				ws.RetryWaits++
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	stop := func() waitSamples {
		once.Do(func() { close(done) })
		wg.Wait()
		return ws
	}
	t.Cleanup(func() { stop() })
	return stop
}

// wakeRoundsFor is the number of rounds: more without -short.
func wakeRoundsFor(short, long int) int {
	if testing.Short() {
		return short
	}
	return long
}

func TestWakePingPong(t *testing.T) {
	rounds := wakeRoundsFor(20000, 100000)
	res, elapsed, _ := wakeRun(t, "wake-player", 2, rounds)
	var waits uint64
	for _, r := range res {
		waits += r.RetryWaits
	}
	t.Logf("%d rounds of ping-pong in %v (%v a pass), %d sleeps in Retry", rounds, elapsed.Round(time.Millisecond),
		(elapsed / time.Duration(2*rounds)).Round(time.Microsecond), waits)
	require.Positive(t, waits, "the players slept in Retry (the wake-up path ran)")
}

func TestWakeRing(t *testing.T) {
	rounds := wakeRoundsFor(5000, 25000)
	res, elapsed, _ := wakeRun(t, "wake-player", 4, rounds)
	var waits uint64
	for _, r := range res {
		waits += r.RetryWaits
	}
	t.Logf("%d rounds of a 4-process ring in %v, %d sleeps in Retry", rounds, elapsed.Round(time.Millisecond), waits)
	require.Positive(t, waits, "the players slept in Retry (the wake-up path ran)")
}

func TestWakeHotKey(t *testing.T) {
	rounds := wakeRoundsFor(50000, 200000)
	res, elapsed, ws := wakeRun(t, "wake-hot", 4, rounds)
	var attempts int
	var aborts uint64
	for _, r := range res {
		attempts += r.Attempts
		aborts += r.Aborts
	}
	t.Logf("4 processes x %d increments of one key in %v: %d attempts, %d aborts", rounds, elapsed.Round(time.Millisecond), attempts, aborts)
	require.Positive(t, ws.LockWaits, "the sampler saw lock waits past the spin (the parking path ran)")
}
