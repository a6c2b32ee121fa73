//go:build linux && (amd64 || arm64)

package shmstore_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
	"github.com/shmstore/shmstore/shm/shmtest"
)

func openTest(t *testing.T) *shmstore.Store {
	t.Helper()
	dir := shmtest.Dir(t)
	st, err := shmstore.Open("t", shmstore.Options{Dir: dir, RegionSize: 16 << 20, MaxSize: 256 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func TestDictBasics(t *testing.T) {
	st := openTest(t)
	require.NoError(t, st.Set("a", 1))
	require.NoError(t, st.Set("s", "hello"))
	require.NoError(t, st.Set("accounts/alice", 100))
	n, err := st.GetInt("a")
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	v, err := st.Get("s")
	require.NoError(t, err)
	s, err := v.AsString()
	require.NoError(t, err)
	require.Equal(t, "hello", s)
	n, err = st.GetInt("accounts/alice")
	require.NoError(t, err)
	require.EqualValues(t, 100, n)
	_, err = st.Get("missing")
	require.ErrorIs(t, err, shmstore.ErrKeyNotFound)
	_, err = st.GetInt("s")
	require.ErrorIs(t, err, shmstore.ErrTypeMismatch)

	// many keys: growth, then deletes: shrink
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		d, err := tx.Root().Dict("many")
		if err != nil {
			return err
		}
		for i := 0; i < 5000; i++ {
			if err := d.Set(fmt.Sprintf("k%d", i), i); err != nil {
				return err
			}
		}
		return nil
	}))
	require.NoError(t, st.View(func(tx *shmstore.Tx) error {
		d, err := tx.Root().GetDict("many")
		require.NoError(t, err)
		l, err := d.Len()
		require.NoError(t, err)
		require.Equal(t, 5000, l)
		for i := 0; i < 5000; i += 7 {
			n, err := d.GetInt(fmt.Sprintf("k%d", i))
			require.NoError(t, err)
			require.EqualValues(t, i, n)
		}
		return nil
	}))
	for i := 0; i < 5000; i += 2 {
		require.NoError(t, st.Delete(fmt.Sprintf("many/k%d", i)))
	}
	require.NoError(t, st.View(func(tx *shmstore.Tx) error {
		d, err := tx.Root().GetDict("many")
		require.NoError(t, err)
		l, err := d.Len()
		require.NoError(t, err)
		require.Equal(t, 2500, l)
		cnt := 0
		require.NoError(t, d.Range(func(k, v shmstore.Value) bool { cnt++; return true }))
		require.Equal(t, 2500, cnt)
		return nil
	}))
	// abort keeps nothing
	boom := errors.New("boom")
	err = st.Update(func(tx *shmstore.Tx) error {
		if err := tx.Root().Set("a", 2); err != nil {
			return err
		}
		return boom
	})
	require.ErrorIs(t, err, boom)
	n, err = st.GetInt("a")
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.NoError(t, st.Check())
}

func TestListCounterRecord(t *testing.T) {
	st := openTest(t)
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		l, err := tx.Root().List("l")
		require.NoError(t, err)
		for i := 0; i < 20; i++ {
			require.NoError(t, l.Append(i))
		}
		require.NoError(t, l.Prepend("first"))
		return nil
	}))
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		l, err := tx.Root().GetList("l")
		require.NoError(t, err)
		v, err := l.PopFront()
		require.NoError(t, err)
		require.Equal(t, "first", v.Scalar())
		v, err = l.Pop()
		require.NoError(t, err)
		require.EqualValues(t, 19, v.Scalar())
		require.NoError(t, l.Append(100))
		require.NoError(t, l.Set(0, "zero"))
		require.NoError(t, l.Insert(1, "ins"))
		return nil
	}))
	got, err := st.Export("l")
	require.NoError(t, err)
	want := []any{"zero", "ins"}
	for i := 1; i < 19; i++ {
		want = append(want, int64(i))
	}
	want = append(want, int64(100))
	require.Equal(t, want, got)

	for i := 0; i < 10; i++ {
		n, err := st.Add("hits", 3)
		require.NoError(t, err)
		require.Equal(t, int64(3*(i+1)), n, "Add returns the value it committed")
	}
	n, err := st.Export("hits")
	require.NoError(t, err)
	require.EqualValues(t, 30, n)

	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		r, err := tx.NewRecord("Point", []string{"x", "y"})
		require.NoError(t, err)
		require.NoError(t, r.Set("x", 1.5))
		return tx.Root().Set("p", r)
	}))
	p, err := st.Export("p")
	require.NoError(t, err)
	require.Equal(t, map[string]any{"x": 1.5, "y": nil}, p)

	type acct struct {
		Owner string   `msgpack:"owner"`
		Tags  []string `msgpack:"tags"`
	}
	require.NoError(t, st.Set("acct", acct{Owner: "bob", Tags: []string{"a", "b"}}))
	var back acct
	require.NoError(t, st.Decode("acct", &back))
	require.Equal(t, acct{Owner: "bob", Tags: []string{"a", "b"}}, back)
	require.NoError(t, st.Delete("acct"))
	require.NoError(t, st.Delete("l"))
	require.NoError(t, st.Check())
}

