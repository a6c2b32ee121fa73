//go:build linux && (amd64 || arm64)

package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/shmstore/shmstore"
)

// writeFile writes a file in the test's temporary directory and returns
// its path.
func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, data, 0o600))
	return p
}

func TestLoadNumbersAndReplace(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "l")
	fillStore(t, dir, "l", map[any]any{"keep": "me", "n": "a String, to be replaced"}, nil)
	f := writeFile(t, "n.json", []byte(`{"i": 12, "neg": -3, "f": 12.0, "e": 1e3, "big": 1.2345678901234568e+29,
		"max": 9223372036854775807, "min": -9223372036854775808, "bigf": 123456789012345678901234567890.0,
		"n": {"list": [1, 2.5, "x", null, false, {}]}}`))
	var rep loadReport
	runJSON(t, &rep, "--dir", dir, "load", "l", f)
	require.Equal(t, loadReport{Name: "l", File: f, Format: "json", Path: "", Keys: 9}, rep)
	requireKinds(t, dir, "l", map[shmstore.Kind][][]any{
		shmstore.KindInt:    {{"i"}, {"neg"}, {"max"}, {"min"}, {"n", "list", 0}},
		shmstore.KindFloat:  {{"f"}, {"e"}, {"big"}, {"bigf"}, {"n", "list", 1}},
		shmstore.KindDict:   {{"n"}, {"n", "list", 5}},
		shmstore.KindString: {{"keep"}},
		shmstore.KindNone:   {{"n", "list", 3}},
	})
	require.Equal(t, "12.0\n", mustRun(t, "--dir", dir, "get", "l", "f"))
	require.Equal(t, "1000.0\n", mustRun(t, "--dir", dir, "get", "l", "e"))
	require.Equal(t, "1.2345678901234568e+29\n", mustRun(t, "--dir", dir, "get", "l", "big"))
	require.Equal(t, "1.2345678901234568e+29\n", mustRun(t, "--dir", dir, "get", "l", "bigf"))
	require.Equal(t, "9223372036854775807\n", mustRun(t, "--dir", dir, "get", "l", "max"))
	require.Equal(t, "-9223372036854775808\n", mustRun(t, "--dir", dir, "get", "l", "min"))
}

// TestLoadRefusesIntegersBeyondInt64: a JSON integer that does not fit an
// Int is refused, where it is, and nothing of the file is loaded (it used
// to become a Float, silently rounded). convertNumbers refuses it, in
// key order.
func TestLoadRefusesIntegersBeyondInt64(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "li")
	fillStore(t, dir, "li", map[any]any{"keep": "me"}, nil)
	for _, tc := range []struct {
		name, data string
		want       string
	}{
		{"top", `{"a": 1, "big": 9223372036854775808}`, `"big": integer 9223372036854775808 does not fit an Int (int64)`},
		{"negative", `{"small": -9223372036854775809}`, `"small": integer -9223372036854775809 does not fit an Int (int64)`},
		{"nested", `{"a": {"b": [1, 2, 123456789012345678901234567890]}}`,
			`"a/b/2": integer 123456789012345678901234567890 does not fit an Int (int64)`},
		{"first in key order", `{"z": 99999999999999999999, "y": [18446744073709551615]}`,
			`"y/0": integer 18446744073709551615 does not fit`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := writeFile(t, tc.name+".json", []byte(tc.data))
			requireOneLineError(t, shmctl(t, "--dir", dir, "load", "li", f), 1,
				"load: "+f+": "+tc.want, "write it as a float")
		})
	}
	require.Equal(t, "{\n  \"keep\": \"me\"\n}\n", mustRun(t, "--dir", dir, "dump", "li"))
}

