//go:build linux && (amd64 || arm64)

package e2e

// The two mistakes of everyday use that once gave wrong answers without
// an error, with real processes.
//
// The transfer storm with careless readers: workers move money among four
// accounts while other processes read all four and ignore every error
// (`b, _ := d.GetInt("b")`, a common mistake). A read that failed dooms
// its attempt, so View and Update run the function again instead of
// reporting success: every sum a careless function computed in a
// transaction that returned nil is the exact total, and the careless
// Update, which moves money with the balances it read, never breaks the
// total either.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/proctest"
)

const (
	stormKey     = "storm"
	stormTotal   = 4 * 1000
	stormMovers  = 2
	stormReaders = 2
)

var stormAccounts = []string{"a0", "a1", "a2", "a3"}

func init() {
	for role, fn := range map[string]func(*shmstore.Store, roleEnvironment) (any, error){
		"storm-mover":    stormMover,
		"storm-careless": stormCareless,
		"kept-object":    keptObject,
	} {
		proctest.Register(role, func() int { return runRole(fn) })
	}
}

// keptResult is what a process saw when it used a Dict after its
// transaction: the errors of a write and a read through it.
type keptResult struct {
	SetErr, GetErr       string
	SetClosed, GetClosed bool
}

// keptObject keeps the Dict "kept" from an Update and, after it returned,
// writes and reads through it.
func keptObject(st *shmstore.Store, _ roleEnvironment) (any, error) {
	var d shmstore.Dict
	if err := st.Update(func(tx *shmstore.Tx) error {
		var err error
		d, err = tx.Root().GetDict("kept")
		return err
	}); err != nil {
		return nil, err
	}
	var r keptResult
	err := d.Set("x", 5)
	r.SetClosed = errors.Is(err, shmstore.ErrTxClosed)
	if err != nil {
		r.SetErr = err.Error()
	}
	_, err = d.GetInt("x")
	r.GetClosed = errors.Is(err, shmstore.ErrTxClosed)
	if err != nil {
		r.GetErr = err.Error()
	}
	return r, nil
}

// TestKeptObjectFailsInAnotherProcess: a Dict used after its transaction
// fails with ErrTxClosed, and its write reaches nobody (it once returned
// nil and the write was silently dropped).
func TestKeptObjectFailsInAnotherProcess(t *testing.T) {
	dir, st := newStore(t)
	require.NoError(t, st.Set("kept/x", 1))
	p := startProc(t, dir, "kept-object", 0, testSeed(t))
	var r keptResult
	p.Result(&r)
	require.True(t, r.SetClosed, "Set through a kept Dict: %q, want ErrTxClosed", r.SetErr)
	require.True(t, r.GetClosed, "Get through a kept Dict: %q, want ErrTxClosed", r.GetErr)
	x, err := st.GetInt("kept/x")
	require.NoError(t, err)
	require.EqualValues(t, 1, x)
	require.NoError(t, st.Check())
}

// stormMover makes careful transfers between random accounts until the
// deadline.
func stormMover(st *shmstore.Store, w roleEnvironment) (any, error) {
	until, err := w.int(untilEnv)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(w.Seed, uint64(w.Worker)))
	n := 0
	for ; time.Now().UnixNano() < until; n++ {
		from, to := stormAccounts[rng.IntN(4)], stormAccounts[rng.IntN(4)]
		err := st.Update(func(tx *shmstore.Tx) error {
			d, err := tx.Root().GetDict(stormKey)
			if err != nil {
				return err
			}
			fb, err := d.GetInt(from)
			if err != nil {
				return err
			}
			tb, err := d.GetInt(to)
			if err != nil {
				return err
			}
			if from == to {
				return nil
			}
			if err := d.Set(from, fb-7); err != nil {
				return err
			}
			return d.Set(to, tb+7)
		})
		if err != nil {
			return nil, err
		}
	}
	return n, nil
}

// stormResult is what a careless reader saw.
type stormResult struct {
	Views, Updates     int // transactions that returned nil
	BadViews           int // ... whose function summed something else than the total
	BadUpdates         int
	ViewRuns, UpdRuns  int // runs of the functions (more than the transactions: re-runs)
	ViewErrs, UpdErrs  int // transactions that returned an error
	LastErr            string
	IgnoredReadErrors  int // reads whose error the functions ignored
	UpdateSumsReturned int
}

