//go:build linux && (amd64 || arm64)

package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/proctest"
)

// argsEnv is the command line of the "shmctl" role, as a JSON array: the
// role runs it as shmctl would, in a process of its own.
const argsEnv = "SHMCTL_TEST_ARGS"

func init() {
	proctest.Register("shmctl", func() int {
		var args []string
		if err := json.Unmarshal([]byte(os.Getenv(argsEnv)), &args); err != nil {
			return proctest.Fail(err)
		}
		return run(args, os.Stdout, os.Stderr)
	})
}

// startShmctl runs a shmctl command line in a process of its own (this
// test binary in the role "shmctl"); the harness kills it at cleanup if
// it still runs.
func startShmctl(t *testing.T, args ...string) *proctest.Proc {
	t.Helper()
	b, err := json.Marshal(args)
	require.NoError(t, err)
	return proctest.Start(t, "shmctl", proctest.Options{Env: []string{argsEnv + "=" + string(b)}, Name: "shmctl " + args[2]})
}

// waitRetrying waits until n slots of process pid sleep in Retry (a take
// on an empty Queue, a put on a full one).
func waitRetrying(t *testing.T, dir, name string, pid, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var rep txnsReport
		runJSON(t, &rep, "--dir", dir, "txns", name)
		waiting := 0
		for _, s := range rep.Slots {
			if s.PID == uint32(pid) && s.RetryOn > 0 {
				waiting++
			}
		}
		if waiting >= n {
			return
		}
		require.True(t, time.Now().Before(deadline), "%d of %d slots of pid %d in Retry: %+v", waiting, n, pid, rep.Slots)
		time.Sleep(time.Millisecond)
	}
}

// queueLen is the length of the Queue at path (which must exist).
func queueLen(t *testing.T, st *shmstore.Store, path ...any) int {
	t.Helper()
	var n int
	require.NoError(t, st.View(func(tx *shmstore.Tx) error {
		d := tx.Root()
		for _, k := range path[:len(path)-1] {
			var err error
			if d, err = d.GetDict(k); err != nil {
				return err
			}
		}
		q, err := d.GetQueue(path[len(path)-1])
		if err != nil {
			return err
		}
		n, err = q.Len()
		return err
	}))
	return n
}

// requireCheckClean runs check on the store: no problems.
func requireCheckClean(t *testing.T, dir, name string) {
	t.Helper()
	var chk checkReport
	runJSON(t, &chk, "--dir", dir, "check", name)
	require.True(t, chk.OK, "%+v", chk)
	require.Empty(t, chk.Problems)
}

// TestPutTake: put stores each JSON value as load would (objects as
// Dicts, arrays as Lists, Ints and Floats apart), or Strings with
// --string; a Go consumer sees those kinds; take gives them back in
// order, one line of JSON each.
func TestPutTake(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "pt")
	values := []string{`{"id": 7, "file": "<a&b>.csv"}`, `8`, `null`, `1.0`, `"text"`, `[1, {"a": []}]`, `true`, `-2.5e-7`}
	// A negative number would be a flag: values go after "--".
	out := mustRun(t, append([]string{"--dir", dir, "put", "pt", "jobs", "--"}, values...)...)
	require.Equal(t, "put 8 values into \"jobs\" of store \"pt\"\n", out)
	var rep putReport
	runJSON(t, &rep, "--dir", dir, "put", "pt", "jobs", "x", "y y", `{"not": "json"}`, "--string")
	require.Equal(t, putReport{Name: "pt", Path: "jobs", Values: 3}, rep)

	st := openAttached(t, dir, "pt")
	require.Equal(t, 11, queueLen(t, st, "jobs"))
	var kinds []shmstore.Kind
	require.NoError(t, st.View(func(tx *shmstore.Tx) error {
		kinds = kinds[:0]
		l, err := tx.Root().GetList("jobs") // a Queue is a List: read it without taking
		if err != nil {
			return err
		}
		n, err := l.Len()
		for i := 0; err == nil && i < n; i++ {
			var v shmstore.Value
			if v, err = l.Get(i); err == nil {
				kinds = append(kinds, v.Kind())
			}
		}
		return err
	}))
	require.Equal(t, []shmstore.Kind{shmstore.KindDict, shmstore.KindInt, shmstore.KindNone, shmstore.KindFloat,
		shmstore.KindString, shmstore.KindList, shmstore.KindBool, shmstore.KindFloat,
		shmstore.KindString, shmstore.KindString, shmstore.KindString}, kinds)

	out = mustRun(t, "--dir", dir, "take", "pt", "jobs", "--count", "10")
	require.Equal(t, `{"file":"<a&b>.csv","id":7}
8
null
1.0
"text"
[1,{"a":[]}]
true
-2.5e-7
"x"
"y y"
`, out)
	// --json changes nothing but Bytes: the output is JSON already.
	require.Equal(t, "\"{\\\"not\\\": \\\"json\\\"}\"\n", mustRun(t, "--dir", dir, "take", "pt", "jobs", "--json"))
	require.Equal(t, 0, queueLen(t, st, "jobs"))
	requireCheckClean(t, dir, "pt")
}

