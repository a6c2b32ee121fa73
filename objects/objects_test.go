//go:build linux && (amd64 || arm64)

package objects

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/quick"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/reclaim"
	"github.com/shmstore/shmstore/shm"
	"github.com/shmstore/shmstore/shm/shmtest"
	"github.com/shmstore/shmstore/txn"
)

func newSpace(t *testing.T) *Space {
	t.Helper()
	st, err := shm.Open("t", shm.Options{Dir: shmtest.Dir(t), RegionSize: 8 << 20, MaxSize: 128 << 20})
	require.NoError(t, err)
	a, err := alloc.New(st)
	require.NoError(t, err)
	r, err := reclaim.New(st, a)
	require.NoError(t, err)
	e := txn.New(st, a, r)
	s, err := Open(e)
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, e.Close())
		require.NoError(t, st.Close())
	})
	return s
}

func checkClean(t *testing.T, s *Space) {
	t.Helper()
	ac := s.Account()
	require.Empty(t, ac.Problems)
}

// The hash is part of the format (it places keys in shared tables that
// every process and language reads): these values must never change.
func TestHashIsStable(t *testing.T) {
	for k, want := range map[Value]uint64{
		String("alice"):        0x83de1ab3c9a39743,
		String(""):             0xd635c428eb09b2b0,
		Bytes([]byte("alice")): 0x41e73dc2e4696853,
		Int(1):                 0xfdb6d707a9af11aa,
		Int(-1):                0x465da0cdb59b5fdc,
		Bool(true):             0x3f9da48330650b45,
		None:                   0x34c7de69b79bc622,
	} {
		require.Equal(t, want, Hash(k), "hash of %v", k)
	}
	require.Equal(t, Hash(String("alice")), Hash(String("alice")))
	require.NotEqual(t, Hash(String("1")), Hash(Int(1)))
	require.NotEqual(t, Hash(Bool(true)), Hash(Int(1)))
	require.NotEqual(t, Hash(String("a")), Hash(Bytes([]byte("a"))))
	f := func(a, b string) bool { return a == b || Hash(String(a)) != Hash(String(b)) }
	require.NoError(t, quick.Check(f, nil))
}