func TestCheckFindsLeaksAndBadCounts(t *testing.T) {
	st := openTest(t)
	require.NoError(t, st.Set("d/x", 1))
	require.NoError(t, st.Check())
	h, err := layers.Of(st).Alloc.Lease()
	require.NoError(t, err)
	leaked, _, err := h.Alloc(100)
	require.NoError(t, err)
	h.ForgetLog() // handed over to nobody: a leak
	require.NoError(t, h.Release())
	err = st.Check()
	require.ErrorIs(t, err, shmstore.ErrCheck)
	require.Contains(t, err.Error(), leaked.String())
	require.NoError(t, layers.Of(st).Alloc.FreeAny(leaked))
	require.NoError(t, st.Check())
}

func TestUnlinkedMemoryIsFreed(t *testing.T) {
	st := openTest(t)
	base := uint64(0)
	for round := 0; round < 4; round++ {
		require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
			d, err := tx.Root().Dict("big")
			if err != nil {
				return err
			}
			l, err := d.List("l")
			if err != nil {
				return err
			}
			for i := 0; i < 2000; i++ {
				if err := d.Set(i, fmt.Sprintf("value %d", i)); err != nil {
					return err
				}
				if err := l.Append(fmt.Sprint(i)); err != nil {
					return err
				}
			}
			return tx.Root().Set("alias", l) // one List under two keys
		}))
		require.NoError(t, st.Check())
		require.NoError(t, st.Delete("big"))
		require.NoError(t, st.Delete("alias"))
		// Collections free the unlinked Dict, whose finalizer releases
		// the List, which the next collection frees.
		for i := 0; i < 3; i++ {
			require.NoError(t, layers.Of(st).Engine.Collect())
		}
		require.NoError(t, st.Check())
		used := mustStats(t, st).UsedBytes
		if round == 0 {
			base = used // the slot keeps its redo-log chunk (64 KiB) from the big commit
			continue
		}
		require.LessOrEqual(t, used, base+base/10, "round %d: used %d, base %d", round, used, base)
	}
}

func TestGetIntReadsCounters(t *testing.T) {
	st := openTest(t)
	_, err := st.Add("hits", 5)
	require.NoError(t, err)
	_, err = st.Add("stats/hits", 7)
	require.NoError(t, err)
	n, err := st.GetInt("hits")
	require.NoError(t, err)
	require.EqualValues(t, 5, n)
	n, err = st.GetInt("stats/hits")
	require.NoError(t, err)
	require.EqualValues(t, 7, n)
}

func TestCloseWhileATransactionRuns(t *testing.T) {
	st := openTest(t)
	inside := make(chan struct{})
	release := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- st.Update(func(tx *shmstore.Tx) error {
			close(inside)
			<-release
			return tx.Root().Set("k", 1)
		})
	}()
	<-inside
	require.ErrorIs(t, st.Close(), shmstore.ErrInUse)
	close(release)
	require.NoError(t, <-done)
	n, err := st.GetInt("k") // still open and usable
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
}