// TestPutTakePaths: a Queue under Dicts made on the way, at --key and
// --int-key keys; the root itself is no Queue, and a key holding
// something else is an error that changes nothing.
func TestPutTakePaths(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "pp")
	require.Equal(t, "put 2 values into \"a/b\" of store \"pp\"\n", mustRun(t, "--dir", dir, "put", "pp", "a/b", "1", "2"))
	require.Equal(t, "put 1 value into \"x/y/5\" of store \"pp\"\n",
		mustRun(t, "--dir", dir, "put", "pp", "/", "3", "--key", "x/y", "--int-key", "5"))
	st := openAttached(t, dir, "pp")
	require.Equal(t, 2, queueLen(t, st, "a", "b"))
	require.Equal(t, 1, queueLen(t, st, "x/y", int64(5)))
	require.Equal(t, "1\n2\n", mustRun(t, "--dir", dir, "take", "pp", "a", "--key", "b", "--count", "2"))
	require.Equal(t, "3\n", mustRun(t, "--dir", dir, "take", "pp", "--key", "x/y", "--int-key", "5"))

	require.NoError(t, st.Set("plain", map[string]any{"k": 1}))
	requireOneLineError(t, shmctl(t, "--dir", dir, "put", "pp", "plain", "1"), 1,
		`put: store "pp": put 0 of 1 values into "plain", then: "plain" is a Dict, not a Queue: put needs a Queue`,
		"type mismatch")
	requireOneLineError(t, shmctl(t, "--dir", dir, "take", "pp", "plain/k"), 1,
		`take: store "pp": took 0 of 1 items from "plain/k", then: "plain/k" is an Int, not a Queue: take needs a Queue`,
		"type mismatch")
	exp, err := st.Export("plain")
	require.NoError(t, err)
	require.Equal(t, map[string]any{"k": int64(1)}, exp)
	requireCheckClean(t, dir, "pp")
}

// TestPutTakeNotAQueue: put and take on a PATH that holds something
// other than a Queue say what it holds, that they need a Queue, and
// change nothing.
func TestPutTakeNotAQueue(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "nq")
	st := openAttached(t, dir, "nq")
	require.NoError(t, st.Set("d", map[string]any{"k": 1}))
	require.NoError(t, st.Set("l", []any{1}))
	require.NoError(t, st.Set("s", "text"))
	require.NoError(t, st.Set("i", 5))
	require.NoError(t, st.Set("n", nil))
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		_, err := tx.Root().Counter("c")
		return err
	}))
	for path, what := range map[string]string{"d": "a Dict", "l": "a List", "s": "a String", "i": "an Int",
		"n": "None", "c": "a Counter"} {
		for _, cmd := range []string{"put", "take"} {
			args := []string{"--dir", dir, cmd, "nq", path}
			if cmd == "put" {
				args = append(args, "1")
			}
			r := shmctl(t, args...)
			requireOneLineError(t, r, 1, fmt.Sprintf(`then: %q is %s, not a Queue: %s needs a Queue (it makes one where PATH is missing): type mismatch`,
				path, what, cmd))
			require.NotContains(t, r.stderr, "not List", "a Queue is a List inside: the message must not say so")
			require.NotContains(t, r.stderr, "objects:", "no internal names")
		}
	}
	exp, err := st.Export("d")
	require.NoError(t, err)
	require.Equal(t, map[string]any{"k": int64(1)}, exp)
	requireCheckClean(t, dir, "nq")
}

