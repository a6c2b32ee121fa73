//go:build linux && (amd64 || arm64)

package shmstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
)

// watchdog fails the test if done is not closed within d: a wait that
// never ends (a lost wake-up; the waits' safety-net timeout is raised to
// a minute in these tests by TestMain, so it cannot hide one).
func watchdog(t *testing.T, d time.Duration, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not end within %v: a wake-up was lost", what, d)
	}
}

// sleeping waits until the engine reports one more sleep in Retry than
// before.
func sleeping(t *testing.T, st *shmstore.Store, before uint64) {
	t.Helper()
	e := layers.Of(st).Engine
	for e.RetryWaits() <= before {
		time.Sleep(time.Millisecond)
	}
}

// take removes and returns the first item of List key, retrying while it
// is empty.
func take(tx *shmstore.Tx, key string) (shmstore.Value, error) {
	l, err := tx.Root().List(key)
	if err != nil {
		return shmstore.None, err
	}
	n, err := l.Len()
	if err != nil {
		return shmstore.None, err
	}
	if n == 0 {
		return shmstore.None, tx.Retry()
	}
	return l.PopFront()
}

func TestRetryWaitsForACommit(t *testing.T) {
	st := openTest(t)
	before := layers.Of(st).Engine.RetryWaits()
	runs := 0
	var got int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
			runs++
			v, err := take(tx, "jobs")
			if err != nil {
				return err
			}
			got, err = v.AsInt()
			return err
		}))
	}()
	sleeping(t, st, before) // parked, not polling
	require.NoError(t, st.Set("unrelated", 1))
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		l, err := tx.Root().List("jobs")
		if err != nil {
			return err
		}
		return l.Append(42)
	}))
	watchdog(t, 30*time.Second, done, "Retry after the commit it waited for")
	require.EqualValues(t, 42, got)
	require.GreaterOrEqual(t, runs, 2)
	n, err := st.Export("jobs")
	require.NoError(t, err)
	require.Empty(t, n, "the job was taken once")
}

func TestRetryEndsWithTheContext(t *testing.T) {
	st := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	before := layers.Of(st).Engine.RetryWaits()
	done := make(chan error, 1)
	go func() {
		done <- st.UpdateContext(ctx, func(tx *shmstore.Tx) error {
			_, err := take(tx, "jobs")
			return err
		})
	}()
	sleeping(t, st, before)
	cancel()
	var err error
	watchdog(t, 30*time.Second, func() chan struct{} {
		c := make(chan struct{})
		go func() { err = <-done; close(c) }()
		return c
	}(), "a cancelled Retry")
	require.ErrorIs(t, err, context.Canceled)
	// Nothing held: the slot is usable, and a deadline works too.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	err = st.ViewContext(ctx2, func(tx *shmstore.Tx) error {
		if _, err := tx.Root().GetList("jobs"); errors.Is(err, shmstore.ErrKeyNotFound) {
			return tx.Retry() // until the List exists
		} else if err != nil {
			return err
		}
		return nil
	})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NoError(t, st.Check())
}

func TestRetryThatReadNothingFails(t *testing.T) {
	st := openTest(t)
	err := st.Update(func(tx *shmstore.Tx) error { return tx.Retry() })
	require.Error(t, err)
	require.NotErrorIs(t, err, shmstore.ErrRetry)
}

func TestRetryIgnoredStillRetries(t *testing.T) {
	st := openTest(t)
	before := layers.Of(st).Engine.RetryWaits()
	done := make(chan struct{})
	go func() {
		defer close(done)
		require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
			n, err := tx.Root().GetInt("go")
			if errors.Is(err, shmstore.ErrKeyNotFound) {
				_ = tx.Retry() // ignored: the run still never commits
				return tx.Root().Set("done", "too early")
			}
			if err != nil {
				return err
			}
			return tx.Root().Set("done", n)
		}))
	}()
	sleeping(t, st, before)
	require.NoError(t, st.Set("go", 7))
	watchdog(t, 30*time.Second, done, "Retry")
	n, err := st.GetInt("done")
	require.NoError(t, err)
	require.EqualValues(t, 7, n)
}

