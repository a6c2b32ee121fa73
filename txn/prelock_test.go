//go:build linux && (amd64 || arm64)

package txn

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPrelockedViewAddsTheWordItFoundLocked: the bound that
// lockedViewAfter documents ("each attempt after that adds at most one
// word it had not read before (the one it found locked)") needs abort to
// add the word the conflict was found on to prev, besides tx.reads: the
// word found locked never reaches ReadEnd, so it was once never locked
// up front and the View can abort on it forever.
//
// The natural stream that does this: writers that read B and write A and
// B, with B below A in address order. Such a writer locks B, then waits
// for A, which the prelocked View holds; the View then reads B, finds it
// locked by another, and (holding prelocks, it must not wait) aborts;
// the writer commits; and again. Deterministic: each attempt starts one
// writer and waits until it holds B before reading B.
func TestPrelockedViewAddsTheWordItFoundLocked(t *testing.T) {
	ev := newEnv(t, true)
	cs := ev.cells(t, 2, 1)
	// B is the lower address, A the higher: a writer locks B first.
	B, A := cs[0], cs[1]
	if AddrOf(A.h, 0) < AddrOf(B.h, 0) {
		A, B = B, A
	}
	// writer: reads B, writes A and B (a transfer that needs only B's value).
	writer := func() error {
		return ev.e.Run(false, func(tx *Tx) error {
			v, err := read(tx, B)
			if err != nil {
				return err
			}
			for _, c := range []cell{B, A} {
				if err := tx.Lock(c.lock(), AddrOf(c.h, 0), false); err != nil {
					return err
				}
			}
			return tx.AddWriter(&setWriter{cells: []cell{B, A}, vals: []uint64{v + 1, *A.val() + 1}})
		})
	}
	const giveUp = 40
	attempts := 0
	var pending chan error // the last attempt's writer, which waited for our prelock
	err := ev.e.Run(true, func(tx *Tx) error {
		attempts++
		if pending != nil {
			require.NoError(t, <-pending)
			pending = nil
		}
		if _, err := read(tx, A); err != nil {
			return err
		}
		if attempts < giveUp {
			done := make(chan error, 1)
			go func() { done <- writer() }()
			if attempts <= lockedViewAfter {
				require.NoError(t, <-done) // committed: B is newer, A changed: the read of B aborts
			} else {
				// The writer holds B and waits for A (prelocked by us); or,
				// if we prelocked B too, waits for us to read it.
				deadline := time.Now().Add(5 * time.Second)
				pending = done
				for !isLocked(B.lock().Load()) { // locked by the writer, or prelocked by us
					select {
					case err := <-done:
						// It committed without waiting for us: A was not prelocked.
						require.NoError(t, err)
						pending = nil
						goto readB
					default:
					}
					require.True(t, time.Now().Before(deadline), "writer never locked B")
					time.Sleep(50 * time.Microsecond)
				}
			}
		}
	readB:
		_, err := read(tx, B)
		return err
	})
	require.NoError(t, err)
	if pending != nil {
		require.NoError(t, <-pending)
	}
	t.Logf("View attempts: %d", attempts)
	require.LessOrEqual(t, attempts, lockedViewAfter+2,
		"a View reading 2 words took %d attempts (gave up making writers at %d): the word it kept finding locked was never prelocked",
		attempts, giveUp)
}
