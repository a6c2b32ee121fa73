//go:build linux && (amd64 || arm64)

package objects

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEntryLocks: a transaction reads keys a and b of one stripe and
// writes b (a transfer's shape, through the overlay: SetKey); between its
// read and its commit another transaction commits a change. It runs
// again exactly when the change touched what it read: a's value (under
// a's entry lock) or the stripe's table (a key inserted or deleted, under
// the stripe's lock). An overwrite of a third key of the same stripe
// takes only that key's entry lock, so it does not conflict: that is what
// lets processes write different keys of one Dict without sharing a
// lock word. Each ends with both writes' effects and nothing leaked.
func TestEntryLocks(t *testing.T) {
	same := sameStripe(String("a"), "k", 3) // b, c and a key to insert, in a's stripe
	b, c, fresh := same[0], same[1], same[2]
	big := String(strings.Repeat("z", 300))
	seen := func(v Value, ok bool) Value { return String(fmt.Sprint(v, ok)) } // what b gets: a as read
	for _, tc := range []struct {
		name     string
		change   func(d *Dict) error
		attempts int
		check    func(t *testing.T, s *Space)
	}{
		{"overwrite of another key", func(d *Dict) error { return d.SetKey(c, Int(9)) }, 1,
			func(t *testing.T, s *Space) { requireKey(t, s, c, Int(9)) }},
		{"blob overwrite of another key", func(d *Dict) error { return d.SetKey(c, big) }, 1,
			func(t *testing.T, s *Space) { requireKey(t, s, c, big) }},
		{"overwrite of the key read", func(d *Dict) error { return d.SetKey(String("a"), Int(5)) }, 2,
			func(t *testing.T, s *Space) { requireKey(t, s, b, seen(Int(5), true)) }},
		{"delete of the key read", func(d *Dict) error { return d.DeleteKey(String("a")) }, 2,
			func(t *testing.T, s *Space) { requireKey(t, s, b, seen(None, false)) }},
		{"delete of the key written", func(d *Dict) error { return d.DeleteKey(b) }, 2,
			func(t *testing.T, s *Space) { requireKey(t, s, b, seen(Int(1), true)) }},
		{"insert in the stripe", func(d *Dict) error { return d.SetKey(fresh, Int(3)) }, 2,
			func(t *testing.T, s *Space) { requireKey(t, s, fresh, Int(3)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSpace(t)
			newPeekDict(t, s, map[Value]Value{String("a"): Int(1), b: Int(0), c: String(strings.Repeat("x", 300))})
			attempts := 0
			require.NoError(t, inD(s, false, func(_ *Tx, d *Dict) error {
				attempts++
				v, ok, err := d.LookupKey(String("a"))
				if err != nil {
					return err
				}
				if _, _, err := d.LookupKey(b); err != nil { // read too: its overwrite is planned on it
					return err
				}
				if attempts == 1 {
					done := make(chan error)
					go func() { done <- inD(s, false, func(_ *Tx, d *Dict) error { return tc.change(d) }) }()
					require.NoError(t, <-done)
				}
				return d.SetKey(b, seen(v, ok)) // the commit must rest on a as read
			}))
			require.Equal(t, tc.attempts, attempts)
			tc.check(t, s)
			if tc.attempts == 1 {
				requireKey(t, s, b, seen(Int(1), true))
			}
			for range 3 {
				require.NoError(t, s.e.Collect())
			}
			checkClean(t, s)
		})
	}
}

// TestRangeReadsEachEntry: a transaction sums a Dict by Range and stores
// the sum; between its Range and its commit another commits an overwrite
// of one value, which changes only that entry's lock word (no stripe's).
// The sum must run again and hold the new value: Range reads each value
// in its entry's window, which puts the entry in the read set.
func TestRangeReadsEachEntry(t *testing.T) {
	s := newSpace(t)
	kv := map[Value]Value{}
	for i := range 100 {
		kv[String(fmt.Sprintf("k%d", i))] = Int(1)
	}
	newPeekDict(t, s, kv)
	attempts := 0
	require.NoError(t, inD(s, false, func(_ *Tx, d *Dict) error {
		attempts++
		sum := int64(0)
		err := d.Range(func(k, v Value) bool {
			if n, err := v.AsInt(); err == nil && k != String("sum") {
				sum += n
			}
			return true
		})
		if err != nil {
			return err
		}
		if attempts == 1 {
			done := make(chan error)
			go func() {
				done <- inD(s, false, func(_ *Tx, d *Dict) error { return d.SetKey(String("k7"), Int(5)) })
			}()
			require.NoError(t, <-done)
		}
		return d.SetKey(String("sum"), Int(sum))
	}))
	require.Equal(t, 2, attempts)
	requireKey(t, s, String("sum"), Int(104))
}
