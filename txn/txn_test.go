//go:build linux && (amd64 || arm64)

package txn

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/quick"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/reclaim"
	"github.com/shmstore/shmstore/shm"
	"github.com/shmstore/shmstore/shm/shmtest"
)

type env struct {
	st *shm.Store
	a  *alloc.Allocator
	r  *reclaim.Reclaimer
	e  *Engine
}

func newEnv(t *testing.T, closeAtEnd bool) *env {
	t.Helper()
	return newEnvWith(t, shm.Options{RegionSize: 8 << 20, MaxSize: 64 << 20}, closeAtEnd)
}

// newEnvWith is newEnv on a store of the sizes o gives.
func newEnvWith(t *testing.T, o shm.Options, closeAtEnd bool) *env {
	t.Helper()
	o.Dir = shmtest.Dir(t)
	st, err := shm.Open("t", o)
	require.NoError(t, err)
	a, err := alloc.New(st)
	require.NoError(t, err)
	r, err := reclaim.New(st, a)
	require.NoError(t, err)
	ev := &env{st: st, a: a, r: r, e: New(st, a, r)}
	if closeAtEnd {
		t.Cleanup(func() {
			require.NoError(t, ev.e.Close())
			require.NoError(t, st.Close())
		})
	}
	return ev
}

// cell is a test object: a block holding a lock word and one value.
type cell struct {
	h handle.Handle
	p unsafe.Pointer
}

func (c cell) lock() *LockWord { return (*LockWord)(c.p) }
func (c cell) val() *uint64    { return (*uint64)(unsafe.Add(c.p, 8)) }

func (ev *env) cells(t *testing.T, n int, v uint64) []cell {
	t.Helper()
	var cs []cell
	require.NoError(t, ev.e.WithTx(func(tx *Tx) error {
		for range n {
			h, b, err := tx.Alloc(16)
			if err != nil {
				return err
			}
			clear(b)
			c := cell{h, unsafe.Pointer(&b[0])}
			*c.val() = v
			cs = append(cs, c)
		}
		tx.heap.ForgetLog()
		return nil
	}))
	return cs
}

// read reads a cell in tx.
func read(tx *Tx, c cell) (uint64, error) {
	a := AddrOf(c.h, 0)
	for {
		w, err := tx.ReadBegin(c.lock(), a)
		if err != nil {
			return 0, err
		}
		v := atomic.LoadUint64(c.val())
		if tx.ReadEnd(c.lock(), a, w) {
			return v, nil
		}
	}
}

// setWriter stores new values into cells at commit and retires blocks.
type setWriter struct {
	cells  []cell
	vals   []uint64
	retire []handle.Handle
}

func (w *setWriter) Prepare(tx *Tx) error {
	for i, c := range w.cells {
		if err := tx.Store(c.val(), AddrOf(c.h, 8), w.vals[i]); err != nil {
			return err
		}
	}
	for _, h := range w.retire {
		tx.Retire(h, reclaim.KindBlock)
	}
	return nil
}

// add runs a transaction that reads the cells and adds d[i] to cell i.
func (ev *env) add(cs []cell, d []int64, retire []handle.Handle) error {
	return ev.e.Run(false, func(tx *Tx) error {
		w := &setWriter{cells: cs, retire: retire}
		for i, c := range cs {
			v, err := read(tx, c)
			if err != nil {
				return err
			}
			w.vals = append(w.vals, uint64(int64(v)+d[i]))
			if err := tx.Lock(c.lock(), AddrOf(c.h, 0), false); err != nil {
				return err
			}
		}
		return tx.AddWriter(w)
	})
}

func TestLockWordEncoding(t *testing.T) {
	f := func(v uint64, slot uint16) bool {
		v &= MaxVersion
		w := lockedWord(v, int(slot))
		u := unlockedWord(v)
		return isLocked(w) && !isLocked(u) && versionOf(w) == v && versionOf(u) == v &&
			ownerOf(w) == int(slot) && w&waitersBit == 0 && versionOf(w|waitersBit) == v
	}
	require.NoError(t, quick.Check(f, nil))
}

