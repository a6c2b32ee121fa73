//go:build linux && (amd64 || arm64)

package e2e

// The bank (DESIGN.md section 10): worker processes make random transfers
// among accounts while another process sums them in read-only
// transactions; every sum it sees is the starting total. Every 32nd sum
// keeps its snapshot a little longer (a long reader), so that the
// workers' retire rings fill up and get merged. With the killer, the test
// SIGKILLs a random worker every ~200 ms and starts a new one in its
// place: nothing is lost, no lock stays held, nothing leaks.
//
// TestBankInProcess is the same idea with goroutines of one process, for
// the race detector.

import (
	"errors"
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
)

const (
	numAccounts    = 100
	startBalance   = 1000
	bankTotal      = numAccounts * startBalance
	bankWorkers    = 4
	accountsKey    = "accounts"
	transfersKey   = "transfers" // Dict: worker number -> Counter of its committed transfers
	untilEnv       = "SHMSTORE_TEST_UNTIL"
	incarnationEnv = "SHMSTORE_TEST_INCARNATION"
	// bankDurationEnv overrides how long the bank runs (default 10 s, 3 s
	// with -short).
	bankDurationEnv = "SHMSTORE_BANK_DURATION"
	// bankKillEnv overrides the mean time between kills (default 200 ms).
	bankKillEnv = "SHMSTORE_BANK_KILL_EVERY"
	// bankHoldEnv overrides how long the summer keeps every 32nd View
	// open after its reads (default 2 ms): a long reader, which holds
	// reclamation back, so that the workers' retire rings fill up and
	// get merged (under kills too).
	bankHoldEnv     = "SHMSTORE_BANK_HOLD"
	bankHoldEvery   = 32
	bankHoldDefault = 2 * time.Millisecond
)

var errNoFunds = errors.New("insufficient funds")

type bankWorkerResult struct {
	Worker      int   `json:"worker"`
	Incarnation int   `json:"incarnation"`
	Transfers   int64 `json:"transfers"` // committed
	NoFunds     int64 `json:"no_funds"`  // aborted: the payer had too little
}

// bankWorker makes random transfers until the deadline. Each transfer is
// one Update that moves an amount between two accounts and adds one to the
// worker's transfer Counter.
func bankWorker(st *shmstore.Store, w roleEnvironment) (any, error) {
	until, err := w.int(untilEnv)
	if err != nil {
		return nil, err
	}
	inc, err := w.int(incarnationEnv)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(w.Seed, uint64(w.Worker)<<32|uint64(inc)))
	res := bankWorkerResult{Worker: w.Worker, Incarnation: int(inc)}
	for time.Now().UnixNano() < until {
		from := rng.IntN(numAccounts)
		to := rng.IntN(numAccounts - 1)
		if to >= from {
			to++
		}
		amount := int64(1 + rng.IntN(100))
		err := st.Update(func(tx *shmstore.Tx) error {
			acc, err := tx.Root().GetDict(accountsKey)
			if err != nil {
				return err
			}
			fb, err := acc.GetInt(from)
			if err != nil {
				return err
			}
			if fb < amount {
				return errNoFunds
			}
			tb, err := acc.GetInt(to)
			if err != nil {
				return err
			}
			if err := acc.Set(from, fb-amount); err != nil {
				return err
			}
			if err := acc.Set(to, tb+amount); err != nil {
				return err
			}
			tr, err := tx.Root().GetDict(transfersKey)
			if err != nil {
				return err
			}
			c, err := tr.Counter(w.Worker)
			if err != nil {
				return err
			}
			return c.AddBlind(1)
		})
		switch {
		case errors.Is(err, errNoFunds):
			res.NoFunds++
		case err != nil:
			return nil, fmt.Errorf("transfer %d from %d to %d: %w", amount, from, to, err)
		default:
			res.Transfers++
		}
	}
	return res, nil
}

type bankSummerResult struct {
	Aborts   uint64   `json:"aborts"`       // of the summer's Views (conflicts: re-run)
	MaxRuns  int      `json:"max_attempts"` // the most attempts one View took
	Checks   int64    `json:"checks"`
	Bad      int64    `json:"bad"`
	Examples []string `json:"examples,omitempty"`
}

