//go:build linux && (amd64 || arm64)

package shmstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
)

func TestQueueFIFOAndTry(t *testing.T) {
	st := openTest(t)
	ctx := context.Background()
	for i := range 5 {
		require.NoError(t, st.Put(ctx, "q", i))
	}
	for i := range 5 {
		v, err := st.Take(ctx, "q")
		require.NoError(t, err)
		require.Equal(t, int64(i), v)
	}
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		q, err := tx.Root().GetQueue("q")
		if err != nil {
			return err
		}
		_, ok, err := q.TryGet()
		require.False(t, ok)
		return err
	}))
	// A List that is not a Queue is not taken for one.
	require.NoError(t, st.Set("plain", []int{1}))
	require.ErrorIs(t, st.Put(ctx, "plain", 2), shmstore.ErrTypeMismatch)
	require.NoError(t, st.Set("x", 1))
	require.ErrorIs(t, st.Put(ctx, "x", 2), shmstore.ErrTypeMismatch)
}

func TestBoundedQueueWaitsWhileFull(t *testing.T) {
	st := openTest(t)
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		q, err := tx.Root().Queue("q", 2)
		if err != nil {
			return err
		}
		require.Equal(t, 2, q.Cap())
		for i := range 2 {
			if err := q.Put(i); err != nil {
				return err
			}
		}
		ok, err := q.TryPut(99)
		require.False(t, ok, "a full Queue refuses TryPut")
		return err
	}))
	before := layers.Of(st).Engine.RetryWaits()
	done := make(chan struct{})
	go func() {
		defer close(done)
		require.NoError(t, st.Put(context.Background(), "q", 2)) // waits for room
	}()
	sleeping(t, st, before)
	v, err := st.Take(context.Background(), "q")
	require.NoError(t, err)
	require.Equal(t, int64(0), v)
	watchdog(t, 30*time.Second, done, "Put into a full Queue")
	all, err := st.Export("q")
	require.NoError(t, err)
	require.Equal(t, []any{int64(1), int64(2)}, all)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, st.Put(ctx, "q", 3), context.DeadlineExceeded, "still full: the wait ends with the context")
}

// TestQueueDeliversEachItemOnce: goroutines put and take concurrently;
// every item comes out exactly once, and takers sleep while it is empty.
func TestQueueDeliversEachItemOnce(t *testing.T) {
	st := openTest(t)
	const producers, consumers, per = 2, 3, 300
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	for c := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var got int64
				err := st.UpdateContext(ctx, func(tx *shmstore.Tx) error {
					q, err := tx.Root().Queue("jobs", 16)
					if err != nil {
						return err
					}
					v, err := q.Get()
					if err != nil {
						return err
					}
					got, err = v.AsInt()
					if err != nil {
						return err
					}
					done, err := tx.Root().Counter("done")
					if err != nil {
						return err
					}
					return done.AddBlind(1) // taken and recorded together
				})
				if err != nil {
					require.ErrorIs(t, err, context.Canceled, "consumer %d", c)
					return
				}
				mu.Lock()
				seen[got]++
				mu.Unlock()
			}
		}()
	}
	var pw sync.WaitGroup
	for p := range producers {
		pw.Add(1)
		go func() {
			defer pw.Done()
			for i := range per {
				require.NoError(t, st.Put(context.Background(), "jobs", int64(p*per+i)))
			}
		}()
	}
	pw.Wait()
	for {
		n, err := st.GetInt("done")
		require.NoError(t, err)
		if n == producers*per {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	wg.Wait()
	require.Len(t, seen, producers*per)
	for id, n := range seen {
		require.Equal(t, 1, n, "item %d delivered %d times", id, n)
	}
	require.NoError(t, st.Check())
}

// TestTakeCopiesContainers: Take of an item that is a container returns
// its contents (the item is unlinked when Take's transaction commits, so
// a Value naming it could not be read: a new user's trial lost a job that
// way), and the container is reclaimed, not leaked.
func TestTakeCopiesContainers(t *testing.T) {
	st := openTest(t)
	ctx := context.Background()
	require.NoError(t, st.Put(ctx, "jobs", map[string]any{"id": 7, "file": "a.csv"}))
	require.NoError(t, st.Put(ctx, "jobs", []any{1, "two", []any{3}}))
	v, err := st.Take(ctx, "jobs")
	require.NoError(t, err)
	require.Equal(t, map[string]any{"id": int64(7), "file": "a.csv"}, v)
	v, err = st.Take(ctx, "jobs")
	require.NoError(t, err)
	require.Equal(t, []any{int64(1), "two", []any{int64(3)}}, v)
	require.NoError(t, layers.Of(st).Engine.Collect())
	require.NoError(t, st.Check())
}