func TestLoadPath(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "lp")
	fillStore(t, dir, "lp", map[any]any{"accounts": map[string]any{"alice": int64(5), "bob": int64(6)}}, nil)
	f := writeFile(t, "p.json", []byte(`{"bob": 7, "carol": 8}`))
	require.Equal(t, "loaded 2 keys from "+f+" into \"accounts\" of store \"lp\"\n",
		mustRun(t, "--dir", dir, "load", "lp", f, "--path", "accounts"))
	require.Equal(t, "{\n  \"alice\": 5,\n  \"bob\": 7,\n  \"carol\": 8\n}\n", mustRun(t, "--dir", dir, "get", "lp", "accounts"))
	// Missing Dicts on the path are made.
	mustRun(t, "--dir", dir, "load", "lp", f, "--path", "/a/b/")
	require.Equal(t, "{\n  \"b\": {\n    \"bob\": 7,\n    \"carol\": 8\n  }\n}\n", mustRun(t, "--dir", dir, "get", "lp", "a"))
	// A path through something else than a Dict fails, and loads nothing.
	requireOneLineError(t, shmctl(t, "--dir", dir, "load", "lp", f, "--path", "accounts/alice/x"), 1,
		`load: store "lp": nothing loaded: "accounts/alice"`, "Int, not Dict")
	requireOneLineError(t, shmctl(t, "--dir", dir, "get", "lp", "accounts/alice/x"), 1, "Int, not Dict")
}

// TestLoadIsOneTransaction: a value that cannot be stored fails the load
// after other keys were set in it: none of them is kept.
func TestLoadIsOneTransaction(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "lt")
	b, err := msgpack.Marshal(map[string]any{"a": 1, "b": "two", "c": []any{uint64(math.MaxUint64)}, "d": 4})
	require.NoError(t, err)
	f := writeFile(t, "bad.msgpack", b)
	requireOneLineError(t, shmctl(t, "--dir", dir, "load", "lt", f, "--format", "msgpack"), 1,
		`load: store "lt": nothing loaded: key c:`, "does not fit an Int")
	require.Equal(t, "{}\n", mustRun(t, "--dir", dir, "dump", "lt"))
}

func TestLoadBadFiles(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "lb")
	for _, tc := range []struct {
		name, data, format string
		want               []string
	}{
		{"array.json", `[1, 2]`, "json", []string{"want an object (a map) at the top, not an array"}},
		{"number.json", `12`, "json", []string{"not a number"}},
		{"broken.json", `{"a": `, "json", []string{"bad JSON"}},
		{"two.json", `{"a": 1} {"b": 2}`, "json", []string{"bad JSON: more after the first value"}},
		{"huge.json", `{"a": 1e999}`, "json", []string{"bad JSON number 1e999"}},
		{"str.msgpack", "\xa3abc", "msgpack", []string{"not a string"}},
		{"trunc.msgpack", "\x81\xa1a", "msgpack", []string{"bad msgpack"}},
		{"two.msgpack", "\x80\x80", "msgpack", []string{"bad msgpack: more after the first value"}},
		{"json.msgpack", `{"a": 1}`, "msgpack", []string{"bad msgpack"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := writeFile(t, tc.name, []byte(tc.data))
			r := shmctl(t, "--dir", dir, "load", "lb", f, "--format", tc.format)
			requireOneLineError(t, r, 1, append([]string{"load: " + f}, tc.want...)...)
		})
	}
	requireOneLineError(t, shmctl(t, "--dir", dir, "load", "lb", filepath.Join(dir, "nosuch.json")), 1,
		"load: open", "no such file or directory")
	f := writeFile(t, "ok.json", []byte(`{}`))
	requireOneLineError(t, shmctl(t, "--dir", dir, "load", "nosuch", f), 1, `load: no store "nosuch" in `+dir)
	require.Equal(t, "{}\n", mustRun(t, "--dir", dir, "dump", "lb"))
}