// bankSummer sums every account in read-only transactions until the
// deadline, alternately through Range and key by key, and counts the sums
// that are not the starting total.
func bankSummer(st *shmstore.Store, w roleEnvironment) (any, error) {
	until, err := w.int(untilEnv)
	if err != nil {
		return nil, err
	}
	hold := bankHoldDefault
	if s := os.Getenv(bankHoldEnv); s != "" {
		if hold, err = time.ParseDuration(s); err != nil {
			return nil, fmt.Errorf("%s: %w", bankHoldEnv, err)
		}
	}
	var res bankSummerResult
	for time.Now().UnixNano() < until {
		byRange := res.Checks%2 == 0
		long := res.Checks%bankHoldEvery == bankHoldEvery-1
		var sum int64
		var n, length, runs int
		err := st.View(func(tx *shmstore.Tx) error {
			sum, n = 0, 0
			runs++
			acc, err := tx.Root().GetDict(accountsKey)
			if err != nil {
				return err
			}
			if length, err = acc.Len(); err != nil {
				return err
			}
			if long {
				defer time.Sleep(hold) // after the reads, with the snapshot still published
			}
			if byRange {
				var verr error
				err := acc.Range(func(k, v shmstore.Value) bool {
					var b int64
					if b, verr = v.AsInt(); verr != nil {
						return false
					}
					sum += b
					n++
					return true
				})
				return errors.Join(err, verr)
			}
			for i := 0; i < numAccounts; i++ {
				b, err := acc.GetInt(i)
				if err != nil {
					return err
				}
				sum += b
				n++
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("sum #%d: %w", res.Checks, err)
		}
		res.Checks++
		res.MaxRuns = max(res.MaxRuns, runs)
		if sum != bankTotal || n != numAccounts || length != numAccounts {
			res.Bad++
			if len(res.Examples) < 10 {
				res.Examples = append(res.Examples, fmt.Sprintf("check #%d (range %v): sum %d over %d accounts, Len %d",
					res.Checks, byRange, sum, n, length))
			}
		}
	}
	for _, s := range layers.Of(st).Engine.Slots() {
		if s.PID == uint32(os.Getpid()) {
			res.Aborts += s.Aborts
		}
	}
	return res, nil
}

// setupBank makes the accounts and the transfer Counters.
func setupBank(t *testing.T, st *shmstore.Store) {
	t.Helper()
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		acc, err := tx.Root().Dict(accountsKey)
		if err != nil {
			return err
		}
		for i := 0; i < numAccounts; i++ {
			if err := acc.Set(i, startBalance); err != nil {
				return err
			}
		}
		tr, err := tx.Root().Dict(transfersKey)
		if err != nil {
			return err
		}
		for w := 1; w <= bankWorkers; w++ {
			if _, err := tr.Counter(w); err != nil {
				return err
			}
		}
		return nil
	}))
}

// touchAccounts rewrites every account with its own value in one Update
// (which locks every stripe that holds one at commit) and returns the sum.
func touchAccounts(st *shmstore.Store) (int64, error) {
	var sum int64
	err := st.Update(func(tx *shmstore.Tx) error {
		sum = 0
		acc, err := tx.Root().GetDict(accountsKey)
		if err != nil {
			return err
		}
		for i := 0; i < numAccounts; i++ {
			b, err := acc.GetInt(i)
			if err != nil {
				return err
			}
			sum += b
			if err := acc.Set(i, b); err != nil {
				return err
			}
		}
		return nil
	})
	return sum, err
}

// bankSums sums the accounts by Range and key by key, and reads the
// transfer Counters.
func bankSums(t *testing.T, st *shmstore.Store) (byRange, byKey int64, counters map[int]int64) {
	t.Helper()
	counters = map[int]int64{}
	require.NoError(t, st.View(func(tx *shmstore.Tx) error {
		byRange, byKey = 0, 0
		acc, err := tx.Root().GetDict(accountsKey)
		if err != nil {
			return err
		}
		n, err := acc.Len()
		if err != nil {
			return err
		}
		if n != numAccounts {
			return fmt.Errorf("%d accounts, want %d", n, numAccounts)
		}
		if err := acc.Range(func(k, v shmstore.Value) bool {
			b, _ := v.AsInt()
			byRange += b
			return true
		}); err != nil {
			return err
		}
		for i := 0; i < numAccounts; i++ {
			b, err := acc.GetInt(i)
			if err != nil {
				return err
			}
			if b < 0 {
				return fmt.Errorf("account %d has %d", i, b)
			}
			byKey += b
		}
		tr, err := tx.Root().GetDict(transfersKey)
		if err != nil {
			return err
		}
		for w := 1; w <= bankWorkers; w++ {
			ctr, err := tr.Counter(w) // it exists: only a read
			if err != nil {
				return fmt.Errorf("counter %d: %w", w, err)
			}
			if counters[w], err = ctr.Get(); err != nil {
				return err
			}
		}
		return nil
	}))
	return byRange, byKey, counters
}

