package shmstore_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shmstore/shmstore/internal/layers"
	"github.com/shmstore/shmstore/shm/shmtest"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
)

// testDir is shmtest.Dir: a tmpfs directory removed when the test ends.
func testDir(t testing.TB) string { return shmtest.Dir(t) }

func TestOpenAllocCheckRemove(t *testing.T) {
	dir := testDir(t)
	opts := shmstore.Options{Dir: dir}
	st, err := shmstore.Open("s", opts)
	require.NoError(t, err)
	h, err := layers.Of(st).Alloc.Lease()
	require.NoError(t, err)
	hd, b, err := h.Alloc(100)
	require.NoError(t, err)
	copy(b, "hello")
	h.ForgetLog()
	h.Release()

	// Another attachment sees the block by its handle.
	st2, err := shmstore.Open("s", shmstore.Options{Dir: dir, Create: shmstore.MustExist})
	require.NoError(t, err)
	got, err := layers.Of(st2).Alloc.Resolve(hd)
	require.NoError(t, err)
	require.Equal(t, "hello", string(got[:5]))
	// A raw block linked nowhere is a leak to Check; freed, the store is clean.
	require.ErrorIs(t, st2.Check(), shmstore.ErrCheck)
	require.NoError(t, layers.Of(st2).Alloc.FreeAny(hd))
	require.NoError(t, st2.Check())
	require.NoError(t, st2.Close())
	require.ErrorIs(t, st2.Close(), shmstore.ErrClosed)

	names, err := shmstore.ListStores(opts)
	require.NoError(t, err)
	require.Equal(t, []string{"s"}, names)
	require.ErrorIs(t, shmstore.Remove("s", opts, false), shmstore.ErrInUse, "st is still attached")
	require.NoError(t, st.Close())
	require.NoError(t, shmstore.Remove("s", opts, false))
	_, err = shmstore.Open("s", shmstore.Options{Dir: dir, Create: shmstore.MustExist})
	require.ErrorIs(t, err, shmstore.ErrNotFound)
}

func TestCheckReportsProblems(t *testing.T) {
	st, err := shmstore.Open("s", shmstore.Options{Dir: testDir(t)})
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, st.Check())
	h, err := layers.Of(st).Alloc.Lease()
	require.NoError(t, err)
	_, _, err = h.Alloc(64) // grows region 1
	require.NoError(t, err)
	h.FreeLog()
	h.Release()
	// Cut short under a live mapping: touching the lost pages would fault,
	// so Check reports the file instead of walking it.
	require.NoError(t, os.Truncate(layers.Of(st).Shm.RegionPath(1), 4096))
	err = st.Check()
	require.ErrorIs(t, err, shmstore.ErrCheck)
	require.Contains(t, err.Error(), "region 1 is 4096 bytes")
}

func TestBadOptions(t *testing.T) {
	_, err := shmstore.Open("bad/name", shmstore.Options{Dir: testDir(t)})
	require.ErrorIs(t, err, shmstore.ErrBadOption)
	_, err = shmstore.Open("s", shmstore.Options{Dir: testDir(t), RegionSize: 12345})
	require.ErrorIs(t, err, shmstore.ErrBadOption)
	require.True(t, errors.Is(err, shmstore.ErrBadOption))
}

