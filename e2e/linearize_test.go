//go:build linux && (amd64 || arm64)

package e2e

// Linearizability (DESIGN.md section 10): three processes run concurrent
// get / set / delete / compare-and-set operations on a few keys of a Dict,
// recording call and return times with the wall clock (shared by every
// process on the machine); the test merges the histories and checks each
// with porcupine against a model of a map.
//
// One launch of the workers produces many independent histories: history h
// runs on keys of its own. The test starts each history in every worker at
// once through a barrier of pipes (each worker says "ready" on a pipe of
// its own, the test answers "go" on each worker's stdin once all are
// ready), so the workers' operations overlap, and the barrier owes nothing
// to the store under test.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/proctest"
)

const (
	linDict    = "lin"
	linWorkers = 3
	linKeys    = 3   // keys per history
	linMaxOps  = 100 // operations per worker per history, at most
	// linSpan is how long a worker keeps operating in one history (unless
	// it reaches linMaxOps first): long against the spread of the workers'
	// wake-ups at the barrier (about a millisecond here), so that they
	// overlap.
	linSpan   = 3 * time.Millisecond
	linHEnv   = "SHMSTORE_LIN_HISTORIES"
	linOutEnv = "SHMSTORE_LIN_OUT"
)

// linOp is one operation of a history, as recorded by a worker.
type linOp struct {
	H      int    `json:"h"`
	Key    int    `json:"k"`
	Client int    `json:"c"`
	Kind   string `json:"op"`          // get, set, del, cas
	Arg    int64  `json:"a,omitempty"` // set: the value; cas: the expected value
	Arg2   int64  `json:"b,omitempty"` // cas: the new value
	Found  bool   `json:"f,omitempty"` // get: present; del: existed; cas: swapped
	Val    int64  `json:"v,omitempty"` // get: the value read
	Call   int64  `json:"call"`        // wall clock, ns
	Ret    int64  `json:"ret"`
}

func linKey(h, k int) string { return fmt.Sprintf("h%d-k%d", h, k) }

// linValue encodes value n as a String whose length varies with n, so
// that the blobs behind values come in several size classes.
func linValue(n int64) string { return fmt.Sprintf("v%d-%s", n, strings.Repeat("x", int(n%48))) }