// TestTakeBytes: take prints Bytes as get does, base64 Strings; with
// --json they are tagged, {"$bytes": base64}, at any depth, so a String
// that is base64 reads apart; an item with a Dict whose only key is
// "$bytes" has no such form: take --json fails and leaves it.
func TestTakeBytes(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "tb")
	st := openAttached(t, dir, "tb")
	put := func(vals ...any) {
		for _, v := range vals {
			require.NoError(t, st.Put(t.Context(), "q", v))
		}
	}
	nested := map[string]any{"x": []any{[]byte{0, 0xff}, "AP8="}}
	put([]byte("hello"), "aGVsbG8=", nested, []byte{})
	require.Equal(t, "\"aGVsbG8=\"\n\"aGVsbG8=\"\n{\"x\":[\"AP8=\",\"AP8=\"]}\n\"\"\n",
		mustRun(t, "--dir", dir, "take", "tb", "q", "--count", "4"))
	put([]byte("hello"), "aGVsbG8=", nested, []byte{})
	require.Equal(t, `{"$bytes":"aGVsbG8="}
"aGVsbG8="
{"x":[{"$bytes":"AP8="},"AP8="]}
{"$bytes":""}
`, mustRun(t, "--dir", dir, "take", "tb", "q", "--count", "4", "--json"))

	put(map[string]any{"k": map[string]any{"$bytes": "aGk="}})
	requireOneLineError(t, shmctl(t, "--dir", dir, "take", "tb", "q", "--json"), 1,
		`took 0 of 1 items from "q", then: "q/k": a Dict whose only key is "$bytes" would read as tagged Bytes`)
	require.Equal(t, 1, queueLen(t, st, "q")) // left in the Queue
	require.Equal(t, "{\"k\":{\"$bytes\":\"aGk=\"}}\n", mustRun(t, "--dir", dir, "take", "tb", "q"))
	requireCheckClean(t, dir, "tb")
}

// TestPutMaxsize: put makes a missing Queue with --maxsize's bound, waits
// while it is full and, past --timeout, stops with what it put so far; a
// --maxsize other than the Queue's bound is refused.
func TestPutMaxsize(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "pm")
	r := shmctl(t, "--dir", dir, "put", "pm", "q", "1", "2", "3", "--maxsize", "2", "--timeout", "50ms")
	requireOneLineError(t, r, 1, `put: store "pm": put 2 of 3 values into "q", then: timed out after 50ms`)
	st := openAttached(t, dir, "pm")
	require.Equal(t, 2, queueLen(t, st, "q"))
	requireOneLineError(t, shmctl(t, "--dir", dir, "put", "pm", "q", "4", "--maxsize", "3", "--timeout", "5s"), 1,
		`"q" holds at most 2 items, not --maxsize 3`)
	requireOneLineError(t, shmctl(t, "--dir", dir, "take", "pm", "q", "--maxsize", "5", "--timeout", "5s"), 1,
		`"q" holds at most 2 items, not --maxsize 5`)
	mustRun(t, "--dir", dir, "put", "pm", "u", "1")
	requireOneLineError(t, shmctl(t, "--dir", dir, "put", "pm", "u", "2", "--maxsize", "2", "--timeout", "5s"), 1,
		`"u" is unbounded, not --maxsize 2`)
	require.Equal(t, 2, queueLen(t, st, "q"))
	require.Equal(t, 1, queueLen(t, st, "u"))
	// The bound it has, or none given: accepted.
	require.Equal(t, "1\n", mustRun(t, "--dir", dir, "take", "pm", "q", "--maxsize", "2"))
	mustRun(t, "--dir", dir, "put", "pm", "q", "5")
	require.Equal(t, "2\n5\n", mustRun(t, "--dir", dir, "take", "pm", "q", "--count", "2"))
	requireCheckClean(t, dir, "pm")
}

// TestTakeTimeout: take on an empty Queue stops after --timeout: exit 1
// when fewer than --count items came (those that did are printed),
// exit 0 for --count 0, which takes what there is.
func TestTakeTimeout(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "tt")
	requireOneLineError(t, shmctl(t, "--dir", dir, "take", "tt", "q", "--timeout", "20ms"), 1,
		`take: store "tt": took 0 of 1 items from "q", then: timed out after 20ms`)
	mustRun(t, "--dir", dir, "put", "tt", "q", "1", "2")
	r := shmctl(t, "--dir", dir, "take", "tt", "q", "--count", "3", "--timeout", "20ms")
	require.Equal(t, 1, r.code)
	require.Equal(t, "1\n2\n", r.stdout)
	require.Equal(t, "shmctl: take: store \"tt\": took 2 of 3 items from \"q\", then: timed out after 20ms\n", r.stderr)
	mustRun(t, "--dir", dir, "put", "tt", "q", "3", "4", "5")
	require.Equal(t, "3\n4\n5\n", mustRun(t, "--dir", dir, "take", "tt", "q", "--count", "0", "--timeout", "20ms"))
	require.Empty(t, mustRun(t, "--dir", dir, "take", "tt", "q", "--count", "0", "--timeout", "20ms"))
}

// TestTakeNoJSONForm: an item JSON cannot say is left in the Queue, and
// take fails.
func TestTakeNoJSONForm(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "nj")
	st := openAttached(t, dir, "nj")
	require.NoError(t, st.Put(t.Context(), "q", math.NaN()))
	requireOneLineError(t, shmctl(t, "--dir", dir, "take", "nj", "q"), 1, `took 0 of 1 items from "q", then:`, "NaN has no JSON form")
	require.Equal(t, 1, queueLen(t, st, "q"))
	v, err := st.Take(t.Context(), "q")
	require.NoError(t, err)
	require.True(t, math.IsNaN(v.(float64)))
}