// TestLoadDuplicateKeys: a key twice in one object is refused with its
// line, the line of the first, and the object's path; nothing is loaded.
func TestLoadDuplicateKeys(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "ld")
	fillStore(t, dir, "ld", map[any]any{"keep": "me"}, nil)
	for _, tc := range []struct {
		name, data, want string
	}{
		{"top", `{"a": 1, "b": 2, "a": 3}`, `line 1: duplicate key "a" in the root (first on line 1)`},
		{"nested", "{\n  \"accounts\": {\n    \"alice\": 1,\n    \"bob\": 2,\n    \"alice\": 3\n  }\n}\n",
			`line 5: duplicate key "alice" in "accounts" (first on line 3)`},
		{"in a list", "{\"l\": [{}, {\"x\": 1,\n\n\"x\": [\"ok\"]}]}", `line 3: duplicate key "x" in "l/1" (first on line 1)`},
		{"escaped alike", `{"k": {"\u0061": 1, "a": 2}}`, `line 1: duplicate key "a" in "k" (first on line 1)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := writeFile(t, "dup.json", []byte(tc.data))
			requireOneLineError(t, shmctl(t, "--dir", dir, "load", "ld", f), 1, "load: "+f+": "+tc.want)
		})
	}
	// Keys alike in different objects are fine.
	f := writeFile(t, "ok.json", []byte(`{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}`))
	mustRun(t, "--dir", dir, "load", "ld", f)
	require.Equal(t, "{\n  \"a\": 1\n}\n", mustRun(t, "--dir", dir, "get", "ld", "a"))
}

// TestLoadWrongFormat: a JSON file loaded as msgpack, or a msgpack one as
// JSON, is said to be of the other format.
func TestLoadWrongFormat(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "lw")
	j := writeFile(t, "data.json", []byte("{\"a\": 1, \"b\": [true]}\n"))
	b, err := msgpack.Marshal(map[string]any{"a": 1, "b": []any{true}})
	require.NoError(t, err)
	m := writeFile(t, "data.msgpack", b)
	requireOneLineError(t, shmctl(t, "--dir", dir, "load", "lw", j, "--format", "msgpack"), 1,
		"load: "+j+": bad msgpack: this is JSON; load it with --format json")
	requireOneLineError(t, shmctl(t, "--dir", dir, "load", "lw", m), 1,
		"load: "+m+": bad JSON: this is msgpack; load it with --format msgpack")
	requireOneLineError(t, shmctl(t, "--dir", dir, "load", "lw", m, "--format", "json"), 1, "this is msgpack")
	require.Equal(t, "{}\n", mustRun(t, "--dir", dir, "dump", "lw"))
	// Each in its own format loads.
	mustRun(t, "--dir", dir, "load", "lw", j)
	mustRun(t, "--dir", dir, "load", "lw", m, "--format", "msgpack")
}

// TestLoadBadJSONLines: a syntax error says its line; an empty file, an
// unfinished one and one nested too deep are each said so.
func TestLoadBadJSONLines(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "lj")
	for _, tc := range []struct {
		name, data, want string
	}{
		{"syntax", "{\n \"a\": 1,\n \"b\" 2}", "bad JSON: line 3: invalid character '2' after object key"},
		{"empty", "", "bad JSON: the file is empty"},
		{"unfinished", "{\"a\": [1, ", "bad JSON: the file ends inside a value"},
		{"deep", `{"a": ` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + "}", "bad JSON: line 1: nested deeper than 10000 arrays and objects"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := writeFile(t, "bad.json", []byte(tc.data))
			requireOneLineError(t, shmctl(t, "--dir", dir, "load", "lj", f), 1, "load: "+f+": "+tc.want)
		})
	}
	f := writeFile(t, "deep.json", []byte(`{"a": `+strings.Repeat("[", 9999)+strings.Repeat("]", 9999)+"}"))
	mustRun(t, "--dir", dir, "load", "lj", f)
}

// TestLoadIntoMissingStore: load writes into an existing store and makes
// none; a missing one is a runtime error that says how to make it, with
// the --dir given (README's 'load other demo.json' used to end in a bare
// 'no store "other"'). Not parallel: it sets $SHMSTORE_DIR.
func TestLoadIntoMissingStore(t *testing.T) {
	dir := testDir(t)
	f := writeFile(t, "d.json", []byte(`{"a": 1}`))
	requireOneLineError(t, shmctl(t, "--dir", dir, "load", "other", f), 1,
		`load: no store "other" in `+dir+"; load writes into an existing store: make it first with 'shmctl --dir "+dir+" create other'")
	t.Setenv("SHMSTORE_DIR", dir) // the directory from the environment: the hint needs no --dir
	requireOneLineError(t, shmctl(t, "load", "other", f), 1,
		`load: no store "other" in `+dir+"; load writes into an existing store: make it first with 'shmctl create other'")
	names, err := shmstore.ListStores(shmstore.Options{Dir: dir})
	require.NoError(t, err)
	require.Empty(t, names, "load made no store")

	mustRun(t, "create", "other", "--region-size", "1MiB", "--max-size", "16MiB")
	require.Contains(t, mustRun(t, "load", "other", f), `loaded 1 keys from `+f+` into the root of store "other"`)
	require.Equal(t, "1\n", mustRun(t, "get", "other", "a"))
	require.Contains(t, mustRun(t, "help", "load"), "The store must exist: load makes none (shmctl create NAME does).")
}
