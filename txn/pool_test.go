//go:build linux && (amd64 || arm64)

package txn

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/shmstore/shmstore/shm"
	"github.com/stretchr/testify/require"
)

// TestPoolMoreGoroutinesThanSlots: 12 goroutines share the process's 2
// slots (one of them held by a transaction that runs throughout); each transaction adds 1 to a cell. Every one gets a slot (a
// waiter is woken each time one goes idle: each Run has a deadline, so a
// lost wake-up fails instead of hanging), nothing is lost, no more than 2
// slots are ever leased, and a Close meanwhile refuses without closing.
func TestPoolMoreGoroutinesThanSlots(t *testing.T) {
	ev := newEnvWith(t, shm.Options{RegionSize: 8 << 20, MaxSize: 64 << 20, SlotsPerProc: 2}, true)
	cs := ev.cells(t, 1, 0)
	const goroutines, rounds = 12, 300
	var wg sync.WaitGroup
	errs := make(chan error, goroutines+2)
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				err := ev.e.RunContext(ctx, false, func(tx *Tx) error {
					v, err := read(tx, cs[0])
					if err != nil {
						return err
					}
					if err := tx.Lock(cs[0].lock(), AddrOf(cs[0].h, 0), false); err != nil {
						return err
					}
					return tx.AddWriter(&setWriter{cells: cs, vals: []uint64{v + 1}})
				})
				cancel()
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	stop, holding := make(chan struct{}), make(chan struct{})
	var closer sync.WaitGroup
	closer.Add(2)
	go func() { // one transaction runs throughout: Close must refuse
		defer closer.Done()
		errs <- ev.e.Run(true, func(tx *Tx) error {
			close(holding)
			<-stop
			return nil
		})
	}()
	<-holding
	go func() { // Close while transactions run: refused, nothing closed
		defer closer.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := ev.e.Close(); err == nil {
				errs <- errClosedWhileBusy
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	wg.Wait()
	close(stop)
	closer.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.EqualValues(t, goroutines*rounds, *cs[0].val())
	ev.e.mu.Lock()
	leases, idle := ev.e.leases, ev.e.pool.count()
	ev.e.mu.Unlock()
	require.LessOrEqual(t, leases, 2)
	require.Equal(t, leases, idle, "every leased slot is idle again")
}

var errClosedWhileBusy = errorString("Close succeeded while transactions ran")

type errorString string

func (e errorString) Error() string { return string(e) }