func TestTransfersKeepTheSum(t *testing.T) {
	ev := newEnv(t, true)
	const n, workers, rounds = 8, 6, 300
	cs := ev.cells(t, n, 1000)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range rounds {
				i, j := rng.IntN(n), rng.IntN(n)
				if i == j {
					continue
				}
				amt := int64(rng.IntN(50))
				if err := ev.add([]cell{cs[i], cs[j]}, []int64{-amt, amt}, nil); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	// A reader sums all cells in read-only transactions meanwhile.
	stop := make(chan struct{})
	sums := 0
	var rerr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for { // at least one sum, then until the writers stop
			rerr = ev.e.Run(true, func(tx *Tx) error {
				s := uint64(0)
				for _, c := range cs {
					v, err := read(tx, c)
					if err != nil {
						return err
					}
					s += v
				}
				if s != n*1000 {
					return fmt.Errorf("sum %d", s)
				}
				return nil
			})
			if rerr != nil {
				return
			}
			sums++
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-done
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, rerr)
	require.Positive(t, sums)
	total := uint64(0)
	for _, c := range cs {
		total += *c.val()
		require.False(t, isLocked(c.lock().Load()))
	}
	require.EqualValues(t, n*1000, total)
}

func TestReadOnlyRefusesWrites(t *testing.T) {
	ev := newEnv(t, true)
	cs := ev.cells(t, 1, 5)
	err := ev.e.Run(true, func(tx *Tx) error { return tx.Lock(cs[0].lock(), AddrOf(cs[0].h, 0), false) })
	require.ErrorIs(t, err, ErrReadOnly)
	boom := errors.New("boom")
	err = ev.e.Run(false, func(tx *Tx) error {
		_ = tx.Lock(cs[0].lock(), AddrOf(cs[0].h, 0), false)
		return boom
	})
	require.ErrorIs(t, err, boom)
	require.False(t, isLocked(cs[0].lock().Load()))
}

// crashPoints lists every point of a commit of 3 cells, with its
// occurrence, where a crash leaves a distinct state.
var crashPoints = []struct {
	name      string
	nth       int
	committed bool
}{
	{"logged lock", 1, false}, {"took lock", 1, false}, {"logged lock", 2, false}, {"took lock", 2, false},
	{"logged lock", 3, false}, {"took lock", 3, false}, {"redo written", 1, false},
	{"committing", 1, true}, {"applied store", 1, true}, {"applied store", 2, true}, {"applied", 1, true},
	{"retired", 1, true}, {"releasing", 1, true}, {"handed over", 1, true},
	{"released lock", 1, true}, {"released lock", 2, true},
}

// crashCommit runs a transaction that adds 1 to every cell and retires
// victim, stops it at the nth occurrence of crash point (its process
// "dies" there: the goroutine never runs again, keeping its lease) and
// returns its slot.
func (ev *env) crashCommit(cs []cell, victim cell, point string, nth int) int {
	reached := make(chan int)
	seen := 0
	crashHook = func(p string) {
		if p != point {
			return
		}
		seen++
		if seen == nth {
			reached <- 0
			select {} // the process "dies" here: it never runs again
		}
	}
	var slot atomic.Int64
	go func() {
		_ = ev.e.Run(false, func(tx *Tx) error {
			slot.Store(int64(tx.Slot()))
			w := &setWriter{cells: cs, retire: []handle.Handle{victim.h}}
			for _, c := range cs {
				v, err := read(tx, c)
				if err != nil {
					return err
				}
				w.vals = append(w.vals, v+1)
				if err := tx.Lock(c.lock(), AddrOf(c.h, 0), false); err != nil {
					return err
				}
			}
			return tx.AddWriter(w)
		})
	}()
	<-reached
	crashHook = nil
	return int(slot.Load())
}

// TestCrashAtEveryCommitPoint stops a commit at each point, recovers its
// slot as if the process had died there, and checks that the commit is
// all there or not at all, every lock is free, and the retired block is
// retired exactly when the commit happened.
func TestCrashAtEveryCommitPoint(t *testing.T) {
	for _, cp := range crashPoints {
		t.Run(fmt.Sprintf("%s#%d", cp.name, cp.nth), func(t *testing.T) {
			ev := newEnv(t, false) // the stopped goroutine keeps its lease: no Close
			cs := ev.cells(t, 3, 10)
			victim := ev.cells(t, 1, 0)[0]
			before := make([]uint64, 3)
			for i, c := range cs {
				before[i] = versionOf(c.lock().Load())
			}
			s := ev.crashCommit(cs, victim, cp.name, cp.nth)
			wv := ev.e.slotPart(s).WV.Load()
			for _, l := range []shm.Layer{ev.e, ev.r, ev.a} {
				require.NoError(t, l.Recover(0, []int{s}))
			}
			retired := false
			ev.r.Each(func(h handle.Handle, _ uint8) { retired = retired || h == victim.h })
			require.Equal(t, cp.committed, retired, "victim retired")
			for i, c := range cs {
				w := c.lock().Load()
				require.False(t, isLocked(w), "cell %d still locked", i)
				if cp.committed {
					require.EqualValues(t, 11, *c.val(), "cell %d", i)
					require.Equal(t, wv, versionOf(w))
				} else {
					require.EqualValues(t, 10, *c.val(), "cell %d", i)
					require.Equal(t, before[i], versionOf(w))
				}
			}
			require.Equal(t, StateIdle, ev.e.slotPart(s).State.Load())
			// Nobody is blocked: a new transaction commits.
			require.NoError(t, ev.add(cs, []int64{1, 1, 1}, nil))
			for _, c := range cs {
				want := uint64(11)
				if cp.committed {
					want = 12
				}
				require.Equal(t, want, *c.val())
			}
			require.Empty(t, ev.a.Check())
		})
	}
}

// TestViewIsNotStarved: a read-only transaction over cells that writers
// change all the time commits within lockedViewAfter+n attempts (then it
// locks what it read and cannot be disturbed), and its sum is exact.
func TestViewIsNotStarved(t *testing.T) {
	ev := newEnv(t, true)
	const n = 16
	cs := ev.cells(t, n, 100)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			for {
				select {
				case <-stop:
					return
				default:
				}
				i, j := rng.IntN(n), rng.IntN(n)
				if i != j {
					_ = ev.add([]cell{cs[i], cs[j]}, []int64{-1, 1}, nil)
				}
			}
		}()
	}
	maxAttempts := 0
	for range 200 {
		attempts := 0
		err := ev.e.Run(true, func(tx *Tx) error {
			attempts++
			s := uint64(0)
			for _, c := range cs {
				v, err := read(tx, c)
				if err != nil {
					return err
				}
				s += v
				yield() // let the writers in between reads
			}
			if s != n*100 {
				return fmt.Errorf("sum %d", s)
			}
			return nil
		})
		require.NoError(t, err)
		maxAttempts = max(maxAttempts, attempts)
	}
	close(stop)
	wg.Wait()
	t.Logf("most attempts of a View: %d", maxAttempts)
	require.LessOrEqual(t, maxAttempts, lockedViewAfter+n)
	for _, c := range cs {
		require.False(t, isLocked(c.lock().Load()))
	}
}