func bankDuration(t *testing.T) time.Duration {
	def := 10 * time.Second
	if testing.Short() {
		def = 3 * time.Second
	}
	d := envDuration(t, bankDurationEnv, def)
	t.Logf("bank runs %v (%s)", d, bankDurationEnv)
	return d
}

// TestBank: 4 processes transfer, a 5th sums; every sum is the total.
func TestBank(t *testing.T) { testBank(t, false) }

// TestBankKill: the same while the test SIGKILLs a random worker every
// ~200 ms and starts a new one: the total holds, the store checks clean,
// no lock stays held, nothing leaks.
func TestBankKill(t *testing.T) { testBank(t, true) }

func testBank(t *testing.T, kill bool) {
	seed := testSeed(t)
	dur := bankDuration(t)
	dir, st := newStore(t)
	setupBank(t, st)
	// The baseline: the same live data, and this process's slot in the
	// state it will be in at the end (touchAccounts grows its redo log).
	sum, err := touchAccounts(st)
	require.NoError(t, err)
	require.EqualValues(t, bankTotal, sum)
	used0, held0 := driveReclamation(t, st)
	require.Zero(t, held0)
	stats0 := layers.Of(st).Alloc.Stats()
	t.Logf("baseline: %d bytes used", used0)

	start := time.Now()
	until := start.Add(dur)
	untilS := untilEnv + "=" + strconv.FormatInt(until.UnixNano(), 10)
	summer := startProc(t, dir, "bank-summer", 0, seed, untilS, incarnationEnv+"=0")
	workers := make([]*proc, bankWorkers)
	incarnations := make([]int, bankWorkers)
	for i := range workers {
		workers[i] = startProc(t, dir, "bank-worker", i+1, seed, untilS, incarnationEnv+"=0")
	}

	kills, attachedKills := 0, 0
	if kill {
		rng := rand.New(rand.NewPCG(seed, 0x6b696c6c))
		every := envDuration(t, bankKillEnv, 200*time.Millisecond)
		for {
			time.Sleep(every/2 + time.Duration(rng.Int64N(int64(every))))
			if time.Until(until) < 300*time.Millisecond {
				break
			}
			i := rng.IntN(bankWorkers)
			p := workers[i]
			wasRunning, err := p.Kill()
			require.NoError(t, err)
			require.True(t, wasRunning, "worker %d (incarnation %d, pid %d) exited before the deadline: %v\nstderr:\n%s",
				i+1, incarnations[i], p.Pid(), p.Wait(), p.Stderr())
			kills++
			if strings.Contains(p.Stderr(), attachedMark) { // reaped: its output is complete
				attachedKills++
			}
			incarnations[i]++
			workers[i] = startProc(t, dir, "bank-worker", i+1, seed, untilS, incarnationEnv+"="+strconv.Itoa(incarnations[i]))
		}
	}

	var sres bankSummerResult
	summer.Result(&sres)
	results := make([]bankWorkerResult, bankWorkers)
	var transfers, noFunds int64
	for i, p := range workers {
		p.Result(&results[i])
		transfers += results[i].Transfers
		noFunds += results[i].NoFunds
	}
	elapsed := time.Since(start)
	t.Logf("%v: %d sums checked by the summer (%d attempts aborted, at most %d attempts for one sum), %d bad; last incarnations: %d transfers, %d refused for funds; %d workers killed",
		elapsed.Round(time.Millisecond), sres.Checks, sres.Aborts, sres.MaxRuns, sres.Bad, transfers, noFunds, kills)
	require.Positive(t, sres.Checks, "the summer checked sums")
	require.Zero(t, sres.Bad, "every sum the summer saw is %d: %v", bankTotal, sres.Examples)

	requireQuiet(t, st)
	byRange, byKey, counters := bankSums(t, st)
	t.Logf("transfer counters in the store: %v", counters)
	require.EqualValues(t, bankTotal, byRange, "total by Range")
	require.EqualValues(t, bankTotal, byKey, "total key by key")
	for i, r := range results {
		w := i + 1
		require.Positive(t, counters[w], "worker %d made progress", w)
		if kill {
			require.GreaterOrEqual(t, counters[w], r.Transfers, "worker %d: its counter holds the transfers of every incarnation", w)
		} else {
			require.Positive(t, r.Transfers, "worker %d made progress", w)
			require.Equal(t, r.Transfers, counters[w], "worker %d: its counter counts exactly its committed transfers", w)
		}
	}
	if kill {
		require.Positive(t, kills)
		// Each killed worker that had attached was recovered exactly once
		// (by a new worker's Open, by a waiter that found its lock, or by
		// requireQuiet); one killed before it attached needs none, and one
		// killed between attaching and saying so may or may not.
		rec := layers.Of(st).Shm.Header().Recovered.Load()
		t.Logf("%d killed, %d of them known to have attached, %d recovered", kills, attachedKills, rec)
		require.GreaterOrEqual(t, rec, uint64(attachedKills), "recoveries")
		require.LessOrEqual(t, rec, uint64(kills), "recoveries")
	}

	// No lock stays held: one Update that locks every account's stripe
	// completes (the guard is for a hang, not for speed).
	within(t, time.Minute, "an Update touching every account", func() error {
		sum, err := touchAccounts(st)
		if err == nil && sum != bankTotal {
			err = fmt.Errorf("sum %d, want %d", sum, bankTotal)
		}
		return err
	})
	requireQuiet(t, st)

	// Nothing leaks: with reclamation driven, the store uses what it used
	// at the start for the same live data.
	used1, held1 := driveReclamation(t, st)
	t.Logf("end: %d bytes used (baseline %d), %d retire-ring entries held", used1, used0, held1)
	require.Zero(t, held1, "no retired memory is held back on a quiet store")
	if used1 != used0 {
		t.Logf("blocks in use by size class, baseline -> end:\n%s", classDiff(stats0, layers.Of(st).Alloc.Stats()))
		t.Logf("check: %v", st.Check())
		t.Logf("unaccounted blocks:\n%s", describeLeaks(st))
	}
	require.Equal(t, used0, used1, "used bytes back to the baseline for the same live data")
	require.NoError(t, st.Check())
}

