//go:build linux && (amd64 || arm64)

package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/objects"
)

// viewStore attaches to a store, runs fn in a View and detaches.
func viewStore(t *testing.T, dir, name string, fn func(tx *shmstore.Tx) error) {
	t.Helper()
	st, err := shmstore.Open(name, shmstore.Options{Dir: dir, Create: shmstore.MustExist})
	require.NoError(t, err)
	defer st.Close()
	require.NoError(t, st.View(fn))
}

// kindAt returns the kind of the value at a path of Dict keys, the last of
// which may be an index (an int) into the List the key before names.
func kindAt(tx *shmstore.Tx, path ...any) (shmstore.Kind, error) {
	keys := path
	idx, inList := path[len(path)-1].(int)
	if inList {
		keys = path[:len(path)-1]
	}
	d := tx.Root()
	for _, k := range keys[:len(keys)-1] {
		var err error
		if d, err = d.GetDict(k); err != nil {
			return 0, err
		}
	}
	last := keys[len(keys)-1]
	if !inList {
		v, err := d.Get(last)
		return v.Kind(), err
	}
	l, err := d.GetList(last)
	if err != nil {
		return 0, err
	}
	v, err := l.Get(idx)
	return v.Kind(), err
}

// requireKinds checks the kinds of values in a store.
func requireKinds(t *testing.T, dir, name string, want map[shmstore.Kind][][]any) {
	t.Helper()
	viewStore(t, dir, name, func(tx *shmstore.Tx) error {
		for k, paths := range want {
			for _, p := range paths {
				got, err := kindAt(tx, p...)
				require.NoError(t, err, "%v", p)
				require.Equal(t, k, got, "%v", p)
			}
		}
		return nil
	})
}

// TestDumpLoadJSON dumps a store as JSON, loads the dump into a fresh
// store and dumps that: the two dumps are the same, and the kinds JSON can
// say survived.
func TestDumpLoadJSON(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "src")
	createStore(t, dir, "dst")
	fillStore(t, dir, "src", jsonSafeTree(), addCounterAndRecord)

	file := filepath.Join(t.TempDir(), "src.json")
	out := mustRun(t, "--dir", dir, "dump", "src", "--out", file)
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("dumped store \"src\" to %s: 8 top-level keys, %s of json\n", file, formatSize(uint64(len(b)))), out)
	require.Equal(t, string(b), mustRun(t, "--dir", dir, "dump", "src"), "stdout and --out agree")
	require.Equal(t, string(b), mustRun(t, "--dir", dir, "get", "src", "/"), "dump is get /")
	var rep dumpReport
	runJSON(t, &rep, "--dir", dir, "dump", "src", "--out", file, "--format", "json")
	require.Equal(t, dumpReport{Name: "src", Format: "json", File: file, Keys: 8, Bytes: len(b)}, rep)

	require.Equal(t, fmt.Sprintf("loaded 8 keys from %s into the root of store \"dst\"\n", file),
		mustRun(t, "--dir", dir, "load", "dst", file))
	require.Equal(t, string(b), mustRun(t, "--dir", dir, "dump", "dst"))
	requireKinds(t, dir, "dst", map[shmstore.Kind][][]any{
		shmstore.KindInt:    {{"accounts", "alice"}, {"ints", 1}, {"list", 0}, {"hits"}}, // the Counter is an Int now
		shmstore.KindFloat:  {{"floats", 0}, {"floats", 5}, {"floats", 1}},
		shmstore.KindDict:   {{"rec"}, {"nested", "empty"}, {"list", 4}}, // the Record is a Dict now
		shmstore.KindList:   {{"list"}, {"floats"}},
		shmstore.KindString: {{"greeting"}},
		shmstore.KindNone:   {{"list", 2}},
		shmstore.KindBool:   {{"list", 3}},
	})
}

// TestDumpLoadMsgpack round-trips what JSON cannot say: Bytes, keys of
// every kind, NaN and infinities.
func TestDumpLoadMsgpack(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "src")
	createStore(t, dir, "dst")
	tree := jsonSafeTree()
	tree["blob"] = []byte("\x00\x01hi")
	tree["odd"] = []any{math.NaN(), math.Inf(1), math.Inf(-1)}
	tree["keys"] = map[any]any{objects.Int(5): "five", "5": "string five", objects.Int(-1): []any{"minus one"},
		true: "yes", false: "no", nil: "none", objects.Bytes([]byte("\x00k")): map[string]any{"in": "bytes"}}
	tree[objects.Int(42)] = "an Int key in the root"
	fillStore(t, dir, "src", tree, addCounterAndRecord)

	file := filepath.Join(t.TempDir(), "src.msgpack")
	mustRun(t, "--dir", dir, "dump", "src", "--format", "msgpack", "--out", file)
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, string(b), mustRun(t, "--dir", dir, "dump", "src", "--format", "msgpack"))
	mustRun(t, "--dir", dir, "load", "dst", file, "--format", "msgpack")
	require.Equal(t, string(b), mustRun(t, "--dir", dir, "dump", "dst", "--format", "msgpack"))

	requireKinds(t, dir, "dst", map[shmstore.Kind][][]any{
		shmstore.KindBytes:  {{"blob"}},
		shmstore.KindFloat:  {{"odd", 0}, {"odd", 1}, {"floats", 0}},
		shmstore.KindString: {{"keys", objects.Int(5)}, {"keys", "5"}, {"keys", true}, {"keys", nil}, {objects.Int(42)}},
		shmstore.KindList:   {{"keys", objects.Int(-1)}},
		shmstore.KindDict:   {{"keys", objects.Bytes([]byte("\x00k"))}, {"rec"}},
		shmstore.KindInt:    {{"hits"}, {"ints", 2}},
	})
	viewStore(t, dir, "dst", func(tx *shmstore.Tx) error {
		d, err := tx.Root().GetDict("keys")
		require.NoError(t, err)
		s, err := d.GetString(objects.Int(5))
		require.NoError(t, err)
		require.Equal(t, "five", s)
		blob, err := tx.Root().GetBytes("blob")
		require.NoError(t, err)
		require.Equal(t, []byte("\x00\x01hi"), blob)
		l, err := tx.Root().GetList("odd")
		require.NoError(t, err)
		v, err := l.Get(0)
		require.NoError(t, err)
		f, err := v.AsFloat()
		require.NoError(t, err)
		require.True(t, math.IsNaN(f))
		return nil
	})

	// JSON cannot say this store: the clash of Int 5 and "5" is refused,
	// and no file is written.
	jsonFile := filepath.Join(t.TempDir(), "src.json")
	r := shmctl(t, "--dir", dir, "dump", "src", "--out", jsonFile)
	requireOneLineError(t, r, 1, `dump: store "src": "keys": keys`, "use --format msgpack")
	require.NoFileExists(t, jsonFile)
}

func TestDumpEmptyStore(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "e")
	require.Equal(t, "{}\n", mustRun(t, "--dir", dir, "dump", "e"))
	require.Equal(t, "\x80", mustRun(t, "--dir", dir, "dump", "e", "--format", "msgpack")) // an empty fixmap
	requireOneLineError(t, shmctl(t, "--dir", dir, "dump", "nosuch"), 1, `dump: no store "nosuch" in `+dir)
	requireOneLineError(t, shmctl(t, "--dir", dir, "dump", "e", "--out", filepath.Join(dir, "no", "such", "dir")),
		1, "dump:", "no such file or directory")
}