// TestCheckWhileBusy: Check on a store that goroutines keep changing
// (transfers, keys added and deleted, nested containers made and
// dropped) reports nothing: what changes under one walk is confirmed by a
// second before it counts.
func TestCheckWhileBusy(t *testing.T) {
	st := openTest(t)
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		acc, err := tx.Root().Dict("acc")
		if err != nil {
			return err
		}
		for i := 0; i < 50; i++ {
			if err := acc.Set(i, 100); err != nil {
				return err
			}
		}
		return nil
	}))
	stop := make(chan struct{})
	errs := make(chan error, 3)
	for g := 0; g < 2; g++ {
		go func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				err := st.Update(func(tx *shmstore.Tx) error {
					acc, err := tx.Root().GetDict("acc")
					if err != nil {
						return err
					}
					a, b := (i*7+g)%50, (i*13+g+1)%50
					x, err := acc.GetInt(a)
					if err != nil {
						return err
					}
					y, err := acc.GetInt(b)
					if err != nil {
						return err
					}
					if a != b {
						if err := acc.Set(a, x-1); err != nil {
							return err
						}
						if err := acc.Set(b, y+1); err != nil {
							return err
						}
					}
					tmp, err := tx.Root().Dict(fmt.Sprintf("tmp%d", g))
					if err != nil {
						return err
					}
					if i%2 == 0 {
						l, err := tmp.List("l")
						if err != nil {
							return err
						}
						return l.Append(fmt.Sprint(i))
					}
					return tx.Root().Delete(fmt.Sprintf("tmp%d", g))
				})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	checks := 0
	var bad []string
	for checks < 30 && bad == nil {
		p, err := st.Problems()
		require.NoError(t, err)
		if len(p) > 0 {
			bad = p
		}
		checks++
	}
	close(stop)
	require.NoError(t, <-errs)
	require.NoError(t, <-errs)
	require.Empty(t, bad, "a check while busy")
	require.NoError(t, layers.Of(st).Engine.Collect())
	require.NoError(t, st.Check())
}

// TestCounterOverflow: an add whose result does not fit in an int64 fails
// with ErrOverflow and leaves the Counter as it was: Add and Store.Add at
// once, AddBlind at commit (it never read the value), and two blind adds
// of one transaction that overflow between them.
func TestCounterOverflow(t *testing.T) {
	st := openTest(t)
	_, err := st.Add("c", math.MaxInt64-1)
	require.NoError(t, err)
	_, err = st.Add("c", 2)
	require.ErrorIs(t, err, shmstore.ErrOverflow)
	err = st.Update(func(tx *shmstore.Tx) error {
		c, err := tx.Root().Counter("c")
		require.NoError(t, err)
		_, err = c.Add(2)
		return err
	})
	require.ErrorIs(t, err, shmstore.ErrOverflow)
	err = st.Update(func(tx *shmstore.Tx) error {
		c, err := tx.Root().Counter("c")
		require.NoError(t, err)
		return c.AddBlind(2)
	})
	require.ErrorIs(t, err, shmstore.ErrOverflow, "a blind add overflows at commit")
	err = st.Update(func(tx *shmstore.Tx) error {
		c, err := tx.Root().Counter("d")
		require.NoError(t, err)
		require.NoError(t, c.AddBlind(math.MinInt64))
		return c.AddBlind(-1)
	})
	require.ErrorIs(t, err, shmstore.ErrOverflow)
	n, err := st.GetInt("c")
	require.NoError(t, err)
	require.EqualValues(t, math.MaxInt64-1, n, "the Counter kept its value")
	n, err = st.Add("c", 1)
	require.NoError(t, err)
	require.EqualValues(t, math.MaxInt64, n, "the largest int64 fits")
	require.NoError(t, st.Check())
}