func parseLinValue(v shmstore.Value) (int64, error) {
	s, err := v.AsString()
	if err != nil {
		return 0, err
	}
	num, _, ok := strings.Cut(strings.TrimPrefix(s, "v"), "-")
	if !ok || !strings.HasPrefix(s, "v") {
		return 0, fmt.Errorf("value %q is not one the test wrote", s)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err == nil && s != linValue(n) {
		err = fmt.Errorf("value %q is not one the test wrote", s)
	}
	return n, err
}

type linWorkerResult struct {
	Ops       int `json:"ops"`
	Histories int `json:"histories"`
}

// linWorker runs its part of every history, each when the test says go,
// and writes its operations, one JSON object a line, to the file the test
// names.
func linWorker(st *shmstore.Store, w roleEnvironment) (any, error) {
	nh, err := w.int(linHEnv)
	if err != nil {
		return nil, err
	}
	ready := os.NewFile(3, "ready") // the barrier: "ready" out, "go" in on stdin
	goes := bufio.NewReader(os.Stdin)
	f, err := os.Create(os.Getenv(linOutEnv))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	rng := rand.New(rand.NewPCG(w.Seed, uint64(w.Worker)))
	var res linWorkerResult
	var ops []linOp
	next := int64(w.Worker) * 1_000_000_000 // values unique to this worker
	for h := 0; h < int(nh); h++ {
		if _, err := ready.Write([]byte{'r'}); err != nil {
			return nil, fmt.Errorf("history %d: barrier: %w", h, err)
		}
		if b, err := goes.ReadByte(); err != nil || b != 'g' {
			return nil, fmt.Errorf("history %d: barrier: read %q: %v", h, b, err)
		}
		res.Histories++
		ops = ops[:0]
		last := map[int]int64{} // the last value this worker saw or wrote per key: CAS expects it
		for span := time.Now().Add(linSpan); len(ops) < linMaxOps && time.Now().Before(span); {
			k := rng.IntN(linKeys)
			path := linDict + "/" + linKey(h, k)
			op := linOp{H: h, Key: k, Client: w.Worker}
			var err error
			switch r := rng.IntN(100); {
			case r < 30:
				op.Kind = "get"
				op.Call = time.Now().UnixNano()
				var v shmstore.Value
				v, err = st.Get(path)
				op.Ret = time.Now().UnixNano()
				if errors.Is(err, shmstore.ErrKeyNotFound) {
					err = nil
				} else if err == nil {
					op.Found = true
					if op.Val, err = parseLinValue(v); err == nil {
						last[k] = op.Val
					}
				}
			case r < 55:
				op.Kind = "set"
				next++
				op.Arg = next
				op.Call = time.Now().UnixNano()
				err = st.Set(path, linValue(op.Arg))
				op.Ret = time.Now().UnixNano()
				last[k] = op.Arg
			case r < 70:
				op.Kind = "del"
				op.Call = time.Now().UnixNano()
				err = st.Delete(path)
				op.Ret = time.Now().UnixNano()
				op.Found = err == nil
				if errors.Is(err, shmstore.ErrKeyNotFound) {
					err = nil
				}
			default:
				op.Kind = "cas"
				next++
				op.Arg, op.Arg2 = last[k], next
				if rng.IntN(4) == 0 {
					op.Arg = -1 // never stored: the compare must fail
				}
				op.Call = time.Now().UnixNano()
				err = st.Update(func(tx *shmstore.Tx) error {
					op.Found = false
					d, err := tx.Root().GetDict(linDict)
					if errors.Is(err, shmstore.ErrKeyNotFound) {
						return nil // no key was ever set
					}
					if err != nil {
						return err
					}
					v, ok, err := d.Lookup(linKey(h, k))
					if err != nil || !ok {
						return err
					}
					cur, err := parseLinValue(v)
					if err != nil || cur != op.Arg {
						return err
					}
					op.Found = true
					return d.Set(linKey(h, k), linValue(op.Arg2))
				})
				op.Ret = time.Now().UnixNano()
				if op.Found {
					last[k] = op.Arg2
				}
			}
			if err != nil {
				return nil, fmt.Errorf("history %d: %s %s: %w", h, op.Kind, path, err)
			}
			ops = append(ops, op) // written out after the history: no I/O between operations
			res.Ops++
			// A short random pause (spinning: a sleep this short would take
			// a timer's granularity), so that the interleavings vary.
			for pause := time.Now().Add(time.Duration(rng.IntN(10)) * time.Microsecond); time.Now().Before(pause); {
			}
		}
		for _, op := range ops {
			if err := enc.Encode(op); err != nil {
				return nil, err
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	return res, f.Close()
}

// linModel is a map from key to value, partitioned by key: the state of a
// partition is one key's (present, value).
type linState struct {
	Present bool
	Val     int64
}

var linModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[int][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(linOp).Key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]int, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Ints(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return linState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(linState), input.(linOp), output.(linOp)
		switch in.Kind {
		case "get":
			return out.Found == s.Present && (!s.Present || out.Val == s.Val), s
		case "set":
			return true, linState{Present: true, Val: in.Arg}
		case "del":
			return out.Found == s.Present, linState{}
		case "cas":
			swap := s.Present && s.Val == in.Arg
			if out.Found != swap {
				return false, s
			}
			if swap {
				return true, linState{Present: true, Val: in.Arg2}
			}
			return true, s
		}
		return false, s
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linOp), output.(linOp)
		switch in.Kind {
		case "get":
			if !out.Found {
				return fmt.Sprintf("get(k%d) -> absent", in.Key)
			}
			return fmt.Sprintf("get(k%d) -> %d", in.Key, out.Val)
		case "set":
			return fmt.Sprintf("set(k%d, %d)", in.Key, in.Arg)
		case "del":
			return fmt.Sprintf("del(k%d) -> existed %v", in.Key, out.Found)
		}
		return fmt.Sprintf("cas(k%d, %d, %d) -> %v", in.Key, in.Arg, in.Arg2, out.Found)
	},
	DescribeState: func(state any) string {
		s := state.(linState)
		if !s.Present {
			return "absent"
		}
		return strconv.FormatInt(s.Val, 10)
	},
}

func linOperations(ops []linOp) []porcupine.Operation {
	out := make([]porcupine.Operation, len(ops))
	for i, op := range ops {
		out[i] = porcupine.Operation{ClientId: op.Client - 1, Input: op, Call: op.Call, Output: op, Return: op.Ret}
	}
	return out
}

// TestLinearizabilityModel: the model rejects what it must, so that a pass
// of TestLinearizability means something.
func TestLinearizabilityModel(t *testing.T) {
	ok := []linOp{
		{Client: 1, Kind: "set", Arg: 1, Call: 0, Ret: 10},
		{Client: 2, Kind: "cas", Arg: 1, Arg2: 2, Found: true, Call: 20, Ret: 30},
		{Client: 1, Kind: "get", Found: true, Val: 2, Call: 40, Ret: 50},
		{Client: 2, Kind: "del", Found: true, Call: 60, Ret: 70},
		{Client: 3, Kind: "get", Call: 80, Ret: 90},
	}
	require.True(t, porcupine.CheckOperations(linModel, linOperations(ok)))
	// A stale read after a completed write.
	stale := append([]linOp(nil), ok[:2]...)
	stale = append(stale, linOp{Client: 3, Kind: "get", Found: true, Val: 1, Call: 40, Ret: 50})
	require.False(t, porcupine.CheckOperations(linModel, linOperations(stale)))
	// Two CAS from the same value both succeeding.
	double := []linOp{ok[0],
		{Client: 2, Kind: "cas", Arg: 1, Arg2: 2, Found: true, Call: 20, Ret: 30},
		{Client: 3, Kind: "cas", Arg: 1, Arg2: 3, Found: true, Call: 20, Ret: 30}}
	require.False(t, porcupine.CheckOperations(linModel, linOperations(double)))
	// A delete of a key that was never there said it existed.
	require.False(t, porcupine.CheckOperations(linModel, linOperations([]linOp{{Client: 1, Kind: "del", Found: true, Call: 0, Ret: 1}})))
	// Overlapping: a read may see either side of a concurrent write.
	conc := []linOp{ok[0],
		{Client: 2, Kind: "set", Arg: 5, Call: 20, Ret: 60},
		{Client: 3, Kind: "get", Found: true, Val: 1, Call: 30, Ret: 40},
		{Client: 1, Kind: "get", Found: true, Val: 5, Call: 45, Ret: 50}}
	require.True(t, porcupine.CheckOperations(linModel, linOperations(conc)))
}

// TestLinearizability: at least 100 histories of 3 processes, each
// linearizable.
func TestLinearizability(t *testing.T) {
	seed := testSeed(t)
	dir, st := newStore(t)
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		_, err := tx.Root().Dict(linDict)
		return err
	}))
	histories := 150
	if testing.Short() {
		histories = 120
	}
	out := t.TempDir()
	start := time.Now()
	var ws []*proc
	var readys []*os.File
	var goes []io.WriteCloser
	for w := 1; w <= linWorkers; w++ {
		r, wr, err := os.Pipe()
		require.NoError(t, err)
		t.Cleanup(func() { r.Close() })
		ws = append(ws, startProcWith(t, dir, "lin-worker", w, seed, proctest.Options{ExtraFiles: []*os.File{wr}},
			linHEnv+"="+strconv.Itoa(histories),
			linOutEnv+"="+filepath.Join(out, fmt.Sprintf("w%d.jsonl", w))))
		wr.Close()
		readys, goes = append(readys, r), append(goes, ws[len(ws)-1].Stdin())
	}
	// The barrier. A worker that fails closes its pipe (EOF); one that
	// hangs runs into the read deadline (a liveness guard, not a speed
	// bound).
	for h := 0; h < histories; h++ {
		for i, r := range readys {
			require.NoError(t, r.SetReadDeadline(time.Now().Add(time.Minute)))
			var b [1]byte
			if _, err := io.ReadFull(r, b[:]); err != nil {
				werr := ws[i].Wait()
				t.Fatalf("history %d: worker %d is not ready: %v; it exited with %v, stderr:\n%s", h, i+1, err, werr, ws[i].Stderr())
			}
		}
		for _, g := range goes {
			_, err := g.Write([]byte{'g'})
			require.NoError(t, err)
		}
	}
	for _, g := range goes {
		g.Close()
	}
	byH := make([][]linOp, histories)
	for i, p := range ws {
		var res linWorkerResult
		p.Result(&res)
		t.Logf("worker %d: %d operations in %d histories", i+1, res.Ops, res.Histories)
		f, err := os.Open(filepath.Join(out, fmt.Sprintf("w%d.jsonl", i+1)))
		require.NoError(t, err)
		dec := json.NewDecoder(f)
		n := 0
		for dec.More() {
			var op linOp
			require.NoError(t, dec.Decode(&op))
			require.True(t, op.H >= 0 && op.H < histories)
			require.LessOrEqual(t, op.Call, op.Ret)
			byH[op.H] = append(byH[op.H], op)
			n++
		}
		f.Close()
		require.Equal(t, res.Ops, n)
	}
	ran := time.Since(start)
	{
		var dur, skew []int64
		for _, hist := range byH {
			first := map[int]int64{}
			for _, op := range hist {
				dur = append(dur, op.Ret-op.Call)
				if _, ok := first[op.Client]; !ok {
					first[op.Client] = op.Call
				}
			}
			lo, hi := int64(1<<62), int64(0)
			for _, c := range first {
				lo, hi = min(lo, c), max(hi, c)
			}
			skew = append(skew, hi-lo)
		}
		sort.Slice(dur, func(i, j int) bool { return dur[i] < dur[j] })
		sort.Slice(skew, func(i, j int) bool { return skew[i] < skew[j] })
		t.Logf("operation latency p50 %v p90 %v p99 %v; first operations of the workers in a history within p50 %v p90 %v",
			time.Duration(dur[len(dur)/2]), time.Duration(dur[len(dur)*9/10]), time.Duration(dur[len(dur)*99/100]),
			time.Duration(skew[len(skew)/2]), time.Duration(skew[len(skew)*9/10]))
	}

	checked, ops, overlapping, casOK, casAll := 0, 0, 0, 0, 0
	checkStart := time.Now()
	for h, hist := range byH {
		clients := map[int]bool{}
		for _, op := range hist {
			clients[op.Client] = true
			if op.Kind == "cas" {
				casAll++
				if op.Found {
					casOK++
				}
			}
		}
		overlapping += countOverlapping(hist)
		ops += len(hist)
		if len(clients) < 2 {
			continue // not concurrent: checked all the same, not counted
		}
		res, info := porcupine.CheckOperationsVerbose(linModel, linOperations(hist), 30*time.Second)
		if res != porcupine.Ok {
			viz := filepath.Join(t.TempDir(), fmt.Sprintf("history-%d.html", h))
			if err := porcupine.VisualizePath(linModel, info, viz); err == nil {
				// t.TempDir is removed: keep a copy where the user can find it.
				if b, err := os.ReadFile(viz); err == nil {
					keep := filepath.Join(os.TempDir(), fmt.Sprintf("shmstore-lin-%d-history-%d.html", seed, h))
					_ = os.WriteFile(keep, b, 0o644)
					viz = keep
				}
			}
			dump, _ := json.MarshalIndent(hist, "", " ")
			t.Fatalf("history %d (%d operations) is %v; visualization: %s\n%s", h, len(hist), res, viz, dump)
		}
		checked++
	}
	t.Logf("%d histories of %d (%d operations, %.0f%% overlapping one of another process on the same key; %d/%d CAS swapped) linearizable; ran %v, checked in %v",
		checked, histories, ops, 100*float64(overlapping)/float64(max(ops, 1)), casOK, casAll,
		ran.Round(time.Millisecond), time.Since(checkStart).Round(time.Millisecond))
	require.GreaterOrEqual(t, checked, 100, "concurrent histories checked")
	require.Positive(t, overlapping, "some operations ran concurrently")
	require.Positive(t, casOK, "some CAS swapped")
	requireQuiet(t, st)
	require.NoError(t, st.Check())
}

// countOverlapping counts the operations whose interval overlaps that of
// an operation of another client on the same key.
func countOverlapping(hist []linOp) int {
	n := 0
	for i, a := range hist {
		for j, b := range hist {
			if i != j && a.Client != b.Client && a.Key == b.Key && a.Call < b.Ret && b.Call < a.Ret {
				n++
				break
			}
		}
	}
	return n
}
