//go:build linux && (amd64 || arm64)

package objects

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/txn"
)

// inD runs fn on the Dict "d" in a transaction of its own.
func inD(s *Space, readOnly bool, fn func(tx *Tx, d *Dict) error) error {
	return s.Run(context.Background(), readOnly, func(tx *Tx) error {
		d, err := tx.Root().GetDict("d")
		if err != nil {
			return err
		}
		return fn(tx, d)
	})
}

// isDirect reports whether the attempt holds a direct write and no
// overlay.
func isDirect(tx *Tx) bool { return tx.direct.h != handle.Null && len(tx.dictList) == 0 }

// getKey reads key of the Dict "d" in its own transaction.
func getKey(t *testing.T, s *Space, k Value) (Value, error) {
	t.Helper()
	var v Value
	err := inD(s, true, func(_ *Tx, d *Dict) error {
		var err error
		v, err = d.GetKey(k)
		return err
	})
	return v, err
}

// requireKey requires key of the Dict "d" to hold want.
func requireKey(t *testing.T, s *Space, k, want Value, msg ...any) {
	t.Helper()
	v, err := getKey(t, s, k)
	require.NoError(t, err)
	require.Equal(t, want, v, msg...)
}

// requireLevel runs round 4 times, collecting after each, and requires
// the bytes in use after the first to stay what they were.
func requireLevel(t *testing.T, s *Space, round func(i int)) {
	t.Helper()
	var base uint64
	for i := range 4 {
		round(i)
		for range 3 {
			require.NoError(t, s.e.Collect())
		}
		if used := s.a.Stats().UsedBytes; i == 0 {
			base = used
		} else {
			require.Equal(t, base, used, "round %d: bytes in use grew", i)
		}
	}
}

// setLast runs SetLast(k, v) on the Dict "d", then after (if not nil) in
// the same attempt, and reports whether the write went without an
// overlay (direct).
func setLast(t *testing.T, s *Space, k, v Value, after func(d *Dict) error) (direct bool) {
	t.Helper()
	require.NoError(t, inD(s, false, func(tx *Tx, d *Dict) error {
		if err := d.SetLast(k, v); err != nil {
			return err
		}
		direct = isDirect(tx)
		if after != nil {
			return after(d)
		}
		return nil
	}))
	return direct
}

// TestSetLastOverwritesInPlace: SetLast of a scalar over an existing
// scalar, or of a new key, keeps no overlay, and commits the new value;
// over a String's blob it retires the blob. An old container value, a
// container, or a second write go through the overlay, with the same
// results.
func TestSetLastOverwritesInPlace(t *testing.T) {
	s := newSpace(t)
	long := strings.Repeat("x", 300) // a blob of its own
	newPeekDict(t, s, map[Value]Value{String("n"): Int(1), String("s"): String(long)})
	for _, c := range []struct {
		k, v   Value
		direct bool
	}{
		{String("n"), Int(2), true},
		{String("n"), String(long + "y"), true}, // a kind change: the meta word too
		{String("s"), Int(3), true},             // the old blob retired
		{String("s"), Float(1.5), true},
		{String("new"), Int(4), true},              // a new key: a one-write stripe commit
		{String("new2"), String(long + "z"), true}, // with a blob of its own
	} {
		require.Equal(t, c.direct, setLast(t, s, c.k, c.v, nil), "SetLast(%v, %v)", c.k, c.v)
		requireKey(t, s, c.k, c.v)
		checkClean(t, s)
	}
	// A key that holds a container: its reference is dropped, so the
	// overlay does it.
	require.NoError(t, inD(s, false, func(_ *Tx, d *Dict) error {
		_, err := d.Dict("child")
		return err
	}))
	require.False(t, setLast(t, s, String("child"), Int(5), nil))
	// A container value: SetKey's work (it takes a reference).
	require.NoError(t, inD(s, false, func(tx *Tx, d *Dict) error {
		c, err := d.Dict("c2")
		if err != nil {
			return err
		}
		if err := d.SetLast(String("n"), c.Value()); err != nil {
			return err
		}
		require.False(t, isDirect(tx))
		return nil
	}))
	requireKey(t, s, String("child"), Int(5))
	v, err := getKey(t, s, String("n"))
	require.NoError(t, err)
	require.Equal(t, KindDict, v.Kind())
	require.NoError(t, s.e.Collect())
	checkClean(t, s)
}

