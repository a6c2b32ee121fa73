//go:build linux && (amd64 || arm64)

package txn

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/handle"
)

// TestTiedVersionsStillValidate: two transactions each read a word the
// other writes, with the clock unmoved (no commit retires): both commits
// would stamp rv+1, so the second must validate and fail (write skew),
// not take TL2's "nothing committed since rv" shortcut.
func TestTiedVersionsStillValidate(t *testing.T) {
	ev := newEnv(t, true)
	cs := ev.cells(t, 2, 1)
	a, b := cs[0], cs[1]
	t1, err := ev.e.Begin(false)
	require.NoError(t, err)
	t2, err := ev.e.Begin(false)
	require.NoError(t, err)
	_, err = read(t1, a)
	require.NoError(t, err)
	_, err = read(t2, b)
	require.NoError(t, err)
	require.NoError(t, t1.Lock(b.lock(), AddrOf(b.h, 0), false))
	require.NoError(t, t1.AddWriter(&setWriter{cells: []cell{b}, vals: []uint64{0}}))
	require.NoError(t, t2.Lock(a.lock(), AddrOf(a.h, 0), false))
	require.NoError(t, t2.AddWriter(&setWriter{cells: []cell{a}, vals: []uint64{0}}))
	require.NoError(t, t1.Commit())
	require.ErrorIs(t, t2.Commit(), ErrConflict, "write skew")
	t2.Rollback()
}

// TestVersionsStayNearTheClock: commits that retire nothing leave the
// clock, and stamp a word written again and again past it, but never
// more than maxDrift past it.
func TestVersionsStayNearTheClock(t *testing.T) {
	ev := newEnv(t, true)
	c := ev.cells(t, 1, 0)[0]
	c0 := ev.e.Clock()
	for i := range 5 * maxDrift {
		require.NoError(t, ev.add([]cell{c}, []int64{1}, nil))
		v, clock := versionOf(c.lock().Load()), ev.e.Clock()
		require.LessOrEqual(t, v, clock+maxDrift, "commit %d", i)
		if i < maxDrift-1 {
			require.Equal(t, c0, clock, "commit %d: the clock is not written", i)
		}
	}
	require.Greater(t, ev.e.Clock(), c0, "moved once the word ran maxDrift ahead")
}

// TestReaderOfManyFreshWordsValidatesAFewTimes: a View that reads n
// words whose versions all run ahead of the clock, each further than the
// one before (as commits that write a word and a hot counter leave
// them), validates freshBeforeAdvance+1 times, not n: it then moves the
// clock past every version and reads the rest as TL2 does.
func TestReaderOfManyFreshWordsValidatesAFewTimes(t *testing.T) {
	ev := newEnv(t, true)
	const n = 200
	cs := ev.cells(t, n, 0)
	hot := ev.cells(t, 1, 0)[0]
	for i := range n {
		require.NoError(t, ev.add([]cell{cs[i], hot}, []int64{1, 1}, nil))
	}
	var validations int
	require.NoError(t, ev.e.Run(true, func(tx *Tx) error {
		for _, c := range cs {
			if _, err := read(tx, c); err != nil {
				return err
			}
		}
		validations = tx.validations
		return nil
	}))
	require.LessOrEqual(t, validations, freshBeforeAdvance+1)
	for _, c := range cs {
		require.LessOrEqual(t, versionOf(c.lock().Load()), ev.e.Clock(), "the clock is past every version read")
	}
}

// TestSumsHoldWithVersionsPastTheClock: transfers between words (a tenth
// of them retiring a block, which moves the clock) and blind rewrites
// (a word locked and stored again unread, which pushes its version past
// the clock) run beside readers that sum every word in a random order,
// read-only and read-write: every sum a transaction sees is the total.
func TestSumsHoldWithVersionsPastTheClock(t *testing.T) {
	ev := newEnv(t, true)
	const n, workers, total = 12, 3, 12 * 1000
	rounds := 4000
	if testing.Short() {
		rounds = 1000
	}
	cs := ev.cells(t, n, 1000)
	victims := ev.cells(t, workers*rounds/10+10, 0)
	var vmu sync.Mutex
	vi := 0
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 11))
			for r := range rounds {
				i, j := rng.IntN(n), rng.IntN(n)
				if i == j { // a blind rewrite of the same value
					err := ev.e.Run(false, func(tx *Tx) error {
						if err := tx.Lock(cs[i].lock(), AddrOf(cs[i].h, 0), false); err != nil {
							return err
						}
						return tx.AddWriter(&sameWriter{cs[i]})
					})
					if err != nil {
						errs <- err
						return
					}
					continue
				}
				var retire []handle.Handle
				if r%10 == 0 {
					vmu.Lock()
					retire = []handle.Handle{victims[vi].h}
					vi++
					vmu.Unlock()
				}
				amt := int64(rng.IntN(50))
				if err := ev.add([]cell{cs[i], cs[j]}, []int64{-amt, amt}, retire); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	stop := make(chan struct{})
	var rwg sync.WaitGroup
	for g := range 2 {
		rwg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 99))
			for {
				select {
				case <-stop:
					return
				default:
				}
				perm := rng.Perm(n)
				err := ev.e.Run(g == 0, func(tx *Tx) error {
					var s uint64
					for _, k := range perm {
						v, err := read(tx, cs[k])
						if err != nil {
							return err
						}
						s += v
					}
					if s != total {
						return fmt.Errorf("a sum of %d, not %d", s, total)
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	rwg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// sameWriter stores a cell's value again, unread (a blind rewrite).
type sameWriter struct{ c cell }

func (w *sameWriter) Prepare(tx *Tx) error {
	return tx.Store(w.c.val(), AddrOf(w.c.h, 8), *w.c.val())
}
