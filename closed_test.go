//go:build linux && (amd64 || arm64)

package shmstore_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/shm/shmtest"
)

// kept is everything one transaction handed out, kept past its end.
type kept struct {
	tx   *shmstore.Tx
	d    shmstore.Dict
	l    shmstore.List
	r    shmstore.Record
	c    shmstore.Counter
	dv   shmstore.Value // a container Value
	iv   shmstore.Value // a scalar Value
	root shmstore.Dict
}

// keepAll makes one of each kind in an Update and returns them.
func keepAll(t *testing.T, st *shmstore.Store) kept {
	t.Helper()
	var k kept
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		var err error
		k.tx, k.root = tx, tx.Root()
		if k.d, err = k.root.Dict("d"); err != nil {
			return err
		}
		if err = k.d.Set("x", 1); err != nil {
			return err
		}
		if k.l, err = k.root.List("l"); err != nil {
			return err
		}
		if err = k.l.Append(1); err != nil {
			return err
		}
		if k.r, err = tx.NewRecord("point", []string{"x"}); err != nil {
			return err
		}
		if err = k.root.Set("r", k.r); err != nil {
			return err
		}
		if k.c, err = k.root.Counter("c"); err != nil {
			return err
		}
		if k.dv, err = k.root.Get("d"); err != nil {
			return err
		}
		k.iv, err = k.d.Get("x")
		return err
	}))
	return k
}

// closedCalls calls every method of what k holds, each of which must fail
// with ErrTxClosed.
func closedCalls(k kept, into shmstore.Dict) map[string]error {
	errOf := func(_ any, err error) error { return err }
	_, _, lookupErr := k.d.Lookup("x")
	calls := map[string]error{
		"Dict.Get":       errOf(k.d.Get("x")),
		"Dict.Lookup":    lookupErr,
		"Dict.GetInt":    errOf(k.d.GetInt("x")),
		"Dict.Set":       k.d.Set("x", 2),
		"Dict.Delete":    k.d.Delete("x"),
		"Dict.Len":       errOf(k.d.Len()),
		"Dict.Keys":      errOf(k.d.Keys()),
		"Dict.Range":     k.d.Range(func(_, _ shmstore.Value) bool { return true }),
		"Dict.Dict":      errOf(k.d.Dict("y")),
		"Dict.List":      errOf(k.d.List("y")),
		"Dict.Counter":   errOf(k.d.Counter("y")),
		"root.Set":       k.root.Set("z", 1),
		"List.Append":    k.l.Append(2),
		"List.Get":       errOf(k.l.Get(0)),
		"List.Pop":       errOf(k.l.Pop()),
		"List.Set":       k.l.Set(0, 3),
		"List.Len":       errOf(k.l.Len()),
		"Record.Get":     errOf(k.r.Get("x")),
		"Record.Set":     k.r.Set("x", 5),
		"Counter.Add":    errOf(k.c.Add(1)),
		"Counter.Blind":  k.c.AddBlind(1),
		"Counter.Get":    errOf(k.c.Get()),
		"Tx.NewDict":     errOf(k.tx.NewDict()),
		"Tx.Dict(value)": errOf(k.tx.Dict(k.dv)),
		"Tx.Export":      errOf(k.tx.Export(k.dv)),
	}
	if into.Value().Kind() == shmstore.KindDict {
		calls["Set(kept Value)"] = into.Set("alias", k.dv)
		calls["Set(kept Dict)"] = into.Set("alias", k.d)
		calls["Set(kept List)"] = into.Set("alias", k.l)
	}
	return calls
}

// TestObjectsDieWithTheirTransaction: everything a transaction handed out
// fails with ErrTxClosed once its function returned, outside any
// transaction and inside a later one, and nothing it did reached the
// store.
func TestObjectsDieWithTheirTransaction(t *testing.T) {
	st := openTest(t)
	k := keepAll(t, st)
	before, err := st.Export("")
	require.NoError(t, err)

	for name, err := range closedCalls(k, shmstore.Dict{}) {
		require.ErrorIs(t, err, shmstore.ErrTxClosed, "%s after the transaction", name)
	}
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		for name, err := range closedCalls(k, tx.Root()) {
			if !errors.Is(err, shmstore.ErrTxClosed) {
				t.Errorf("%s in a later transaction: %v, want ErrTxClosed", name, err)
			}
		}
		return nil
	}))
	after, err := st.Export("")
	require.NoError(t, err)
	require.Equal(t, before, after, "nothing done through kept objects reached the store")

	// A scalar Value is a copy: it stays good, and may be stored anywhere.
	n, err := k.iv.AsInt()
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	require.NoError(t, st.Set("copy", k.iv))
	got, err := st.GetInt("copy")
	require.NoError(t, err)
	require.EqualValues(t, 1, got)
	// The zero values are not from a transaction.
	require.ErrorIs(t, shmstore.Dict{}.Set("a", 1), shmstore.ErrTxClosed)
	_, err = shmstore.List{}.Len()
	require.ErrorIs(t, err, shmstore.ErrTxClosed)
}

