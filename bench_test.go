//go:build linux && (amd64 || arm64)

package shmstore_test

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
	"github.com/shmstore/shmstore/shm/shmtest"
	"github.com/shmstore/shmstore/txn"
)

// Benchmarks of the store's API, each with an in-process baseline (a Go
// map[string]int64 guarded by a sync.RWMutex) measured in the same run.
// The baseline sub-benchmark ("map") runs first; the store's
// ("shmstore") then reports its ratio to it as "x-map".
//
// The memory benchmark runs one whole measurement per iteration (a second
// or more), so run the package with a time -benchtime (the default 1s
// gives one measurement), never "Nx":
//
//	go test -run '^$' -bench . -benchmem -benchtime 1s .
//
// The multi-process benchmarks (BenchmarkScaling, BenchmarkHotValue) are
// in ./e2e/, with their worker processes.

var benchOpts = shmstore.Options{RegionSize: 64 << 20, MaxSize: 1 << 30}

func openBench(b *testing.B, dir, name string) *shmstore.Store {
	b.Helper()
	o := benchOpts
	o.Dir = dir
	st, err := shmstore.Open(name, o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	return st
}

// benchMap is the baseline: what one process would use without a store.
type benchMap struct {
	mu sync.RWMutex
	m  map[string]int64
}

const benchKeys = 1000

func benchKey(i int) string { return fmt.Sprintf("k%04d", i) }

func benchKeyList() []string {
	ks := make([]string, benchKeys)
	for i := range ks {
		ks[i] = benchKey(i)
	}
	return ks
}

// newBenchMap is the baseline holding benchKeys keys.
func newBenchMap(val int64) *benchMap {
	m := &benchMap{m: make(map[string]int64, benchKeys)}
	for i := range benchKeys {
		m.m[benchKey(i)] = val
	}
	return m
}

// newBenchStore is a store whose root Dict holds benchKeys keys, loaded
// in one transaction (as an application loads its data).
func newBenchStore(b *testing.B, val int64) *shmstore.Store {
	st := openBench(b, shmtest.Dir(b), "bench")
	err := st.Update(func(tx *shmstore.Tx) error {
		r := tx.Root()
		for i := range benchKeys {
			if err := r.Set(benchKey(i), val); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return st
}

// benchVsMap runs the baseline and the store's version as sub-benchmarks, and
// reports the store's ns/op over the baseline's.
func benchVsMap(b *testing.B, baseline, store func(b *testing.B)) {
	var base float64
	b.Run("map", func(b *testing.B) {
		b.ReportAllocs()
		baseline(b)
		base = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	b.Run("shmstore", func(b *testing.B) {
		b.ReportAllocs()
		store(b)
		if base > 0 {
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/base, "x-map")
		}
	})
}

var benchSink int64

// BenchmarkGet: st.GetInt of a key of the root Dict (1000 keys), each in
// its own read-only transaction. Target: <= 3x the map.
func BenchmarkGet(b *testing.B) {
	keys := benchKeyList()
	benchVsMap(b, func(b *testing.B) {
		m := newBenchMap(7)
		i := 0
		for b.Loop() {
			m.mu.RLock()
			benchSink = m.m[keys[i%benchKeys]]
			m.mu.RUnlock()
			i++
		}
	}, func(b *testing.B) {
		st := newBenchStore(b, 7)
		i := 0
		for b.Loop() {
			v, err := st.GetInt(keys[i%benchKeys])
			if err != nil || v != 7 {
				b.Fatal(v, err)
			}
			i++
		}
	})
}

// BenchmarkSet: st.SetInt of an existing key of the root Dict, each in
// its own transaction. Target: <= 8x the map, no allocation. (st.Set
// with an int adds Go's boxing of the int into an any: 8 B for values
// beyond 255.)
func BenchmarkSet(b *testing.B) {
	keys := benchKeyList()
	benchVsMap(b, func(b *testing.B) {
		m := newBenchMap(7)
		i := 0
		for b.Loop() {
			m.mu.Lock()
			m.m[keys[i%benchKeys]] = int64(i)
			m.mu.Unlock()
			i++
		}
	}, func(b *testing.B) {
		st := newBenchStore(b, 7)
		i := 0
		for b.Loop() {
			if err := st.SetInt(keys[i%benchKeys], int64(i)); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkTransfer: one transaction that reads two balances and writes
// both back (moving 1 from one account to the next). Target: <= 600 ns.
// Both versions check afterwards that the total is unchanged.
func BenchmarkTransfer(b *testing.B) {
	const balance = 1000
	keys := benchKeyList()
	benchVsMap(b, func(b *testing.B) {
		m := newBenchMap(balance)
		i := 0
		for b.Loop() {
			from, to := keys[i%benchKeys], keys[(i+1)%benchKeys]
			m.mu.Lock()
			x, y := m.m[from], m.m[to]
			m.m[from], m.m[to] = x-1, y+1
			m.mu.Unlock()
			i++
		}
		var sum int64
		for _, v := range m.m {
			sum += v
		}
		if sum != benchKeys*balance {
			b.Fatalf("total %d", sum)
		}
	}, func(b *testing.B) {
		st := newBenchStore(b, balance)
		i := 0
		for b.Loop() {
			from, to := keys[i%benchKeys], keys[(i+1)%benchKeys]
			err := st.Update(func(tx *shmstore.Tx) error {
				r := tx.Root()
				x, err := r.GetInt(from)
				if err != nil {
					return err
				}
				y, err := r.GetInt(to)
				if err != nil {
					return err
				}
				if err := r.SetInt(from, x-1); err != nil {
					return err
				}
				return r.SetInt(to, y+1)
			})
			if err != nil {
				b.Fatal(err)
			}
			i++
		}
		var sum int64
		err := st.View(func(tx *shmstore.Tx) error {
			return tx.Root().Range(func(_, v shmstore.Value) bool {
				n, _ := v.AsInt()
				sum += n
				return true
			})
		})
		if err != nil || sum != benchKeys*balance {
			b.Fatalf("total %d: %v", sum, err)
		}
	})
}

const (
	bpeEntries = 1_000_000
	bpeBatch   = 10_000
)

func bpeKey(i int) string { return fmt.Sprintf("key-%07d", i) }

// BenchmarkDictBytesPerEntry: the store's used bytes (alloc Stats) per
// entry of a Dict of 1M string->int entries, inserted 10k per
// transaction; target <= 80 B/entry. Also reports reserved bytes
// (superblocks) per entry and the insert cost. The baseline is a Go
// map[string]int64 (HeapAlloc delta, keys included).
func BenchmarkDictBytesPerEntry(b *testing.B) {
	b.Run("map", func(b *testing.B) {
		var bpe float64
		for b.Loop() {
			var m0, m1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&m0)
			m := map[string]int64{}
			for i := range bpeEntries {
				m[bpeKey(i)] = int64(i)
			}
			runtime.GC()
			runtime.ReadMemStats(&m1)
			bpe = float64(m1.HeapAlloc-m0.HeapAlloc) / bpeEntries
			runtime.KeepAlive(m)
		}
		b.ReportMetric(bpe, "B/entry")
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/bpeEntries, "ns/insert")
	})
	b.Run("shmstore", func(b *testing.B) {
		dir := shmtest.Dir(b)
		var used, reserved float64
		var insert time.Duration
		round := 0
		for b.Loop() {
			u, r, d := benchDictBytes(b, dir, fmt.Sprintf("bpe%d", round))
			used, reserved, insert = used+u, reserved+r, insert+d
			round++
		}
		n := float64(round)
		b.ReportMetric(used/n, "B/entry")
		b.ReportMetric(reserved/n, "reserved-B/entry")
		b.ReportMetric(float64(insert.Nanoseconds())/n/bpeEntries, "ns/insert")
	})
}

// benchDictBytes fills a Dict of a new store and returns used and reserved
// bytes per entry and the time the inserts took; the store is removed.
func benchDictBytes(b *testing.B, dir, name string) (used, reserved float64, took time.Duration) {
	o := benchOpts
	o.Dir = dir
	st, err := shmstore.Open(name, o)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := st.Close(); err != nil {
			b.Error(err)
		}
		if err := shmstore.Remove(name, o, false); err != nil {
			b.Error(err)
		}
	}()
	if err := st.Update(func(tx *shmstore.Tx) error { _, err := tx.Root().Dict("big"); return err }); err != nil {
		b.Fatal(err)
	}
	benchCollect(b, st)
	s0 := mustStats(b, st)
	start := time.Now()
	keys := make([]string, bpeBatch)
	for base := 0; base < bpeEntries; base += bpeBatch {
		for i := range keys {
			keys[i] = bpeKey(base + i)
		}
		err := st.Update(func(tx *shmstore.Tx) error {
			d, err := tx.Root().GetDict("big")
			if err != nil {
				return err
			}
			for i, k := range keys {
				if err := d.Set(k, base+i); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	took = time.Since(start)
	benchCollect(b, st)
	s1 := mustStats(b, st)
	var n int
	if err := st.View(func(tx *shmstore.Tx) error {
		d, err := tx.Root().GetDict("big")
		if err != nil {
			return err
		}
		n, err = d.Len()
		return err
	}); err != nil || n != bpeEntries {
		b.Fatalf("Len %d: %v", n, err)
	}
	return float64(s1.UsedBytes-s0.UsedBytes) / bpeEntries, float64(s1.ReservedBytes-s0.ReservedBytes) / bpeEntries, took
}

// benchCollect frees what commits retired (old tables, entries) so that Stats
// counts only what is live.
func benchCollect(b *testing.B, st *shmstore.Store) {
	err := layers.Of(st).Engine.WithTx(func(tx *txn.Tx) error {
		_, err := layers.Of(st).Reclaim.Collect(tx.Heap())
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
}