// TestPanicAfterTheCommitPointKeepsTheCommit: a panic past the commit
// point (here from the crash hook) finishes the commit instead of undoing
// it; the panic goes on to the caller.
func TestPanicAfterTheCommitPointKeepsTheCommit(t *testing.T) {
	ev := newEnv(t, true)
	cs := ev.cells(t, 2, 10)
	crashHook = func(point string) {
		if point == "applied store" {
			panic("boom")
		}
	}
	defer func() { crashHook = nil }()
	require.PanicsWithValue(t, "boom", func() { _ = ev.add(cs, []int64{1, 1}, nil) })
	crashHook = nil
	for _, c := range cs {
		require.EqualValues(t, 11, *c.val())
		require.False(t, isLocked(c.lock().Load()))
	}
	require.NoError(t, ev.add(cs, []int64{1, 1}, nil))
	require.EqualValues(t, 12, *cs[0].val())
}

// TestTokenOfADeadHolderIsCleared: a fairness token left by a slot whose
// process is gone does not stop committers: the first one that waits for
// it finds the holder dead and clears it.
func TestTokenOfADeadHolderIsCleared(t *testing.T) {
	env := newEnv(t, true)
	ghost := uint64(env.st.NumSlots()) // the last slot, owned by no process
	env.e.g.Privileged.Store(ghost)
	var word uint64
	require.NoError(t, env.e.Run(false, func(tx *Tx) error {
		return tx.AddWriter(writerFunc(func(tx *Tx) error { return tx.Store(&word, 0, 1) }))
	}))
	require.Zero(t, env.e.g.Privileged.Load(), "the dead holder's token is cleared")
}

// writerFunc is a Writer from a function.
type writerFunc func(tx *Tx) error

func (f writerFunc) Prepare(tx *Tx) error { return f(tx) }

// TestCloseRefusesWhilePeeking: an optimistic read admitted by BeginPeek
// keeps the engine from closing (the regions stay mapped under it) until
// EndPeek; once closed, BeginPeek admits none.
func TestCloseRefusesWhilePeeking(t *testing.T) {
	ev := newEnv(t, false)
	require.True(t, ev.e.BeginPeek())
	require.ErrorIs(t, ev.e.Close(), shm.ErrInUse)
	require.True(t, ev.e.BeginPeek(), "a refused Close leaves the engine open")
	ev.e.EndPeek()
	ev.e.EndPeek()
	require.NoError(t, ev.e.Close())
	require.False(t, ev.e.BeginPeek())
	require.NoError(t, ev.st.Close())
}