// TestObjectsDieWithTheirAttempt: an object kept from one run of an
// Update's function fails in the next run (after a conflict), instead of
// writing into the new attempt from the old one's snapshot.
func TestObjectsDieWithTheirAttempt(t *testing.T) {
	st := openTest(t)
	require.NoError(t, st.Set("a/x", 1))
	var first shmstore.Dict
	runs := 0
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		runs++
		d, err := tx.Root().GetDict("a")
		if err != nil {
			return err
		}
		if runs == 1 {
			first = d
			if _, err := d.GetInt("x"); err != nil {
				return err
			}
			// Another transaction changes what this one read: its commit
			// must fail and run the function again.
			done := make(chan error)
			go func() { done <- st.Set("a/x", 2) }()
			if err := <-done; err != nil {
				return err
			}
			return d.Set("x", 10)
		}
		require.ErrorIs(t, first.Set("x", 100), shmstore.ErrTxClosed, "a Dict of the first run used in the second")
		x, err := d.GetInt("x")
		if err != nil {
			return err
		}
		return d.Set("x", x+10)
	}))
	require.Equal(t, 2, runs)
	x, err := st.GetInt("a/x")
	require.NoError(t, err)
	require.EqualValues(t, 12, x)
}

// TestKeptContainerValueFails: a container Value from Store.Get (its
// transaction already over) cannot be stored, whether the container still
// lives or was deleted since (it used to be retried as a conflict until a
// collection freed the object).
func TestKeptContainerValueFails(t *testing.T) {
	st := openTest(t)
	require.NoError(t, st.Set("a/x", 1)) // root["a"] is a Dict
	v, err := st.Get("a")
	require.NoError(t, err)
	require.Equal(t, shmstore.KindDict, v.Kind())
	require.ErrorIs(t, st.Set("b", v), shmstore.ErrTxClosed)
	require.NoError(t, st.Delete("a")) // its rc goes to 0: retired, not freed yet
	require.ErrorIs(t, st.Set("b", v), shmstore.ErrTxClosed)
	_, err = st.Get("b")
	require.ErrorIs(t, err, shmstore.ErrKeyNotFound)
}

// TestCounterAddReturnsTheNewValue: Counter.Add inside a transaction and
// Store.Add outside one give the value the Counter has after the add.
func TestCounterAddReturnsTheNewValue(t *testing.T) {
	st := openTest(t)
	for i := 1; i <= 3; i++ {
		var got int64
		require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
			c, err := tx.Root().Counter("ids")
			if err != nil {
				return err
			}
			got, err = c.Add(1)
			return err
		}))
		require.EqualValues(t, i, got)
	}
	n, err := st.Add("ids", 10)
	require.NoError(t, err)
	require.EqualValues(t, 13, n)
}

// TestOpenByID: a container's ID opens it in a later transaction while
// it is linked; after its deletion, or for a forged ID, Open fails
// cleanly.
func TestOpenByID(t *testing.T) {
	st := openTest(t)
	require.NoError(t, st.Set("a/x", 1))
	v, err := st.Get("a")
	require.NoError(t, err)
	id := v.ID()
	require.NotZero(t, id)
	require.Zero(t, shmstore.Int(3).ID())
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		v, err := tx.Open(id)
		if err != nil {
			return err
		}
		d, err := tx.Dict(v)
		if err != nil {
			return err
		}
		return d.Set("y", 2)
	}))
	y, err := st.GetInt("a/y")
	require.NoError(t, err)
	require.EqualValues(t, 2, y)
	require.NoError(t, st.Delete("a"))
	for _, bad := range []uint64{id, 1, 0xdeadbeefcafe, ^uint64(0)} {
		err := st.View(func(tx *shmstore.Tx) error {
			_, err := tx.Open(bad)
			return err
		})
		require.Error(t, err, "id %#x", bad)
		require.True(t, errors.Is(err, shmstore.ErrStaleHandle) || errors.Is(err, shmstore.ErrBadHandle), "id %#x: %v", bad, err)
	}
}

// TestKeptDictValueNamesItsDict: a Dict kept past its transaction, whose
// slot's next transactions resolve other Dicts, still gives its own
// Value (whose use another attempt refuses), never another Dict's.
func TestKeptDictValueNamesItsDict(t *testing.T) {
	st, err := shmstore.Open("t", shmstore.Options{Dir: shmtest.Dir(t), SlotsPerProc: 1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	var a shmstore.Dict
	var idA uint64
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		var err error
		a, err = tx.Root().Dict("a")
		idA = a.Value().ID()
		return err
	}))
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		for _, k := range []string{"b", "c"} {
			if _, err := tx.Root().Dict(k); err != nil {
				return err
			}
		}
		return nil
	}))
	require.Equal(t, idA, a.Value().ID())
	err = st.Update(func(tx *shmstore.Tx) error { return tx.Root().Set("alias", a.Value()) })
	require.ErrorIs(t, err, shmstore.ErrTxClosed)
}