func TestScalarsRoundTrip(t *testing.T) {
	s := newSpace(t)
	f := func(i int64, fl float64, str string, b []byte, bo bool) bool {
		vals := []any{i, fl, str, b, bo, nil}
		ok := true
		err := s.Update(func(tx *Tx) error {
			l, err := tx.Root().List("l")
			if err != nil {
				return err
			}
			for _, v := range vals {
				if err := l.Append(v); err != nil {
					return err
				}
				if err := tx.Root().Set(fmt.Sprint(len(vals)), v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return false
		}
		err = s.Update(func(tx *Tx) error {
			l, err := tx.Root().GetList("l")
			if err != nil {
				return err
			}
			for _, want := range vals {
				got, err := l.PopFront()
				if err != nil {
					return err
				}
				w, _ := ScalarOf(want)
				if w.kind == KindFloat && fl != fl { // NaN
					ok = ok && got.kind == KindFloat
					continue
				}
				ok = ok && got == w
			}
			return nil
		})
		return err == nil && ok
	}
	require.NoError(t, quick.Check(f, &quick.Config{MaxCount: 50}))
	checkClean(t, s)
}

// TestDictAgainstModel runs random operations on a Dict, some in
// transactions that abort, and compares it with a Go map after each.
func TestDictAgainstModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	s := newSpace(t)
	model := map[string]int64{}
	for round := range 200 {
		abort := rng.IntN(5) == 0
		next := map[string]int64{}
		for k, v := range model {
			next[k] = v
		}
		err := s.Update(func(tx *Tx) error {
			d, err := tx.Root().Dict("d")
			if err != nil {
				return err
			}
			for range rng.IntN(50) + 1 {
				k := fmt.Sprintf("k%d", rng.IntN(300))
				switch rng.IntN(3) {
				case 0, 1:
					v := rng.Int64()
					if err := d.Set(k, v); err != nil {
						return err
					}
					next[k] = v
				case 2:
					err := d.Delete(k)
					if _, ok := next[k]; ok {
						require.NoError(t, err)
						delete(next, k)
					} else {
						require.ErrorIs(t, err, ErrNotFound)
					}
				}
				got, err := d.Len()
				require.NoError(t, err)
				require.Equal(t, len(next), got)
			}
			if abort {
				return errAbort
			}
			return nil
		})
		if abort {
			require.ErrorIs(t, err, errAbort)
		} else {
			require.NoError(t, err, "round %d", round)
			model = next
		}
		require.NoError(t, s.View(func(tx *Tx) error {
			d, err := tx.Root().GetDict("d")
			if errors.Is(err, ErrNotFound) && len(model) == 0 {
				return nil // every round so far aborted
			}
			if err != nil {
				return err
			}
			n := 0
			err = d.Range(func(k, v Value) bool {
				n++
				want, ok := model[k.s]
				require.True(t, ok, "extra key %v", k)
				require.EqualValues(t, want, int64(v.n))
				return true
			})
			require.Equal(t, len(model), n)
			return err
		}))
	}
	checkClean(t, s)
}

var errAbort = fmt.Errorf("abort on purpose")

// TestListAgainstModel does the same for a List.
func TestListAgainstModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	s := newSpace(t)
	var model []string
	for round := range 300 {
		next := append([]string(nil), model...)
		err := s.Update(func(tx *Tx) error {
			l, err := tx.Root().List("l")
			if err != nil {
				return err
			}
			for range rng.IntN(8) + 1 {
				v := fmt.Sprint(rng.IntN(1000))
				switch op := rng.IntN(7); {
				case op == 0:
					require.NoError(t, l.Append(v))
					next = append(next, v)
				case op == 1:
					require.NoError(t, l.Prepend(v))
					next = append([]string{v}, next...)
				case op == 2 && len(next) > 0:
					got, err := l.Pop()
					require.NoError(t, err)
					require.Equal(t, next[len(next)-1], got.s)
					next = next[:len(next)-1]
				case op == 3 && len(next) > 0:
					got, err := l.PopFront()
					require.NoError(t, err)
					require.Equal(t, next[0], got.s)
					next = next[1:]
				case op == 4 && len(next) > 0:
					i := rng.IntN(len(next))
					require.NoError(t, l.Set(i, v))
					next[i] = v
				case op == 5:
					i := rng.IntN(len(next) + 1)
					require.NoError(t, l.Insert(i, v))
					next = append(next[:i], append([]string{v}, next[i:]...)...)
				case op == 6 && len(next) > 0:
					i := rng.IntN(len(next))
					require.NoError(t, l.Delete(i))
					next = append(next[:i], next[i+1:]...)
				}
			}
			n, err := l.Len()
			require.NoError(t, err)
			require.Equal(t, len(next), n)
			return nil
		})
		require.NoError(t, err, "round %d", round)
		model = next
		require.NoError(t, s.View(func(tx *Tx) error {
			l, err := tx.Root().GetList("l")
			if err != nil {
				return err
			}
			items, err := l.Items()
			require.NoError(t, err)
			got := make([]string, len(items))
			for i, v := range items {
				got[i] = v.s
			}
			if len(model) == 0 {
				require.Empty(t, got)
			} else {
				require.Equal(t, model, got, "round %d", round)
			}
			return nil
		}))
	}
	checkClean(t, s)
}

func TestTypeErrors(t *testing.T) {
	s := newSpace(t)
	require.NoError(t, s.Update(func(tx *Tx) error {
		d := tx.Root()
		require.NoError(t, d.Set("i", 5))
		_, err := d.GetString("i")
		require.ErrorIs(t, err, ErrTypeMismatch)
		_, err = d.GetDict("i")
		require.ErrorIs(t, err, ErrTypeMismatch)
		_, err = d.List("i")
		require.ErrorIs(t, err, ErrTypeMismatch)
		require.ErrorIs(t, d.Set(1.5, 1), ErrTypeMismatch)
		require.ErrorIs(t, d.Set("c", make(chan int)), ErrTypeMismatch)
		require.ErrorIs(t, d.Set("u", uint64(1<<63)), ErrTypeMismatch)
		_, err = tx.NewRecord("", nil)
		require.ErrorIs(t, err, ErrTypeMismatch)
		r, err := tx.NewRecord("P", []string{"x"})
		require.NoError(t, err)
		require.ErrorIs(t, r.Set("y", 1), ErrNotFound)
		require.NoError(t, d.Set("r", r))
		return nil
	}))
	err := s.View(func(tx *Tx) error { return tx.Root().Set("x", 1) })
	require.ErrorIs(t, err, txn.ErrReadOnly)
	checkClean(t, s)
}

// TestAliasingAndCounters: one List under two keys is one object; a
// Counter's adds from many goroutines all land.
func TestAliasingAndCounters(t *testing.T) {
	s := newSpace(t)
	require.NoError(t, s.Update(func(tx *Tx) error {
		l, err := tx.NewList()
		if err != nil {
			return err
		}
		if err := tx.Root().Set("a", l); err != nil {
			return err
		}
		return tx.Root().Set("b", l)
	}))
	require.NoError(t, s.Update(func(tx *Tx) error {
		l, err := tx.Root().GetList("a")
		if err != nil {
			return err
		}
		return l.Append("x")
	}))
	require.NoError(t, s.View(func(tx *Tx) error {
		l, err := tx.Root().GetList("b")
		require.NoError(t, err)
		n, err := l.Len()
		require.NoError(t, err)
		require.Equal(t, 1, n)
		return nil
	}))
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				require.NoError(t, s.Update(func(tx *Tx) error {
					c, err := tx.Root().Counter("hits")
					if err != nil {
						return err
					}
					return c.AddBlind(1)
				}))
			}
		}()
	}
	wg.Wait()
	require.NoError(t, s.View(func(tx *Tx) error {
		c, err := tx.Root().Counter("hits")
		require.NoError(t, err)
		n, err := c.Get()
		require.NoError(t, err)
		require.EqualValues(t, 800, n)
		return nil
	}))
	checkClean(t, s)
}