// TestSetLastThenMore: whatever the attempt does with a Dict after a
// direct SetLast sees it (it becomes an overlay write first): a read of
// the key, the Dict's range, a second write of the key, its delete.
func TestSetLastThenMore(t *testing.T) {
	s := newSpace(t)
	newPeekDict(t, s, map[Value]Value{String("n"): Int(1), String("m"): Int(1)})
	setLast(t, s, String("n"), Int(2), func(d *Dict) error {
		v, err := d.GetKey(String("n"))
		require.NoError(t, err)
		require.Equal(t, Int(2), v, "a read after SetLast in the same attempt")
		return nil
	})
	setLast(t, s, String("n"), Int(3), func(d *Dict) error {
		seen := map[Value]Value{}
		require.NoError(t, d.Range(func(k, v Value) bool { seen[k] = v; return true }))
		require.Equal(t, map[Value]Value{String("n"): Int(3), String("m"): Int(1)}, seen)
		return nil
	})
	setLast(t, s, String("n"), Int(4), func(d *Dict) error { return d.SetLast(String("n"), Int(5)) })
	requireKey(t, s, String("n"), Int(5), "the second write wins")
	setLast(t, s, String("n"), Int(6), func(d *Dict) error { return d.Delete(String("n")) })
	_, err := getKey(t, s, String("n"))
	require.ErrorIs(t, err, ErrNotFound)
	require.NoError(t, s.e.Collect())
	checkClean(t, s)
}

// TestSetLastAbortedKeepsNothing: an attempt whose function fails after a
// direct SetLast writes nothing, and the next attempt starts without it.
func TestSetLastAbortedKeepsNothing(t *testing.T) {
	s := newSpace(t)
	newPeekDict(t, s, map[Value]Value{String("n"): Int(1)})
	err := inD(s, false, func(_ *Tx, d *Dict) error {
		if err := d.SetLast(String("n"), Int(2)); err != nil {
			return err
		}
		return ErrCorrupt // any error of the function
	})
	require.ErrorIs(t, err, ErrCorrupt)
	requireKey(t, s, String("n"), Int(1))
	setLast(t, s, String("n"), Int(3), func(d *Dict) error {
		return d.SetKey(String("m"), Int(1)) // a write after it: the overlay holds both
	})
	requireKey(t, s, String("n"), Int(3))
}

// TestSetLastAfterAWrite: a SetLast after another write of the attempt is
// an ordinary overlay write, so the last write wins (a direct one would
// be overwritten at commit by the overlay's older value).
func TestSetLastAfterAWrite(t *testing.T) {
	s := newSpace(t)
	newPeekDict(t, s, map[Value]Value{String("n"): Int(1)})
	require.NoError(t, inD(s, false, func(_ *Tx, d *Dict) error {
		if err := d.SetKey(String("n"), Int(10)); err != nil {
			return err
		}
		return d.SetLast(String("n"), Int(11))
	}))
	requireKey(t, s, String("n"), Int(11))
}

// TestSetLastTwiceLeaksNothing: two SetLasts of one key in an attempt
// (a String's blob, then an Int) leave no block behind: the second is an
// overlay write, which drops the first's blob before the commit makes it
// (two direct overwrites would each read the committed value, and the
// first's new blob would stay allocated, linked from nowhere).
func TestSetLastTwiceLeaksNothing(t *testing.T) {
	s := newSpace(t)
	newPeekDict(t, s, map[Value]Value{String("n"): Int(1)})
	long := String(strings.Repeat("x", 300))
	requireLevel(t, s, func(int) {
		require.NoError(t, inD(s, false, func(_ *Tx, d *Dict) error {
			if err := d.SetLast(String("n"), long); err != nil {
				return err
			}
			return d.SetLast(String("n"), Int(2))
		}))
	})
	requireKey(t, s, String("n"), Int(2))
}

