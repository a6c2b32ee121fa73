//go:build linux && (amd64 || arm64)

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
)

// ownSlot finds the slot this process owns in a txns report.
func ownSlot(t *testing.T, rep txnsReport) txnsSlot {
	t.Helper()
	var own []txnsSlot
	for _, s := range rep.Slots {
		if s.PID == uint32(os.Getpid()) {
			own = append(own, s)
		}
	}
	require.Len(t, own, 1, "%+v", rep.Slots)
	return own[0]
}

func TestTxns(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "tx")

	require.Regexp(t, `^store "tx": clock \d+, no slot in use or holding retired memory\n$`, mustRun(t, "--dir", dir, "txns", "tx"))
	var rep txnsReport
	runJSON(t, &rep, "--dir", dir, "txns", "tx")
	require.Equal(t, "tx", rep.Name)
	require.Empty(t, rep.Slots)
	clock0 := rep.Clock

	st := openAttached(t, dir, "tx")
	for i := range 3 {
		require.NoError(t, st.Set(fmt.Sprintf("k%d", i), i))
	}
	before := fingerprint(t, dir)
	runJSON(t, &rep, "--dir", dir, "txns", "tx")
	require.Equal(t, before, fingerprint(t, dir), "txns wrote to the store")
	require.Equal(t, clock0, rep.Clock, "commits that retire nothing do not write the clock")
	s := ownSlot(t, rep)
	require.Equal(t, txnsSlot{Slot: s.Slot, Proc: s.Proc, PID: uint32(os.Getpid()), Alive: true, Leased: true,
		State: "idle", Commits: 3}, s, "an idle slot, kept leased by the engine between transactions")

	// A transaction under way: active at a snapshot, with an age and an
	// attempt.
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		done <- st.View(func(tx *shmstore.Tx) error {
			if _, err := tx.Root().Get("k1"); err != nil {
				return err
			}
			select {
			case <-inside: // a re-run: already announced
			default:
				close(inside)
			}
			<-release
			return nil
		})
	}()
	<-inside
	runJSON(t, &rep, "--dir", dir, "txns", "tx")
	s = ownSlot(t, rep)
	require.True(t, s.Active)
	require.Equal(t, rep.Clock, s.RV)
	require.Greater(t, s.AgeSeconds, 0.0)
	require.Equal(t, uint32(1), s.Attempts)
	require.Equal(t, "idle", s.State, "a reader takes no locks and never commits")

	before = fingerprint(t, dir)
	out := mustRun(t, "--dir", dir, "txns", "tx")
	require.Equal(t, before, fingerprint(t, dir), "txns wrote to the store")
	for _, re := range []string{
		fmt.Sprintf(`^store "tx": clock %d, 1 slots in use or holding retired memory\n\n`, rep.Clock),
		`(?m)^SLOT +PROC +PID +ALIVE +LEASED +STATE +RV +AGE +ATTEMPTS +LOCKS +WAITS ON +COMMITS +ABORTS +RETIRED +OLDEST$`,
		fmt.Sprintf(`(?m)^%d +%d +%d +yes +yes +idle +%d +[0-9.]+(µs|ms|s) +1 +0 +- +3 +0 +0 +-$`,
			s.Slot, s.Proc, os.Getpid(), rep.Clock),
	} {
		require.Regexp(t, regexp.MustCompile(re), out)
	}
	close(release)
	require.NoError(t, <-done)
}

func TestTxnsUnknownStore(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	requireOneLineError(t, shmctl(t, "--dir", dir, "txns", "nosuch"), 1, `txns: no store "nosuch" in `+dir)
	requireOneLineError(t, shmctl(t, "--dir", dir, "procs", "nosuch"), 1, `procs: no store "nosuch" in `+dir)
}

// TestTxnsShowsRetry: a transaction sleeping in Retry shows as such, with
// the words it waits on, and not as active (it holds nothing).
func TestTxnsShowsRetry(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "rt")
	st := openAttached(t, dir, "rt")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- st.UpdateContext(ctx, func(tx *shmstore.Tx) error {
			if _, err := tx.Root().GetInt("go"); errors.Is(err, shmstore.ErrKeyNotFound) {
				return tx.Retry()
			} else if err != nil {
				return err
			}
			return nil
		})
	}()
	var rep txnsReport
	var s txnsSlot
	for s.RetryOn == 0 {
		time.Sleep(time.Millisecond)
		runJSON(t, &rep, "--dir", dir, "txns", "rt")
		for _, x := range rep.Slots {
			if x.PID == uint32(os.Getpid()) {
				s = x
			}
		}
	}
	require.False(t, s.Active, "a transaction in Retry publishes no snapshot")
	require.NotZero(t, s.WaitOn)
	require.Regexp(t, fmt.Sprintf(`(?m)^%d +.* retry: %d words \(0x[0-9a-f]+\.\.\.\) `, s.Slot, s.RetryOn), mustRun(t, "--dir", dir, "txns", "rt"))
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}
