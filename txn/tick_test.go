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

// requireIdleHeapsEmpty fails the test if an idle slot's heap keeps a
// superblock.
func requireIdleHeapsEmpty(t *testing.T, e *Engine, when string) {
	t.Helper()
	for i := range e.pool.cells {
		if tx := e.pool.cells[i].Load(); tx != nil {
			require.Zero(t, tx.heap.Current(), "idle slot %d keeps superblocks %s", tx.slot, when)
		}
	}
}

// allocTx runs a transaction whose slot's heap takes a superblock.
func allocTx(t *testing.T, e *Engine) {
	t.Helper()
	require.NoError(t, e.Run(false, func(tx *Tx) error {
		_, _, err := tx.Alloc(40)
		return err
	}))
}

// TestTickerRunsOnlyWhileTransactionsStartOften: transactions that start
// often run the engine's ticker; it stops after idleTicks ticks without
// one, having handed back what idle slots' heaps hold (so an AskTrim
// finds nothing here while it does not run). Transactions that start
// seldom (a wait in 100 ms slices) start no ticker: each reads the time
// itself, and hands back its heap when it goes idle. Every start is
// stamped with its time, not a stale tick's.
func TestTickerRunsOnlyWhileTransactionsStartOften(t *testing.T) {
	ev := newEnv(t, true)
	for range 50 {
		allocTx(t, ev.e)
	}
	require.Equal(t, uint32(1), ev.e.ticking.Load(), "transactions in a row start the ticker")
	waitTicking(t, ev.e, 0)
	requireIdleHeapsEmpty(t, ev.e, "after the ticker stopped")

	for range 3 {
		time.Sleep(3 * tickPeriod)
		before := time.Now().UnixNano()
		var started int64
		require.NoError(t, ev.e.Run(false, func(tx *Tx) error {
			started = tx.sp.Started.Load()
			_, _, err := tx.Alloc(40)
			return err
		}))
		require.GreaterOrEqual(t, started, before, "a start is stamped with its own time")
		require.Zero(t, ev.e.ticking.Load(), "a transaction now and then starts no ticker")
		requireIdleHeapsEmpty(t, ev.e, "after a transaction went idle with no ticker")
	}
}