// Open a store, allocate a block that every process attached to the store
// can reach by its handle, and check the store.
func ExampleOpen() {
	dir, _ := os.MkdirTemp("/dev/shm", "shmstore-example-")
	defer os.RemoveAll(dir)

	st, err := shmstore.Open("example", shmstore.Options{Dir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer st.Close()

	// Every process that opens "example" sees the same objects.
	if err := st.Set("greeting", "hello"); err != nil {
		fmt.Println(err)
		return
	}
	v, err := st.Get("greeting")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(v, st.Check() == nil)
	// Output: "hello" true
}

// A freed block's handle is stale: it never resolves to the memory again.
func TestFreedHandleIsStale(t *testing.T) {
	st, err := shmstore.Open("example", shmstore.Options{Dir: testDir(t)})
	require.NoError(t, err)
	defer st.Close()
	h, err := layers.Of(st).Alloc.Lease()
	require.NoError(t, err)
	defer h.Release()

	hd, _, err := h.Alloc(32)
	require.NoError(t, err)
	h.ForgetLog()
	require.NoError(t, h.Free(hd))
	_, err = layers.Of(st).Alloc.Resolve(hd)
	require.ErrorIs(t, err, shmstore.ErrStaleHandle)
}

// TestReadOnlyOpenIsForInspection: a read-only open gives Stats and
// Check, and says plainly that it runs no transaction.
func TestReadOnlyOpenIsForInspection(t *testing.T) {
	dir := testDir(t)
	st, err := shmstore.Open("ro", shmstore.Options{Dir: dir})
	require.NoError(t, err)
	require.NoError(t, st.Set("a", 1))
	require.NoError(t, st.Close())
	ro, err := shmstore.Open("ro", shmstore.Options{Dir: dir, ReadOnly: true})
	require.NoError(t, err)
	defer ro.Close()
	require.NoError(t, ro.Check())
	require.NotZero(t, mustStats(t, ro).UsedBytes)
	_, err = ro.Get("a")
	require.ErrorIs(t, err, shmstore.ErrReadOnly)
	require.Contains(t, err.Error(), "Options.ReadOnly")
	_, err = ro.Recover() // was ErrBadOption, which the C ABI called a bad argument
	require.ErrorIs(t, err, shmstore.ErrReadOnly)
}

// mustStats is st.Stats, failing the test on an error.
func mustStats(tb testing.TB, st *shmstore.Store) shmstore.Stats {
	tb.Helper()
	s, err := st.Stats()
	require.NoError(tb, err)
	return s
}

// TestStoreMethodsAfterClose: every method of a closed Store that reads
// the store fails with ErrClosed; none faults (the regions are unmapped)
// or answers as if the store were empty.
func TestStoreMethodsAfterClose(t *testing.T) {
	dir := shmtest.Dir(t)
	st, err := shmstore.Open("t", shmstore.Options{Dir: dir})
	require.NoError(t, err)
	require.NoError(t, st.SetInt("n", 1))
	require.NoError(t, st.Close())
	closed := func(what string, err error) {
		t.Helper()
		require.ErrorIs(t, err, shmstore.ErrClosed, what)
	}
	_, err = st.Stats()
	closed("Stats", err)
	_, err = st.Problems()
	closed("Problems", err)
	closed("Check", st.Check())
	_, err = st.Recover()
	closed("Recover", err)
	_, err = st.Get("n")
	closed("Get", err)
	closed("Set", st.SetInt("n", 2))
	closed("Update", st.Update(func(*shmstore.Tx) error { return nil }))
	closed("View", st.View(func(*shmstore.Tx) error { return nil }))
	_, err = st.Export("")
	closed("Export", err)
	_, err = st.Begin(false)
	closed("Begin", err)
	closed("Close", st.Close())
	require.Equal(t, "t", st.Name())
	require.Equal(t, filepath.Join(dir, "t"), st.Dir())
}

// TestKeyTooLong: a key longer than MaxKeyLen is too large (ErrTooLarge),
// not of the wrong type, wherever it is given; one of MaxKeyLen bytes is
// taken.
func TestKeyTooLong(t *testing.T) {
	st := openTest(t)
	long := strings.Repeat("k", shmstore.MaxKeyLen+1)
	err := st.SetInt(long, 1)
	require.ErrorIs(t, err, shmstore.ErrTooLarge)
	require.NotErrorIs(t, err, shmstore.ErrTypeMismatch)
	require.ErrorIs(t, st.Update(func(tx *shmstore.Tx) error { return tx.Root().Set([]byte(long), 1) }), shmstore.ErrTooLarge)
	_, err = st.Get(long)
	require.ErrorIs(t, err, shmstore.ErrTooLarge)
	require.NoError(t, st.SetInt(long[1:], 1))
	n, err := st.GetInt(long[1:])
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
}

// TestStatsWhileACloseIsRefused: a Close that finds a transaction running
// is refused and the store stays open, so Stats in that moment must not
// say closed (found by review: Stats read the closing flag that the
// refused Close was about to take back).
func TestStatsWhileACloseIsRefused(t *testing.T) {
	st := openTest(t)
	hold, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- st.Update(func(*shmstore.Tx) error { close(hold); <-release; return nil })
	}()
	<-hold
	var stop atomic.Bool
	closer := make(chan error, 1)
	go func() {
		for !stop.Load() {
			if err := st.Close(); !errors.Is(err, shmstore.ErrInUse) {
				closer <- fmt.Errorf("Close while a transaction runs: %v", err)
				return
			}
		}
		closer <- nil
	}()
	var bad error
	for end := time.Now().Add(500 * time.Millisecond); bad == nil && time.Now().Before(end); {
		if _, err := st.Stats(); err != nil {
			bad = err
		}
	}
	stop.Store(true)
	require.NoError(t, <-closer)
	close(release)
	require.NoError(t, <-done)
	require.NoError(t, bad, "Stats on an open store")
}
