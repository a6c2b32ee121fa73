//go:build linux && (amd64 || arm64)

package shmstore_test

import (
	"fmt"
	"testing"

	"github.com/shmstore/shmstore"
)

// More of the store's single operations and read paths, each beside the
// same work on the RWMutex map (see bench_test.go for the scheme).

// BenchmarkDelete: st.Delete of an existing key of the root Dict, each in
// its own transaction. Every benchKeys deletes the keys are put back,
// with the timer stopped (in both versions).
func BenchmarkDelete(b *testing.B) {
	keys := benchKeyList()
	benchVsMap(b, func(b *testing.B) {
		m := newBenchMap(7)
		i := 0
		for b.Loop() {
			if i == benchKeys {
				b.StopTimer()
				for _, k := range keys {
					m.m[k] = 7
				}
				i = 0
				b.StartTimer()
			}
			m.mu.Lock()
			delete(m.m, keys[i])
			m.mu.Unlock()
			i++
		}
	}, func(b *testing.B) {
		st := newBenchStore(b, 7)
		i := 0
		for b.Loop() {
			if i == benchKeys {
				b.StopTimer()
				refill(b, st, keys)
				i = 0
				b.StartTimer()
			}
			if err := st.Delete(keys[i]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// refill puts every key of keys back into the root Dict, in one
// transaction.
func refill(b *testing.B, st *shmstore.Store, keys []string) {
	err := st.Update(func(tx *shmstore.Tx) error {
		r := tx.Root()
		for _, k := range keys {
			if err := r.SetInt(k, 7); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// insertKeys is how many distinct new keys BenchmarkInsert inserts before
// it starts again on an empty Dict (timer stopped).
const insertKeys = 100_000

// BenchmarkInsert: st.SetInt of a key the Dict does not have yet, each in
// its own transaction, into a Dict growing to 100k keys (then a fresh one).
// Target: <= 1.5x the map.
func BenchmarkInsert(b *testing.B) {
	keys := make([]string, insertKeys)
	for i := range keys {
		keys[i] = bpeKey(i)
	}
	benchVsMap(b, func(b *testing.B) {
		m := &benchMap{m: map[string]int64{}}
		i := 0
		for b.Loop() {
			if i == insertKeys {
				b.StopTimer()
				m.m, i = map[string]int64{}, 0
				b.StartTimer()
			}
			m.mu.Lock()
			m.m[keys[i]] = 1
			m.mu.Unlock()
			i++
		}
	}, func(b *testing.B) {
		st := openBench(b, b.TempDir(), "insert")
		round, i := 0, 0
		name := "d0"
		for b.Loop() {
			if i == insertKeys {
				b.StopTimer()
				if err := st.Delete(name); err != nil {
					b.Fatal(err)
				}
				round, i = round+1, 0
				name = fmt.Sprintf("d%d", round)
				b.StartTimer()
			}
			err := st.Update(func(tx *shmstore.Tx) error {
				d, err := tx.Root().Dict(name)
				if err != nil {
					return err
				}
				return d.SetInt(keys[i], 1)
			})
			if err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// iterEntries is the size of the Dict BenchmarkIterate walks.
const iterEntries = 100_000

// BenchmarkIterate: one read-only transaction that ranges over a Dict of
// 100k entries and adds up the values (ns/op is per whole walk; ns/entry
// per entry).
func BenchmarkIterate(b *testing.B) {
	keys := make([]string, iterEntries)
	for i := range keys {
		keys[i] = bpeKey(i)
	}
	benchVsMap(b, func(b *testing.B) {
		m := &benchMap{m: make(map[string]int64, iterEntries)}
		for _, k := range keys {
			m.m[k] = 1
		}
		for b.Loop() {
			var sum int64
			m.mu.RLock()
			for _, v := range m.m {
				sum += v
			}
			m.mu.RUnlock()
			if sum != iterEntries {
				b.Fatal(sum)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/iterEntries, "ns/entry")
	}, func(b *testing.B) {
		st := openBench(b, b.TempDir(), "iter")
		for lo := 0; lo < iterEntries; lo += bpeBatch {
			err := st.Update(func(tx *shmstore.Tx) error {
				d, err := tx.Root().Dict("d")
				if err != nil {
					return err
				}
				for _, k := range keys[lo : lo+bpeBatch] {
					if err := d.SetInt(k, 1); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		for b.Loop() {
			var sum int64
			err := st.View(func(tx *shmstore.Tx) error {
				sum = 0
				d, err := tx.Root().GetDict("d")
				if err != nil {
					return err
				}
				return d.Range(func(_, v shmstore.Value) bool {
					n, _ := v.AsInt()
					sum += n
					return true
				})
			})
			if err != nil || sum != iterEntries {
				b.Fatal(sum, err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/iterEntries, "ns/entry")
	})
}

// BenchmarkView10: one read-only transaction that reads 10 keys of the
// root Dict (1000 keys).
func BenchmarkView10(b *testing.B) {
	keys := benchKeyList()
	benchVsMap(b, func(b *testing.B) {
		m := newBenchMap(7)
		i := 0
		for b.Loop() {
			var sum int64
			m.mu.RLock()
			for j := range 10 {
				sum += m.m[keys[(i+j)%benchKeys]]
			}
			m.mu.RUnlock()
			if sum != 70 {
				b.Fatal(sum)
			}
			i += 10
		}
	}, func(b *testing.B) {
		st := newBenchStore(b, 7)
		i := 0
		for b.Loop() {
			var sum int64
			err := st.View(func(tx *shmstore.Tx) error {
				sum = 0
				r := tx.Root()
				for j := range 10 {
					n, err := r.GetInt(keys[(i+j)%benchKeys])
					if err != nil {
						return err
					}
					sum += n
				}
				return nil
			})
			if err != nil || sum != 70 {
				b.Fatal(sum, err)
			}
			i += 10
		}
	})
}