// TestBankInProcess: goroutines of one process share the store: transfers
// among a few hot accounts that also add to a Counter, read-only sums,
// single-op Adds and Gets, and short-lived sub-Dicts (made, filled,
// deleted: their reclamation runs finalizers). Run it with -race: it is
// the race detector's view of txn and objects (the Go-side state: the
// engine's idle list, transactions reused across slots, overlays).
func TestBankInProcess(t *testing.T) {
	seed := testSeed(t)
	_, st := newStore(t)
	const (
		hot     = 8
		goros   = 8
		perHot  = 1000
		hotDict = "hot"
	)
	hk := func(i int) string { return fmt.Sprintf("a%d", i) }
	iters := 5000
	if testing.Short() {
		iters = 1000
	}
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		d, err := tx.Root().Dict(hotDict)
		if err != nil {
			return err
		}
		for i := 0; i < hot; i++ {
			if err := d.Set(hk(i), perHot); err != nil {
				return err
			}
		}
		_, err = tx.Root().Counter("hits")
		return err
	}))
	used0, _ := driveReclamation(t, st)

	type tally struct{ transfers, adds, sums, bad int64 }
	tallies := make([]tally, goros)
	errs := make(chan error, goros)
	start := time.Now()
	for g := 0; g < goros; g++ {
		go func() {
			errs <- func() error {
				rng := rand.New(rand.NewPCG(seed, uint64(g)))
				tl := &tallies[g]
				for i := 0; i < iters; i++ {
					switch r := rng.IntN(100); {
					case r < 50: // a transfer that also counts itself
						from, to := rng.IntN(hot), rng.IntN(hot)
						amount := int64(rng.IntN(50))
						err := st.Update(func(tx *shmstore.Tx) error {
							d, err := tx.Root().GetDict(hotDict)
							if err != nil {
								return err
							}
							fb, err := d.GetInt(hk(from))
							if err != nil {
								return err
							}
							if err := d.Set(hk(from), fb-amount); err != nil {
								return err
							}
							tb, err := d.GetInt(hk(to)) // sees the write above when from == to
							if err != nil {
								return err
							}
							if err := d.Set(hk(to), tb+amount); err != nil {
								return err
							}
							c, err := tx.Root().Counter("hits")
							if err != nil {
								return err
							}
							return c.AddBlind(1)
						})
						if err != nil {
							return fmt.Errorf("transfer: %w", err)
						}
						tl.transfers++
					case r < 75: // a read-only sum
						var sum int64
						err := st.View(func(tx *shmstore.Tx) error {
							sum = 0
							d, err := tx.Root().GetDict(hotDict)
							if err != nil {
								return err
							}
							return d.Range(func(k, v shmstore.Value) bool {
								n, _ := v.AsInt()
								sum += n
								return true
							})
						})
						if err != nil {
							return fmt.Errorf("sum: %w", err)
						}
						tl.sums++
						if sum != hot*perHot {
							tl.bad++
						}
					case r < 90: // single operations
						if _, err := st.Add(fmt.Sprintf("adds/g%d", g), 1); err != nil {
							return fmt.Errorf("add: %w", err)
						}
						tl.adds++
						if _, err := st.GetInt(hotDict + "/" + hk(rng.IntN(hot))); err != nil {
							return fmt.Errorf("get: %w", err)
						}
					default: // a short-lived sub-Dict
						key := fmt.Sprintf("tmp%d", g)
						if err := st.Update(func(tx *shmstore.Tx) error {
							d, err := tx.Root().Dict(key)
							if err != nil {
								return err
							}
							for j := 0; j < 10; j++ {
								if err := d.Set(j, fmt.Sprintf("value %d of %s", j, key)); err != nil {
									return err
								}
							}
							return nil
						}); err != nil {
							return fmt.Errorf("make %s: %w", key, err)
						}
						if err := st.Delete(key); err != nil {
							return fmt.Errorf("delete %s: %w", key, err)
						}
					}
				}
				return nil
			}()
		}()
	}
	for g := 0; g < goros; g++ {
		require.NoError(t, <-errs)
	}
	var total tally
	for g, tl := range tallies {
		total.transfers += tl.transfers
		total.adds += tl.adds
		total.sums += tl.sums
		total.bad += tl.bad
		// A Counter reads through Export (GetInt wants an Int).
		n, err := st.Export(fmt.Sprintf("adds/g%d", g))
		if tl.adds == 0 {
			require.ErrorIs(t, err, shmstore.ErrKeyNotFound)
			continue
		}
		require.NoError(t, err)
		require.EqualValues(t, tl.adds, n, "goroutine %d's Counter", g)
	}
	t.Logf("%d goroutines, %v: %d transfers, %d sums (%d bad), %d adds",
		goros, time.Since(start).Round(time.Millisecond), total.transfers, total.sums, total.bad, total.adds)
	require.Zero(t, total.bad, "every sum is the total")
	hits, err := st.Export("hits")
	require.NoError(t, err)
	require.EqualValues(t, total.transfers, hits, "the Counter counts every committed transfer")
	var sum int64
	require.NoError(t, st.View(func(tx *shmstore.Tx) error {
		sum = 0
		d, err := tx.Root().GetDict(hotDict)
		if err != nil {
			return err
		}
		for i := 0; i < hot; i++ {
			n, err := d.GetInt(hk(i))
			if err != nil {
				return err
			}
			sum += n
		}
		return nil
	}))
	require.EqualValues(t, hot*perHot, sum)
	// What is left: the hot accounts, hits, and the adds Dict of Counters.
	require.NoError(t, st.Delete("adds"))
	require.NoError(t, st.Check())
	// Every slot the goroutines used is idle in the engine's pool now;
	// their retire rings are collected all the same (adopted by this
	// goroutine's collections: see TestReclamationPooledSlot).
	used1, held := driveReclamation(t, st)
	t.Logf("end: %d bytes used (baseline %d), %d retired entries held", used1, used0, held)
	require.Zero(t, held)
	require.Equal(t, used0, used1, "the sub-Dicts and the adds are reclaimed")
	require.NoError(t, st.Check())
}