// TestSetLastOfAnExistingContainer: SetLast of a container the attempt
// only read (nothing written before) takes a reference, as SetKey does
// (found by review: no test reached this check, and a direct write would
// link the container without counting it).
func TestSetLastOfAnExistingContainer(t *testing.T) {
	s := newSpace(t)
	newPeekDict(t, s, map[Value]Value{String("n"): Int(1)})
	require.NoError(t, inD(s, false, func(_ *Tx, d *Dict) error {
		_, err := d.Dict("child")
		return err
	}))
	require.NoError(t, inD(s, false, func(tx *Tx, d *Dict) error {
		c, err := d.GetDict(String("child"))
		if err != nil {
			return err
		}
		require.False(t, tx.writer, "nothing written before")
		if err := d.SetLast(String("n"), c.Value()); err != nil {
			return err
		}
		require.False(t, isDirect(tx))
		return nil
	}))
	checkClean(t, s)
	require.NoError(t, inD(s, false, func(_ *Tx, d *Dict) error { return d.Delete(String("child")) }))
	require.NoError(t, s.e.Collect())
	checkClean(t, s)
	v, err := getKey(t, s, String("n"))
	require.NoError(t, err)
	require.Equal(t, KindDict, v.Kind(), "still linked under n")
}

// TestSetLastBlobsLeakNothing: direct overwrites between Strings of their
// own blocks and Ints, each way, leave the bytes in use level once
// collected: the old blob is retired, the new one linked.
func TestSetLastBlobsLeakNothing(t *testing.T) {
	s := newSpace(t)
	newPeekDict(t, s, map[Value]Value{String("n"): Int(1)})
	blob := func(i int) Value { return String(strings.Repeat(string(rune('a'+i%26)), 300)) }
	requireLevel(t, s, func(round int) {
		for i, v := range []Value{blob(round), Int(2), blob(round + 1), blob(round + 2), Int(3)} {
			require.True(t, setLast(t, s, String("n"), v, nil), "round %d step %d: direct", round, i)
			requireKey(t, s, String("n"), v)
		}
	})
}

// sameStripe returns n keys ("<prefix>0", "<prefix>1"...) of the
// stripe of k.
func sameStripe(k Value, prefix string, n int) []Value {
	var same []Value
	for i := 0; len(same) < n; i++ {
		if c := String(fmt.Sprintf("%s%d", prefix, i)); stripeOf(Hash(c)) == stripeOf(Hash(k)) {
			same = append(same, c)
		}
	}
	return same
}

// freshKey is a key of the stripe of "n" that no test Dict holds before
// a write of it.
var freshKey = sameStripe(String("n"), "fresh", 1)[0]

// directWrites are the three kinds of direct write on the Dict "d"
// (which holds "n" and not freshKey), each with the check that it
// committed.
var directWrites = []struct {
	name  string
	key   Value
	write func(d *Dict) error
	check func(t *testing.T, s *Space)
}{
	{"set", String("n"), func(d *Dict) error { return d.SetLast(String("n"), Int(7)) },
		func(t *testing.T, s *Space) { requireKey(t, s, String("n"), Int(7)) }},
	{"insert", freshKey, func(d *Dict) error { return d.SetLast(freshKey, Int(8)) },
		func(t *testing.T, s *Space) { requireKey(t, s, freshKey, Int(8)) }},
	{"delete", String("n"), func(d *Dict) error { return d.DeleteLast(String("n")) },
		func(t *testing.T, s *Space) {
			_, err := getKey(t, s, String("n"))
			require.ErrorIs(t, err, ErrNotFound)
		}},
}

