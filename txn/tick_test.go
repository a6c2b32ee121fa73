//go:build linux && (amd64 || arm64)

package txn

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// waitTicking waits (up to 5 s) until the engine's ticker is running (1)
// or stopped (0), and fails the test if it does not get there.
func waitTicking(t *testing.T, e *Engine, want uint32) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.ticking.Load() != want {
		if time.Now().After(deadline) {
			t.Fatalf("ticker: ticking = %d after 5 s, want %d", e.ticking.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestTickerStopsWhenIdle: an engine whose process runs no transaction
// stops its ticker (an idle process takes no CPU), having handed back
// what its idle slots' heaps held (so an AskTrim finds nothing here while
// it sleeps); the next transaction starts it again, with the time of that
// start, not the time it stopped.
func TestTickerStopsWhenIdle(t *testing.T) {
	ev := newEnv(t, true)
	require.NoError(t, ev.e.Run(false, func(tx *Tx) error {
		_, _, err := tx.Alloc(40) // the slot's heap takes a superblock
		return err
	}))
	require.Equal(t, uint32(1), ev.e.ticking.Load(), "a transaction starts the ticker")
	waitTicking(t, ev.e, 0)
	for i := range ev.e.pool.cells {
		if tx := ev.e.pool.cells[i].Load(); tx != nil {
			require.Zero(t, tx.heap.Current(), "idle slot %d keeps superblocks after the ticker stopped", tx.slot)
		}
	}
	time.Sleep(300 * time.Millisecond) // stopped for a while: the clock is stale
	before := time.Now().UnixNano()
	var started int64
	require.NoError(t, ev.e.Run(true, func(tx *Tx) error {
		started = tx.sp.Started.Load()
		return nil
	}))
	require.GreaterOrEqual(t, started, before, "a transaction after a stop is stamped with the time it started")
	require.Equal(t, uint32(1), ev.e.ticking.Load())
	waitTicking(t, ev.e, 0)
}
