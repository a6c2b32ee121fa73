//go:build linux && (amd64 || arm64)

package e2e

// Freed memory comes back to writers that need it (the issue of the full
// store): two processes fill a small store to ErrOutOfMemory with keys of
// their own, then, round after round, each deletes all its keys and
// writes all its values back. Every value must be written back in every
// round, at once: what the deletes retired is collected, the heaps hand
// back what is wholly free, and a writer that finds the store full makes
// that happen before it reports ErrOutOfMemory.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
	"github.com/shmstore/shmstore/internal/proctest"
	"github.com/shmstore/shmstore/shm/shmtest"
)

const (
	refillWorkers = 2
	refillRounds  = 5
	// refillValue is the size of every value: the 32 KiB.
	refillValue = 32 << 10
)

// refillOptions make the store of the test: 16 MiB regions, 64 MiB at
// most, as in the issue.
func refillOptions(dir string) shmstore.Options {
	return shmstore.Options{Dir: dir, RegionSize: 16 << 20, MaxSize: 64 << 20, Create: shmstore.MustCreate}
}

// refillReport is one line a refill worker prints after each phase.
type refillReport struct {
	Phase   string `json:"phase"`   // ready, filled, emptied, rewritten, done
	Keys    int    `json:"keys"`    // filled: the keys it wrote before ErrOutOfMemory
	Used    uint64 `json:"used"`    // emptied: the store's used bytes after its deletes
	Written int    `json:"written"` // rewritten: values written back
	Failed  string `json:"failed"`  // rewritten: the first write that failed
}

func refillKey(worker, i int) string { return fmt.Sprintf("refill%d/k%06d", worker, i) }

func refillValueOf(worker, i int) string {
	return strings.Repeat(string(rune('a'+(worker*7+i)%26)), refillValue)
}

// refillDelete deletes a worker's n keys: all in one transaction, or one
// transaction each.
func refillDelete(st *shmstore.Store, worker, n int, together bool) error {
	if together {
		return st.Update(func(tx *shmstore.Tx) error {
			d, err := tx.Root().GetDict(fmt.Sprintf("refill%d", worker))
			if err != nil {
				return err
			}
			for i := 0; i < n; i++ {
				if err := d.Delete(fmt.Sprintf("k%06d", i)); err != nil {
					return fmt.Errorf("delete key %d: %w", i, err)
				}
			}
			return nil
		})
	}
	for i := 0; i < n; i++ {
		if err := st.Delete(refillKey(worker, i)); err != nil {
			return fmt.Errorf("delete key %d: %w", i, err)
		}
	}
	return nil
}

// refillWorker says it is ready, then waits for a line on stdin before it
// fills, before each of its rounds of deleting every key it wrote (odd
// rounds in one transaction, even ones a key a transaction) and before
// writing every value back, and before it ends; it prints a report after
// each phase.
func refillWorker(st *shmstore.Store, w roleEnvironment) (any, error) {
	in := bufio.NewReader(os.Stdin)
	wait := func() error {
		_, err := in.ReadString('\n')
		return err
	}
	report := func(r refillReport) error { return proctest.Emit(r) }
	if err := report(refillReport{Phase: "ready"}); err != nil {
		return nil, err
	}
	if err := wait(); err != nil { // both fill at once
		return nil, err
	}
	n := 0
	for ; ; n++ {
		err := st.Set(refillKey(w.Worker, n), refillValueOf(w.Worker, n))
		if errors.Is(err, shmstore.ErrOutOfMemory) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("fill key %d: %w", n, err)
		}
	}
	if err := report(refillReport{Phase: "filled", Keys: n}); err != nil {
		return nil, err
	}
	for round := 1; round <= refillRounds; round++ {
		if err := wait(); err != nil {
			return nil, err
		}
		if err := refillDelete(st, w.Worker, n, round%2 == 1); err != nil {
			return nil, fmt.Errorf("round %d: %w", round, err)
		}
		stats, err := st.Stats()
		if err != nil {
			return nil, err
		}
		if err := report(refillReport{Phase: "emptied", Used: stats.UsedBytes}); err != nil {
			return nil, err
		}
		if err := wait(); err != nil {
			return nil, err
		}
		r := refillReport{Phase: "rewritten"}
		for i := 0; i < n; i++ {
			if err := st.Set(refillKey(w.Worker, i), refillValueOf(w.Worker, i)); err != nil {
				if r.Failed == "" {
					// What the store holds then, class by class.
					r.Failed = fmt.Sprintf("key %d: %v", i, err)
					s := layers.Of(st).Alloc.Stats()
					for _, c := range s.Classes {
						r.Failed += fmt.Sprintf("\n  %d-byte blocks: %d superblocks (%d owned by heaps), %d used, %d free",
							c.Size, c.Superblocks, c.Owned, c.BlocksUsed, c.BlocksFree)
					}
					r.Failed += fmt.Sprintf("\n  %d large blocks, %d free superblocks", s.LargeBlocks, s.FreeSuperblocks)
				}
				continue
			}
			r.Written++
		}
		if err := report(r); err != nil {
			return nil, err
		}
	}
	if err := wait(); err != nil {
		return nil, err
	}
	return refillReport{Phase: "done", Keys: n}, nil
}

func TestRefillAfterDeleteAll(t *testing.T) {
	dir := shmtest.Dir(t)
	st, err := shmstore.Open(storeName, refillOptions(dir))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	procs := make([]*proc, refillWorkers)
	for i := range procs {
		procs[i] = startProc(t, dir, "refill-worker", i, 0)
	}
	goAll := func() {
		for _, p := range procs {
			_, err := p.Stdin().Write([]byte("go\n"))
			require.NoError(t, err)
		}
	}
	// reports reads each worker's next report, of the phase expected.
	reports := func(phase string) []refillReport {
		rs := make([]refillReport, len(procs))
		for i, p := range procs {
			p.DecodeLine(&rs[i])
			require.Equal(t, phase, rs[i].Phase, "%s", p.Stderr())
		}
		return rs
	}
	reports("ready")
	goAll()
	keys := make([]int, refillWorkers)
	for i, r := range reports("filled") {
		require.Positive(t, r.Keys)
		keys[i] = r.Keys
	}
	baseline := mustStats(t, st).UsedBytes
	t.Logf("filled: %v keys of %d bytes; used %d bytes of %d", keys, refillValue, baseline, mustStats(t, st).MaxBytes)
	for round := 1; round <= refillRounds; round++ {
		goAll()
		var used []uint64
		for _, r := range reports("emptied") {
			used = append(used, r.Used)
		}
		emptied := mustStats(t, st).UsedBytes
		goAll()
		var written []int
		var failed []string
		for i, r := range reports("rewritten") {
			written = append(written, r.Written)
			if r.Written != keys[i] {
				failed = append(failed, fmt.Sprintf("worker %d: %d of %d written back, first failure %s", i, r.Written, keys[i], r.Failed))
			}
		}
		t.Logf("round %d: used bytes after each worker emptied %v (%d once both had); values written back %v of %v",
			round, used, emptied, written, keys)
		require.Empty(t, failed, "round %d", round)
	}
	goAll()
	for _, p := range procs {
		var r refillReport
		p.Result(&r)
		require.NoError(t, p.Wait())
	}
	requireQuiet(t, st)
	require.NoError(t, st.Check())
}