// TestErrorsNameTheKey: an error about the value under a key names the
// key, and a List index out of range is reported as given (a new user's
// trial met "value is String, not Dict" with no key, a Queue named by its
// handle, and "list index -94" for a Get(-100)).
func TestErrorsNameTheKey(t *testing.T) {
	st := openTest(t)
	require.NoError(t, st.Set("s", "str"))
	require.NoError(t, st.Set("l", []int{1, 2, 3, 4, 5, 6}))
	require.NoError(t, st.View(func(tx *shmstore.Tx) error {
		r := tx.Root()
		for _, c := range []struct {
			err  error
			want string
		}{
			{second(r.GetDict("s")), `objects: key "s": value is String, not Dict`},
			{second(r.GetList("s")), `objects: key "s": value is String, not List`},
			{second(r.GetRecord("s")), `objects: key "s": value is String, not Record`},
			{second(r.GetQueue("l")), `objects: key "l": value is a List, not a Queue`},
			{second(r.GetInt("s")), `objects: key "s": value is String, not Int`},
			{second(r.GetString("l")), `objects: key "l": value is List, not String`},
			{second(r.GetBool("s")), `objects: key "s": value is String, not Bool`},
		} {
			require.ErrorIs(t, c.err, shmstore.ErrTypeMismatch)
			require.Equal(t, c.want+": type mismatch", c.err.Error())
		}
		l, err := r.GetList("l")
		require.NoError(t, err)
		_, err = l.Get(-100)
		require.ErrorIs(t, err, shmstore.ErrOutOfRange)
		require.Equal(t, "objects: list index -100 of 6: index out of range", err.Error())
		return nil
	}))
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		l, err := tx.Root().GetList("l")
		require.NoError(t, err)
		err = l.Insert(-100, 1)
		require.ErrorIs(t, err, shmstore.ErrOutOfRange)
		require.Equal(t, "objects: insert at -100 of 6: index out of range", err.Error())
		return nil
	}))
	// The single operations name the path.
	require.NoError(t, st.Set("a/b", "str"))
	_, err := st.GetInt("a/b")
	require.ErrorIs(t, err, shmstore.ErrTypeMismatch)
	require.ErrorContains(t, err, `path "a/b": value is String, not Int`)
	var n int
	err = st.Decode("a/b", &n)
	require.ErrorIs(t, err, shmstore.ErrTypeMismatch)
	require.ErrorContains(t, err, `path "a/b": `)
	_, err = st.Add("a/c", math.MaxInt64)
	require.NoError(t, err)
	_, err = st.Add("a/c", 1)
	require.ErrorIs(t, err, shmstore.ErrOverflow)
	require.ErrorContains(t, err, `path "a/c": `)
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		_, err := tx.Root().Queue("l", 0)
		require.EqualError(t, err, `objects: key "l": value is a List, not a Queue: type mismatch`)
		return nil
	}))
}

// second is the error of a call that returns a value and an error.
func second[T any](_ T, err error) error { return err }

// TestBadArguments: a nil function, a negative Queue capacity and a
// path that names no key are refused with an error, never a panic (a new
// user's trial: Update(nil) panicked).
func TestBadArguments(t *testing.T) {
	st := openTest(t)
	ctx := context.Background()
	require.ErrorIs(t, st.Update(nil), shmstore.ErrBadArgument)
	require.ErrorIs(t, st.View(nil), shmstore.ErrBadArgument)
	require.ErrorIs(t, st.UpdateContext(ctx, nil), shmstore.ErrBadArgument)
	require.ErrorIs(t, st.ViewContext(ctx, nil), shmstore.ErrBadArgument)
	yields := 0
	for _, err := range st.WatchFunc(ctx, nil) {
		require.ErrorIs(t, err, shmstore.ErrBadArgument)
		yields++
	}
	require.Equal(t, 1, yields)
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		require.ErrorIs(t, tx.OrElse(nil, func(*shmstore.Tx) error { return nil }), shmstore.ErrBadArgument)
		_, err := tx.Root().Queue("q", -1)
		require.ErrorIs(t, err, shmstore.ErrBadArgument)
		_, err = tx.NewQueue(-1)
		require.ErrorIs(t, err, shmstore.ErrBadArgument)
		return nil
	}))
	for _, p := range []string{"", "/"} {
		_, err := st.Get(p)
		require.ErrorIs(t, err, shmstore.ErrTypeMismatch)
		require.ErrorContains(t, err, "names the root Dict, which is under no key")
		require.ErrorIs(t, st.SetInt(p, 1), shmstore.ErrTypeMismatch)
	}
	all, err := st.Export("")
	require.NoError(t, err)
	require.Equal(t, map[string]any{}, all)
}

// TestLinkAcrossStores: a container of one store set into another is
// refused as such (it said "another transaction: transaction ended",
// which sent a new user looking for the wrong mistake).
func TestLinkAcrossStores(t *testing.T) {
	a, b := openTest(t), openTest(t)
	require.NoError(t, a.Update(func(ta *shmstore.Tx) error {
		d, err := ta.Root().Dict("x")
		if err != nil {
			return err
		}
		err = b.Update(func(tb *shmstore.Tx) error { return tb.Root().Set("y", d) })
		require.ErrorIs(t, err, shmstore.ErrTypeMismatch)
		require.ErrorContains(t, err, "a Dict of another store")
		return nil
	}))
}