// TestTakeWaitsForPut: takes wait in Retry on an empty Queue, and each
// item a later put brings goes to exactly one of them.
func TestTakeWaitsForPut(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "tw")
	const takers = 3
	results := make([]result, takers)
	var wg sync.WaitGroup
	for i := range takers {
		wg.Go(func() { results[i] = shmctl(t, "--dir", dir, "take", "tw", "q", "--count", "2", "--timeout", "30s") })
	}
	waitRetrying(t, dir, "tw", os.Getpid(), takers)
	mustRun(t, "--dir", dir, "put", "tw", "q", "1", "2", "3", "4", "5", "6")
	wg.Wait()
	var got []string
	for _, r := range results {
		require.Equal(t, 0, r.code, r.stderr)
		lines := strings.Fields(r.stdout)
		require.Len(t, lines, 2)
		got = append(got, lines...)
	}
	slices.Sort(got)
	require.Equal(t, []string{"1", "2", "3", "4", "5", "6"}, got)
}

// TestQueueExactlyOnce: producers put into a bounded Queue (so they wait
// too) while takers take; every value comes out exactly once, and each
// producer's in the order it put them.
func TestQueueExactlyOnce(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "eo")
	const producers, perProducer, takers = 2, 60, 3
	var wg sync.WaitGroup
	puts := make([]result, producers)
	for p := range producers {
		args := []string{"--dir", dir, "put", "eo", "q", "--maxsize", "5", "--timeout", "30s"}
		for i := range perProducer {
			args = append(args, fmt.Sprintf(`{"p": %d, "i": %d}`, p, i))
		}
		wg.Go(func() { puts[p] = shmctl(t, args...) })
	}
	takes := make([]result, takers)
	for i := range takers {
		n := strconv.Itoa(producers * perProducer / takers)
		wg.Go(func() {
			takes[i] = shmctl(t, "--dir", dir, "take", "eo", "q", "--maxsize", "5", "--count", n, "--timeout", "30s")
		})
	}
	wg.Wait()
	for _, r := range puts {
		require.Equal(t, 0, r.code, r.stderr)
	}
	seen := map[[2]int]bool{}
	for _, r := range takes {
		require.Equal(t, 0, r.code, r.stderr)
		last := map[int]int{0: -1, 1: -1}
		for l := range strings.Lines(r.stdout) {
			var item struct{ P, I int }
			require.NoError(t, json.Unmarshal([]byte(l), &item))
			require.False(t, seen[[2]int{item.P, item.I}], "taken twice: %s", l)
			seen[[2]int{item.P, item.I}] = true
			require.Greater(t, item.I, last[item.P], "a producer's values in its order")
			last[item.P] = item.I
		}
	}
	require.Len(t, seen, producers*perProducer)
	st := openAttached(t, dir, "eo")
	require.Equal(t, 0, queueLen(t, st, "q"))
	requireCheckClean(t, dir, "eo")
}

// TestTakeProcessInterrupted: Ctrl-C ends a take that waits: --count 0
// exits 0 with what it took, a --count not reached exits 130; a take
// SIGKILLed while it waits loses nothing.
func TestTakeProcessInterrupted(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "ti")
	mustRun(t, "--dir", dir, "put", "ti", "q", "1")

	open := startShmctl(t, "--dir", dir, "take", "ti", "q", "--count", "0")
	require.Equal(t, "1", open.Line())
	counted := startShmctl(t, "--dir", dir, "take", "ti", "q", "--count", "2")
	killed := startShmctl(t, "--dir", dir, "take", "ti", "q")
	for _, p := range []*proctest.Proc{open, counted, killed} {
		waitRetrying(t, dir, "ti", p.Pid(), 1)
	}
	require.NoError(t, open.Signal(syscall.SIGINT))
	require.NoError(t, open.Wait(), open.Stderr())
	require.Equal(t, "1\n", open.Stdout())
	require.NoError(t, counted.Signal(syscall.SIGINT))
	var exit *exec.ExitError
	require.ErrorAs(t, counted.Wait(), &exit)
	require.Equal(t, 130, exit.ExitCode(), "interrupted before --count: 130, as a shell reports SIGINT")
	require.Equal(t, "shmctl: take: store \"ti\": took 0 of 2 items from \"q\", then: interrupted\n", counted.Stderr())
	killedNow, err := killed.Kill()
	require.NoError(t, err)
	require.True(t, killedNow)

	mustRun(t, "--dir", dir, "put", "ti", "q", "2")
	require.Equal(t, "2\n", mustRun(t, "--dir", dir, "take", "ti", "q", "--timeout", "30s"))
	requireCheckClean(t, dir, "ti")
}