// TestSetLastAfterAStripeChange: a commit to the same stripe between a
// direct write's read and its commit that changes the stripe's table (a
// delete of another key, a table that grows) makes the direct write
// conflict and run again; an overwrite of another key there (a blob
// replaced in place, under that entry's lock) does not. Either way it
// ends with both writes' values and nothing leaked; so for each direct
// write: SetLast over a value, SetLast of a new key, DeleteLast.
func TestSetLastAfterAStripeChange(t *testing.T) {
	same := sameStripe(String("n"), "k", 2100) // the stripe of n and freshKey
	changes := []struct {
		name     string
		attempts int // the direct write's: 2 when the change conflicts with it
		change   func(d *Dict) error
	}{
		{"delete", 2, func(d *Dict) error { return d.Delete(same[0]) }},
		{"blob", 1, func(d *Dict) error { return d.SetKey(same[1], String(strings.Repeat("z", 300))) }},
		{"grow", 2, func(d *Dict) error {
			for _, k := range same[100:] {
				if err := d.SetKey(k, Int(1)); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for _, w := range directWrites {
		for _, c := range changes {
			t.Run(w.name+"/"+c.name, func(t *testing.T) {
				s := newSpace(t)
				newPeekDict(t, s, map[Value]Value{String("n"): String(strings.Repeat("y", 300)), same[0]: Int(0), same[1]: String(strings.Repeat("x", 300))})
				attempts := 0
				require.NoError(t, inD(s, false, func(tx *Tx, d *Dict) error {
					attempts++
					if err := w.write(d); err != nil {
						return err
					}
					if attempts == 1 {
						require.True(t, isDirect(tx))
						done := make(chan error)
						go func() {
							done <- inD(s, false, func(_ *Tx, d *Dict) error { return c.change(d) })
						}()
						require.NoError(t, <-done)
					}
					return nil
				}))
				require.Equal(t, c.attempts, attempts)
				w.check(t, s)
				if c.name == "blob" {
					requireKey(t, s, same[1], String(strings.Repeat("z", 300)))
				}
				for range 3 {
					require.NoError(t, s.e.Collect())
				}
				checkClean(t, s)
			})
		}
	}
}

// deleteLast runs DeleteLast(k) on the Dict "d", then after (if not nil)
// in the same attempt, and reports whether the delete went without an
// overlay (direct) and its error.
func deleteLast(s *Space, k Value, after func(d *Dict) error) (direct bool, err error) {
	err = inD(s, false, func(tx *Tx, d *Dict) error {
		if err := d.DeleteLast(k); err != nil {
			return err
		}
		direct = isDirect(tx)
		if after != nil {
			return after(d)
		}
		return nil
	})
	return direct, err
}

// TestDeleteLast: DeleteLast of a key that holds a scalar (a String's
// blob too) keeps no overlay and removes the key; of a missing key it
// fails with ErrNotFound; of a key that holds a container it goes
// through the overlay, which drops the reference (the child is freed).
func TestDeleteLast(t *testing.T) {
	s := newSpace(t)
	long := String(strings.Repeat("x", 300))
	newPeekDict(t, s, map[Value]Value{String("n"): Int(1), String("s"): long, String("m"): Int(2)})
	for _, k := range []Value{String("n"), String("s")} {
		direct, err := deleteLast(s, k, nil)
		require.NoError(t, err)
		require.True(t, direct, "DeleteLast(%v)", k)
		_, err = getKey(t, s, k)
		require.ErrorIs(t, err, ErrNotFound, "deleted %v", k)
	}
	requireKey(t, s, String("m"), Int(2), "the other key stays")
	_, err := deleteLast(s, String("n"), nil)
	require.ErrorIs(t, err, ErrNotFound, "a key deleted already")
	require.NoError(t, inD(s, false, func(_ *Tx, d *Dict) error {
		_, err := d.Dict("child")
		return err
	}))
	direct, err := deleteLast(s, String("child"), nil)
	require.NoError(t, err)
	require.False(t, direct, "a container's reference: the overlay's")
	for range 3 {
		require.NoError(t, s.e.Collect())
	}
	checkClean(t, s)
	require.NoError(t, inD(s, true, func(_ *Tx, d *Dict) error {
		n, err := d.Len()
		require.Equal(t, 1, n)
		return err
	}))
}

// TestDeleteLastThenMore: whatever the attempt does with a Dict after a
// direct DeleteLast, or a direct SetLast of a new key, sees it: a read,
// the length, the range, a write of the key again.
func TestDeleteLastThenMore(t *testing.T) {
	s := newSpace(t)
	newPeekDict(t, s, map[Value]Value{String("n"): Int(1), String("m"): Int(1)})
	lenIs := func(d *Dict, want int) {
		n, err := d.Len()
		require.NoError(t, err)
		require.Equal(t, want, n)
	}
	_, err := deleteLast(s, String("n"), func(d *Dict) error {
		has, err := d.Has(String("n"))
		require.NoError(t, err)
		require.False(t, has, "a read after DeleteLast in the same attempt")
		lenIs(d, 1)
		return nil
	})
	require.NoError(t, err)
	setLast(t, s, String("n"), Int(2), func(d *Dict) error {
		v, err := d.GetKey(String("n"))
		require.NoError(t, err)
		require.Equal(t, Int(2), v, "a read after SetLast of a new key")
		lenIs(d, 2)
		return nil
	})
	_, err = deleteLast(s, String("n"), func(d *Dict) error {
		seen := map[Value]Value{}
		require.NoError(t, d.Range(func(k, v Value) bool { seen[k] = v; return true }))
		require.Equal(t, map[Value]Value{String("m"): Int(1)}, seen)
		return d.SetKey(String("n"), Int(3))
	})
	require.NoError(t, err)
	requireKey(t, s, String("n"), Int(3), "set again after the delete")
	require.NoError(t, s.e.Collect())
	checkClean(t, s)
}

// TestDirectInsertsAndDeletesLeakNothing: keys of one stripe inserted
// by SetLast and removed by DeleteLast, one a transaction, grow the
// stripe's table, shrink it and drop it through the direct path (the
// one-write stripe commit), and leave the bytes in use level: every
// entry, blob and replaced table is retired.
func TestDirectInsertsAndDeletesLeakNothing(t *testing.T) {
	s := newSpace(t)
	dp, err := s.object(newPeekDict(t, s, map[Value]Value{String("n"): Int(1)}), KindDict)
	require.NoError(t, err)
	stripe := stripeOf(Hash(String("x")))
	same := sameStripe(String("x"), "k", 40)
	blob := String(strings.Repeat("b", 300))
	requireLevel(t, s, func(round int) {
		for i, k := range same {
			v := Int(int64(i))
			if i%3 == 0 {
				v = blob
			}
			require.True(t, setLast(t, s, k, v, nil), "round %d: insert %d direct", round, i)
		}
		st := stripeAt(dp, stripe)
		require.Greater(t, st.cap.Load(), uint64(minTableCap), "round %d: the table grew", round)
		grown := st.cap.Load()
		for i, k := range same {
			direct, err := deleteLast(s, k, nil)
			require.NoError(t, err)
			require.True(t, direct, "round %d: delete %d direct", round, i)
			if i == len(same)-3 {
				require.Less(t, st.cap.Load(), grown, "round %d: the table shrank", round)
			}
		}
		require.Equal(t, uint64(0), st.table.Load(), "round %d: the empty table is dropped", round)
	})
	checkClean(t, s)
}

// TestDirectWriteBesideOtherWrites: a direct write, then writes of
// other objects that no Dict overlay holds (a Counter's add, a List's
// append), commit together: Prepare goes on past the direct write when
// anything else is buffered.
func TestDirectWriteBesideOtherWrites(t *testing.T) {
	for _, c := range directWrites {
		t.Run(c.name, func(t *testing.T) {
			s := newSpace(t)
			newPeekDict(t, s, map[Value]Value{String("n"): Int(1)})
			require.NoError(t, s.Run(context.Background(), false, func(tx *Tx) error {
				if _, err := tx.Root().Counter("c"); err != nil {
					return err
				}
				_, err := tx.Root().List("l")
				return err
			}))
			require.NoError(t, s.Run(context.Background(), false, func(tx *Tx) error {
				r := tx.Root()
				ctr, err := r.Counter("c") // read before: found, not made
				if err != nil {
					return err
				}
				l, err := r.GetList("l")
				if err != nil {
					return err
				}
				d, err := r.GetDict("d")
				if err != nil {
					return err
				}
				if err := c.write(d); err != nil {
					return err
				}
				require.True(t, isDirect(tx))
				if err := ctr.AddBlind(5); err != nil {
					return err
				}
				return l.Append(int64(9))
			}))
			c.check(t, s)
			require.NoError(t, s.Run(context.Background(), true, func(tx *Tx) error {
				ctr, err := tx.Root().Counter("c")
				if err != nil {
					return err
				}
				n, err := ctr.Get()
				require.NoError(t, err)
				require.Equal(t, int64(5), n, "the Counter's add")
				l, err := tx.Root().GetList("l")
				if err != nil {
					return err
				}
				items, err := l.Items()
				require.NoError(t, err)
				require.Equal(t, []Value{Int(9)}, items, "the List's append")
				return nil
			}))
			require.NoError(t, s.e.Collect())
			checkClean(t, s)
		})
	}
}

// TestDirectWritesLockWhatTheyChange: a direct write commits under the
// lock of what it changes (an overwrite: the key's entry; an insert or a
// delete: the stripe) and moves its version, so a transaction that read
// the key (its value, or its absence) before that commit and writes
// after it conflicts and runs again on what the commit left (without the
// lock its validation would pass, and its write would rest on a value
// that no longer was).
func TestDirectWritesLockWhatTheyChange(t *testing.T) {
	state := func(d *Dict, k Value) (Value, error) {
		v, ok, err := d.LookupKey(k)
		return String(fmt.Sprint(v, ok)), err
	}
	for _, c := range directWrites {
		t.Run(c.name, func(t *testing.T) {
			s := newSpace(t)
			newPeekDict(t, s, map[Value]Value{String("n"): Int(1)})
			var before Value
			attempts := 0
			require.NoError(t, inD(s, false, func(_ *Tx, d *Dict) error {
				attempts++
				seen, err := state(d, c.key)
				if err != nil {
					return err
				}
				if attempts == 1 {
					before = seen
					done := make(chan error)
					go func() {
						done <- inD(s, false, func(tx *Tx, d *Dict) error {
							if err := c.write(d); err != nil {
								return err
							}
							if !isDirect(tx) {
								return fmt.Errorf("not direct: %w", ErrCorrupt)
							}
							return nil
						})
					}()
					require.NoError(t, <-done)
				}
				return d.SetKey(String("copy"), seen)
			}))
			require.Equal(t, 2, attempts)
			var after Value
			require.NoError(t, inD(s, true, func(_ *Tx, d *Dict) error {
				var err error
				after, err = state(d, c.key)
				return err
			}))
			require.NotEqual(t, before, after)
			requireKey(t, s, String("copy"), after)
		})
	}
}

// TestDeleteLastReadOnly: DeleteLast and SetLast in a read-only
// transaction fail with txn.ErrReadOnly.
func TestDeleteLastReadOnly(t *testing.T) {
	s := newSpace(t)
	newPeekDict(t, s, map[Value]Value{String("n"): Int(1)})
	require.ErrorIs(t, inD(s, true, func(_ *Tx, d *Dict) error { return d.DeleteLast(String("n")) }), txn.ErrReadOnly)
	require.ErrorIs(t, inD(s, true, func(_ *Tx, d *Dict) error { return d.SetLast(String("n"), Int(2)) }), txn.ErrReadOnly)
	requireKey(t, s, String("n"), Int(1))
}

// TestDirectAgainstOverlay: random single writes, each the first of its
// attempt (so direct when it can be) on the Dict "d", and the same
// through the overlay (SetScalar, DeleteKey) on the Dict "e", each
// followed in the same attempt by random reads and writes of the same
// Dict; every answer and the contents after each attempt are the same
// for both, and nothing leaks. The keys share a few stripes, so tables
// grow, shrink and drop.
func TestDirectAgainstOverlay(t *testing.T) {
	s := newSpace(t)
	require.NoError(t, s.Run(context.Background(), false, func(tx *Tx) error {
		for _, n := range []string{"d", "e"} {
			if _, err := tx.Root().Dict(n); err != nil {
				return err
			}
		}
		return nil
	}))
	var keys []Value // 24 keys of 2 stripes
	for i := 0; len(keys) < 24; i++ {
		k := String(fmt.Sprintf("k%d", i))
		if st := stripeOf(Hash(k)); st == 3 || st == 40 {
			keys = append(keys, k)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	type step struct {
		op  int // 0 set, 1 delete, 2 lookup, 3 len
		key Value
		val Value
	}
	vals := []Value{Int(1), Int(2), String("short"), String(strings.Repeat("b", 300)), Float(0.5)}
	directs := 0 // first writes that went direct (a delete of a missing key does not)
	run := func(name string, direct bool, first step, rest []step) (out []string) {
		require.NoError(t, s.Run(context.Background(), false, func(tx *Tx) error {
			out = out[:0]
			d, err := tx.Root().GetDict(name)
			if err != nil {
				return err
			}
			do := func(st step, first bool) {
				var err error
				switch {
				case st.op == 0 && first && direct:
					err = d.SetLast(st.key, st.val)
				case st.op == 0:
					err = d.SetScalar(st.key, st.val)
				case st.op == 1 && first && direct:
					err = d.DeleteLast(st.key)
				case st.op == 1:
					err = d.DeleteKey(st.key)
				case st.op == 2:
					var v Value
					var ok bool
					v, ok, err = d.LookupKey(st.key)
					out = append(out, fmt.Sprintf("lookup %v: %v %v", st.key, v, ok))
				default:
					var n int
					n, err = d.Len()
					out = append(out, fmt.Sprintf("len %d", n))
				}
				out = append(out, fmt.Sprintf("err %v", errors.Is(err, ErrNotFound)))
			}
			do(first, true)
			if direct && isDirect(tx) {
				directs++
			}
			for _, st := range rest {
				do(st, false)
			}
			return nil
		}))
		return out
	}
	contents := func(name string) map[Value]Value {
		m := map[Value]Value{}
		require.NoError(t, s.Run(context.Background(), true, func(tx *Tx) error {
			d, err := tx.Root().GetDict(name)
			if err != nil {
				return err
			}
			return d.Range(func(k, v Value) bool { m[k] = v; return true })
		}))
		return m
	}
	for round := range 2000 {
		mk := func(ops int) step {
			return step{op: rng.IntN(ops), key: keys[rng.IntN(len(keys))], val: vals[rng.IntN(len(vals))]}
		}
		first := mk(2)
		var rest []step
		for range rng.IntN(3) {
			rest = append(rest, mk(4))
		}
		a, b := run("d", true, first, rest), run("e", false, first, rest)
		require.Equal(t, b, a, "round %d: answers", round)
		require.Equal(t, contents("e"), contents("d"), "round %d: contents", round)
	}
	require.Greater(t, directs, 1000, "direct writes of 2000")
	for range 3 {
		require.NoError(t, s.e.Collect())
	}
	checkClean(t, s)
}

// TestRetiredIsFreedBesideALaterSnapshot: memory a commit retires (a
// deleted key's entry and blob) is freed by a collection while a
// transaction that began after that commit is still running: the commit
// moved the clock to its version, so that snapshot is at least as new
// (without the move, a snapshot begun after a commit could still be
// older than its version, and hold its memory back as long as it runs).
func TestRetiredIsFreedBesideALaterSnapshot(t *testing.T) {
	s := newSpace(t)
	newPeekDict(t, s, map[Value]Value{String("n"): Int(1)})
	for range 3 {
		require.NoError(t, s.e.Collect())
	}
	base := s.a.Stats().UsedBytes
	require.NoError(t, inD(s, false, func(_ *Tx, d *Dict) error {
		return d.SetKey(String("big"), String(strings.Repeat("x", 3000)))
	}))
	require.Greater(t, s.a.Stats().UsedBytes, base)
	_, err := deleteLast(s, String("big"), nil)
	require.NoError(t, err)
	inside, release, done := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		done <- inD(s, true, func(_ *Tx, d *Dict) error {
			select {
			case <-inside:
			default:
				close(inside)
			}
			<-release
			return nil
		})
	}()
	<-inside
	for range 3 {
		require.NoError(t, s.e.Collect())
	}
	used := s.a.Stats().UsedBytes
	close(release)
	require.NoError(t, <-done)
	require.Equal(t, base, used, "freed while the later snapshot ran")
}
