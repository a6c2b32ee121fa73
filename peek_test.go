//go:build linux && (amd64 || arm64)

package shmstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/shm/shmtest"
)

// TestGetTakesNoSlot: Store.Get and GetInt of a scalar read without a
// transaction: with every slot of the process held by open transactions
// they still answer (a read through a transaction would wait for a slot
// until one is returned, which only the end of this test does).
func TestGetTakesNoSlot(t *testing.T) {
	st, err := shmstore.Open("t", shmstore.Options{Dir: shmtest.Dir(t), SlotsPerProc: 2})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	require.NoError(t, st.SetInt("n", 7))
	require.NoError(t, st.Set("d/s", "seven"))
	var held []*shmstore.Tx
	for range 2 {
		tx, err := st.Begin(true)
		require.NoError(t, err)
		held = append(held, tx)
	}
	defer func() {
		for _, tx := range held {
			tx.Rollback()
		}
	}()
	// A View needs a slot: it waits (until ctx ends), which shows the
	// slots are all held.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, st.ViewContext(ctx, func(*shmstore.Tx) error { return nil }), context.DeadlineExceeded)

	done := make(chan error, 1)
	go func() {
		n, err := st.GetInt("n")
		if err == nil && n != 7 {
			err = fmt.Errorf("n = %d, want 7", n)
		}
		if err == nil {
			var v shmstore.Value
			if v, err = st.Get("d/s"); err == nil {
				if s, _ := v.AsString(); s != "seven" {
					err = fmt.Errorf("d/s = %v, want seven", v)
				}
			}
		}
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("GetInt waited for a slot: it did not read optimistically")
	}
}

// TestGetIsConsistentUnderWrites: while writers replace values, and
// whole Dicts (whose memory reclaim frees and the allocator hands out
// again), readers' Get and GetInt only ever return values that were
// written: a String of the shape each writer writes (its length and its
// repeated letter agree), and at a nested path the number that belongs
// with its Dict's tag. A read that kept a torn or freed block would
// break the shape.
func TestGetIsConsistentUnderWrites(t *testing.T) {
	st := openTest(t)
	shape := func(i int) string { return strings.Repeat(string(rune('a'+i%26)), 1+i%300) }
	require.NoError(t, st.Set("s", shape(0)))
	require.NoError(t, st.Set("d", map[string]any{"tag": 0, "x": 0}))
	require.NoError(t, st.SetInt("n", 0))
	require.NoError(t, st.SetInt("m", 0))

	stop := make(chan struct{})
	var writers, readers sync.WaitGroup
	var fail atomic.Pointer[error]
	var written atomic.Int64 // the last Int written to m
	report := func(err error) { fail.CompareAndSwap(nil, &err) }
	writers.Add(1)
	go func() {
		defer writers.Done()
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := st.Set("s", shape(i)); err != nil {
				report(err)
				return
			}
			// A new Dict each time: the old one is unlinked, retired
			// and freed, its blocks reused.
			if err := st.Set("d", map[string]any{"tag": i, "x": 3 * i}); err != nil {
				report(err)
				return
			}
			if err := st.SetInt("n", int64(i)); err != nil {
				report(err)
				return
			}
			// An entry whose value changes kind: its kind and value
			// words are two stores, which a read must see both or
			// neither of.
			var m any = int64(2 * i)
			if i%2 == 1 {
				m = shape(i)
			}
			if err := st.Set("m", m); err != nil {
				report(err)
				return
			}
			written.Store(int64(2 * i))
		}
	}()
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			last := int64(0)
			for fail.Load() == nil {
				select {
				case <-stop:
					return
				default:
				}
				v, err := st.Get("s")
				if err != nil {
					report(err)
					return
				}
				s, err := v.AsString()
				if err != nil || !isShape(s) {
					report(fmt.Errorf("Get(s) = %q (%v): not a written value", s, err))
					return
				}
				v, err = st.Get("m")
				// The Set of what Get saw has committed; the writer
				// stores written after each Set returns: the Int read
				// is at most one Set ahead of it.
				max := written.Load() + 4
				switch {
				case err != nil:
					report(err)
					return
				case v.Kind() == shmstore.KindInt:
					if m, _ := v.AsInt(); m < 0 || m > max || m%2 != 0 {
						report(fmt.Errorf("Get(m) = Int %d, never written (last %d)", m, max-4))
						return
					}
				default:
					if m, err := v.AsString(); err != nil || !isShape(m) {
						report(fmt.Errorf("Get(m) = %v, never written", v))
						return
					}
				}
				n, err := st.GetInt("n")
				if err != nil {
					report(err)
					return
				}
				if n < last {
					report(fmt.Errorf("n went back from %d to %d", last, n))
					return
				}
				last = n
				if _, err := st.GetInt("d/x"); err != nil {
					report(err)
					return
				}
				err = st.View(func(tx *shmstore.Tx) error {
					d, err := tx.Root().GetDict("d")
					if err != nil {
						return err
					}
					tag, err := d.GetInt("tag")
					if err != nil {
						return err
					}
					x, err := d.GetInt("x")
					if err == nil && x != 3*tag {
						err = fmt.Errorf("d: x %d with tag %d", x, tag)
					}
					return err
				})
				if err != nil {
					report(err)
					return
				}
				x, err := st.GetInt("d/x")
				if err != nil || x%3 != 0 {
					report(fmt.Errorf("d/x = %d (%v): not a written value", x, err))
					return
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)
	close(stop)
	writers.Wait()
	readers.Wait()
	if e := fail.Load(); e != nil {
		t.Fatal(*e)
	}
}

// isShape reports whether s is shape(i) of TestGetIsConsistentUnderWrites
// for some i: one letter repeated 1 to 300 times, the letter's place in
// the alphabet and the length less one of the same parity (i mod 26 and
// i mod 300 are both i's parity).
func isShape(s string) bool {
	if len(s) == 0 || len(s) > 300 || s[0] < 'a' || s[0] > 'z' || strings.Count(s, s[:1]) != len(s) {
		return false
	}
	return int(s[0]-'a')%2 == (len(s)-1)%2
}

// TestCloseAfterGets: Close refuses while a Get runs (the regions
// must stay mapped under it) and succeeds once none does; a Get after
// Close fails with ErrClosed.
func TestCloseAfterGets(t *testing.T) {
	st, err := shmstore.Open("t", shmstore.Options{Dir: shmtest.Dir(t)})
	require.NoError(t, err)
	require.NoError(t, st.SetInt("n", 1))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _ = st.GetInt("n")
			}
		}()
	}
	// Close while reads run: refused (in use) or, between two reads,
	// done; either way no read faults.
	var closeErr error
	for range 1000 {
		if closeErr = st.Close(); closeErr == nil {
			break
		}
		require.ErrorIs(t, closeErr, shmstore.ErrInUse)
	}
	close(stop)
	wg.Wait()
	if closeErr != nil {
		require.NoError(t, st.Close())
	}
	_, err = st.GetInt("n")
	require.True(t, errors.Is(err, shmstore.ErrClosed), "GetInt after Close: %v", err)
}