func TestOrElseTakesTheFirstReady(t *testing.T) {
	st := openTest(t)
	pick := func() (string, int64) {
		var from string
		var v shmstore.Value
		require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
			return tx.OrElse(func(tx *shmstore.Tx) error {
				var err error
				from = "a"
				// a writes before it retries: the write must be undone.
				if err := tx.Root().Set("trace", "a ran"); err != nil {
					return err
				}
				v, err = take(tx, "a")
				return err
			}, func(tx *shmstore.Tx) error {
				var err error
				from = "b"
				v, err = take(tx, "b")
				return err
			})
		}))
		n, err := v.AsInt()
		require.NoError(t, err)
		return from, n
	}
	require.NoError(t, st.Set("b", []int{1}))
	from, n := pick()
	require.Equal(t, "b", from)
	require.EqualValues(t, 1, n)
	_, err := st.Get("trace")
	require.ErrorIs(t, err, shmstore.ErrKeyNotFound, "the retried alternative's write was undone")

	require.NoError(t, st.Set("a", []int{2}))
	require.NoError(t, st.Set("b", []int{3}))
	from, n = pick()
	require.Equal(t, "a", from, "the first alternative wins when both are ready")
	require.EqualValues(t, 2, n)

	// Both empty but b: wait on the union, and a commit to either wakes.
	from, n = pick()
	require.Equal(t, "b", from)
	require.EqualValues(t, 3, n)
	before := layers.Of(st).Engine.RetryWaits()
	done := make(chan struct{})
	go func() { defer close(done); from, n = pick() }()
	sleeping(t, st, before)
	require.NoError(t, st.Set("a", []int{4}))
	watchdog(t, 30*time.Second, done, "OrElse waiting on both")
	require.Equal(t, "a", from)
	require.EqualValues(t, 4, n)
}

func TestWatchYieldsEachChange(t *testing.T) {
	st := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type seen struct {
		v      any
		absent bool
	}
	got := make(chan seen)
	errs := make(chan error, 1)
	go func() {
		for v, err := range st.Watch(ctx, "cfg/level") {
			if err != nil && !errors.Is(err, shmstore.ErrKeyNotFound) {
				errs <- err
				return
			}
			got <- seen{v, err != nil}
		}
	}()
	next := func() seen {
		select {
		case s := <-got:
			return s
		case err := <-errs:
			t.Fatalf("watch ended: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("no change seen within 30 s: a wake-up was lost")
		}
		return seen{}
	}
	require.Equal(t, seen{nil, true}, next(), "absent at first")
	require.NoError(t, st.Set("cfg/level", 1))
	require.Equal(t, seen{int64(1), false}, next())
	require.NoError(t, st.Set("cfg/other", "x")) // same stripe or not: no change of cfg/level
	require.NoError(t, st.Set("cfg/level", 1))   // the same value again: no change
	require.NoError(t, st.Set("cfg/level", 2))
	require.Equal(t, seen{int64(2), false}, next())
	require.NoError(t, st.Delete("cfg"))
	require.Equal(t, seen{nil, true}, next())
	require.NoError(t, st.Set("cfg", 5)) // not a Dict on the way: still absent, the watch goes on
	require.NoError(t, st.Set("cfg", map[string]any{"level": 3}))
	require.Equal(t, seen{int64(3), false}, next())
	cancel()
	select {
	case err := <-errs:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(30 * time.Second):
		t.Fatal("the watch did not end with its context")
	}
}

// TestContextEndsTheWaitForASlot: with every slot of the process busy, a
// transaction waiting for one gives up when its context ends, and the
// wake-up it might have taken is passed on.
func TestContextEndsTheWaitForASlot(t *testing.T) {
	st, err := shmstore.Open("t", shmstore.Options{Dir: testDir(t), SlotsPerProc: 1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	inside, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		held <- st.Update(func(tx *shmstore.Tx) error {
			close(inside)
			<-release
			return tx.Root().Set("a", 1)
		})
	}()
	<-inside
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, st.UpdateContext(ctx, func(tx *shmstore.Tx) error { return nil }), context.DeadlineExceeded)
	waiting := make(chan error, 1)
	go func() { waiting <- st.Set("b", 2) }() // waits for the one slot
	close(release)
	require.NoError(t, <-held)
	select {
	case err := <-waiting:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("a waiter for the slot was not woken")
	}
}