// stormCareless reads the four accounts ignoring every error, in View and
// in Update (which also moves 1 from a0 to a3 with what it read).
func stormCareless(st *shmstore.Store, w roleEnvironment) (any, error) {
	until, err := w.int(untilEnv)
	if err != nil {
		return nil, err
	}
	var r stormResult
	sum := func(tx *shmstore.Tx) (int64, []int64) {
		d, _ := tx.Root().GetDict(stormKey)
		var s int64
		bal := make([]int64, len(stormAccounts))
		for i, k := range stormAccounts {
			b, err := d.GetInt(k) // the mistake: the error is ignored
			if err != nil {
				r.IgnoredReadErrors++
			}
			bal[i] = b
			s += b
		}
		return s, bal
	}
	for time.Now().UnixNano() < until {
		var seen int64
		err := st.View(func(tx *shmstore.Tx) error {
			r.ViewRuns++
			seen, _ = sum(tx)
			return nil
		})
		if err != nil {
			r.ViewErrs++
			r.LastErr = err.Error()
		} else {
			r.Views++
			if seen != stormTotal {
				r.BadViews++
			}
		}
		err = st.Update(func(tx *shmstore.Tx) error {
			r.UpdRuns++
			var bal []int64
			seen, bal = sum(tx)
			d, _ := tx.Root().GetDict(stormKey)
			_ = d.Set("a0", bal[0]-1) // with balances that may not exist
			_ = d.Set("a3", bal[3]+1)
			return nil
		})
		if err != nil {
			r.UpdErrs++
			r.LastErr = err.Error()
		} else {
			r.Updates++
			if seen != stormTotal {
				r.BadUpdates++
			}
		}
	}
	return r, nil
}

func TestCarelessReadersSeeOnlyExactSums(t *testing.T) {
	dir, st := newStore(t)
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		d, err := tx.Root().Dict(stormKey)
		if err != nil {
			return err
		}
		for _, k := range stormAccounts {
			if err := d.Set(k, stormTotal/len(stormAccounts)); err != nil {
				return err
			}
		}
		return nil
	}))
	dur := 4 * time.Second
	if testing.Short() {
		dur = 2 * time.Second
	}
	seed := testSeed(t)
	until := untilEnv + "=" + strconv.FormatInt(time.Now().Add(dur).UnixNano(), 10)
	var movers, readers []*proc
	for i := range stormMovers {
		movers = append(movers, startProc(t, dir, "storm-mover", i, seed, until))
	}
	for i := range stormReaders {
		readers = append(readers, startProc(t, dir, "storm-careless", i, seed, until))
	}
	for _, p := range movers {
		var n int
		p.Result(&n)
		require.Positive(t, n, "mover %s made transfers", p.Name())
	}
	var total stormResult
	for _, p := range readers {
		var r stormResult
		p.Result(&r)
		t.Logf("careless reader %s: %+v", p.Name(), r)
		require.Zero(t, r.ViewErrs+r.UpdErrs, "careless transactions fail only with the store's errors: %s", r.LastErr)
		total.Views += r.Views
		total.Updates += r.Updates
		total.BadViews += r.BadViews
		total.BadUpdates += r.BadUpdates
		total.ViewRuns += r.ViewRuns
		total.UpdRuns += r.UpdRuns
		total.IgnoredReadErrors += r.IgnoredReadErrors
	}
	require.Positive(t, total.Views)
	require.Positive(t, total.Updates)
	require.Positive(t, total.IgnoredReadErrors, "the storm made reads fail (else this test tests nothing): run it longer")
	require.Zero(t, total.BadViews, "a View returned nil after its function summed a state that never existed")
	require.Zero(t, total.BadUpdates, "an Update returned nil after its function summed a state that never existed")
	var sum int64
	require.NoError(t, st.View(func(tx *shmstore.Tx) error {
		d, err := tx.Root().GetDict(stormKey)
		if err != nil {
			return err
		}
		sum = 0
		for _, k := range stormAccounts {
			b, err := d.GetInt(k)
			if err != nil {
				return err
			}
			sum += b
		}
		return nil
	}))
	require.EqualValues(t, stormTotal, sum, "careless Updates committed with balances that never existed")
	require.NoError(t, st.Check())
	fmt.Fprintf(testWriter{t}, "%d careless Views, %d careless Updates (%d and %d runs), %d ignored read errors: all exact\n",
		total.Views, total.Updates, total.ViewRuns, total.UpdRuns, total.IgnoredReadErrors)
}

// testWriter writes to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
