//go:build linux && (amd64 || arm64)

package ipc

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/shm"
	"github.com/shmstore/shmstore/shm/shmtest"
)

func newTable(t *testing.T) *Table {
	st, err := shm.Open("t", shm.Options{Dir: shmtest.Dir(t), RegionSize: 1 << 20, MaxSize: 1 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, st.Close()) })
	return New(st)
}

// A wake between Prepare and Wait is not lost: Wait returns at once.
func TestWakeBeforeWaitIsNotLost(t *testing.T) {
	tb := newTable(t)
	tk := tb.Prepare(42)
	tb.Wake(42)
	done := make(chan struct{})
	go func() { tk.Wait(time.Hour); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait slept through a Wake that came before it")
	}
}

// A waiter sleeps until the word it watches changes and a Wake comes.
func TestWaiterWakesOnChange(t *testing.T) {
	tb := newTable(t)
	var word atomic.Uint32
	woke := make(chan struct{})
	go func() {
		for {
			tk := tb.Prepare(7)
			if word.Load() != 0 {
				close(woke)
				return
			}
			tk.Wait(time.Hour)
		}
	}()
	time.Sleep(10 * time.Millisecond) // let it park (not required for correctness)
	word.Store(1)
	tb.Wake(7)
	select {
	case <-woke:
	case <-time.After(10 * time.Second):
		t.Fatal("waiter not woken")
	}
}

// Every wait has a timeout: with no Wake at all, Wait returns (the test
// would hang otherwise).
func TestWaitTimesOut(t *testing.T) {
	tb := newTable(t)
	tk := tb.Prepare(9)
	tk.Wait(5 * time.Millisecond)
}

func TestBucketsSpread(t *testing.T) {
	tb := newTable(t)
	seen := map[*bucket]bool{}
	for k := uint64(0); k < 4096; k++ {
		seen[tb.bucketOf(k)] = true
	}
	require.Greater(t, len(seen), Buckets/2)
}