// TestValueFitsInRegisters: a Value stays 32 bytes, the most the compiler
// keeps in registers across calls and returns; a larger one goes through
// memory at each (a field more made a View of 10 reads twice as slow).
func TestValueFitsInRegisters(t *testing.T) {
	require.Equal(t, uintptr(32), unsafe.Sizeof(Value{}))
}

// TestManyDictsInOneAttempt: Dicts resolved in one attempt are distinct,
// however many (the slab grows past what it keeps), and a later attempt
// resolves them afresh.
func TestManyDictsInOneAttempt(t *testing.T) {
	s := newSpace(t)
	const n = 3 * maxDictSlab
	for round := range 3 {
		require.NoError(t, s.Run(context.Background(), false, func(tx *Tx) error {
			ds := make([]*Dict, n)
			for i := range ds {
				d, err := tx.Root().Dict(fmt.Sprintf("d%d", i))
				if err != nil {
					return err
				}
				ds[i] = d
			}
			for i, d := range ds {
				if err := d.SetScalar(String("i"), Int(int64(i+round))); err != nil {
					return err
				}
			}
			return nil
		}))
		require.NoError(t, s.Run(context.Background(), true, func(tx *Tx) error {
			for i := range n {
				d, err := tx.Root().GetDict(fmt.Sprintf("d%d", i))
				if err != nil {
					return err
				}
				got, err := d.GetInt(String("i"))
				if err != nil {
					return err
				}
				if got != int64(i+round) {
					return fmt.Errorf("d%d: %d, want %d", i, got, i+round)
				}
			}
			return nil
		}))
	}
	checkClean(t, s)
}
