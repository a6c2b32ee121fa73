//go:build linux && (amd64 || arm64)

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/sys/unix"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/objects"
)

// fillStore attaches to a store, sets each key of tree in the root (through
// build, as load does) and runs extra, if any, in the same transaction, then
// detaches.
func fillStore(t *testing.T, dir, name string, tree map[any]any, extra func(tx *shmstore.Tx) error) {
	t.Helper()
	st, err := shmstore.Open(name, shmstore.Options{Dir: dir, Create: shmstore.MustExist})
	require.NoError(t, err)
	err = st.Update(func(tx *shmstore.Tx) error {
		for k, g := range tree {
			v, err := build(tx, g)
			if err != nil {
				return err
			}
			if err := tx.Root().Set(k, v); err != nil {
				return err
			}
		}
		if extra != nil {
			return extra(tx)
		}
		return nil
	})
	require.NoError(t, errors.Join(err, st.Close()))
}

// addCounterAndRecord adds a Counter "hits" at 7 and a Record "rec" of
// class point with fields x=1, y="up" to the root.
func addCounterAndRecord(tx *shmstore.Tx) error {
	c, err := tx.Root().Counter("hits")
	if err != nil {
		return err
	}
	if err := c.AddBlind(7); err != nil {
		return err
	}
	r, err := tx.NewRecord("point", []string{"x", "y"})
	if err != nil {
		return err
	}
	if err := r.Set("x", 1); err != nil {
		return err
	}
	if err := r.Set("y", "up"); err != nil {
		return err
	}
	return tx.Root().Set("rec", r.Value())
}

// jsonTree is a tree JSON says exactly: String keys, no Bytes.
func jsonSafeTree() map[any]any {
	return map[any]any{
		"accounts": map[string]any{"alice": int64(100), "bob": int64(-5)},
		"greeting": `<héllo & "bye">`,
		"floats":   []any{1.0, 3.25, -0.5, 1e300, 1e-9, 0.0},
		"ints":     []any{int64(0), int64(math.MaxInt64), int64(math.MinInt64)},
		"list":     []any{int64(1), "two", nil, true, map[string]any{"x": int64(1), "y": []any{}}},
		"nested":   map[string]any{"deep": map[string]any{"deeper": "yes"}, "empty": map[string]any{}},
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "g")
	tree := jsonSafeTree()
	tree["blob"] = []byte("\x00\x01hi")
	tree["keys"] = map[any]any{objects.Int(5): "five", objects.Int(-1): "minus one", true: "yes",
		nil: "none", objects.Bytes([]byte("\x00k")): "bytes", "s": "string"}
	fillStore(t, dir, "g", tree, addCounterAndRecord)

	for _, tc := range []struct{ path, want string }{
		{"accounts/alice", "100\n"},
		{"/accounts/bob/", "-5\n"},
		{"greeting", `"<héllo & \"bye\">"` + "\n"},
		{"accounts", "{\n  \"alice\": 100,\n  \"bob\": -5\n}\n"},
		{"nested/deep", "{\n  \"deeper\": \"yes\"\n}\n"},
		{"nested/empty", "{}\n"},
		{"floats", "[\n  1.0,\n  3.25,\n  -0.5,\n  1e+300,\n  1e-9,\n  0.0\n]\n"},
		{"ints", "[\n  0,\n  9223372036854775807,\n  -9223372036854775808\n]\n"},
		{"list", "[\n  1,\n  \"two\",\n  null,\n  true,\n  {\n    \"x\": 1,\n    \"y\": []\n  }\n]\n"},
		{"blob", "\"AAFoaQ==\"\n"}, // base64
		{"keys", "{\n  \"-1\": \"minus one\",\n  \"5\": \"five\",\n  \"None\": \"none\",\n  \"b\\\"\\\\x00k\\\"\": \"bytes\",\n" +
			"  \"s\": \"string\",\n  \"true\": \"yes\"\n}\n"},
		{"hits", "7\n"},
		{"rec", "{\n  \"x\": 1,\n  \"y\": \"up\"\n}\n"},
	} {
		require.Equal(t, tc.want, mustRun(t, "--dir", dir, "get", "g", tc.path), tc.path)
		// --json is accepted and changes nothing.
		require.Equal(t, tc.want, mustRun(t, "--dir", dir, "get", "g", tc.path, "--json"), tc.path)
	}

	// The whole store.
	out := mustRun(t, "--dir", dir, "get", "g", "/")
	var all map[string]any
	require.NoError(t, decodeStrict(out, &all))
	require.Len(t, all, len(tree)+2)
	require.Equal(t, out, mustRun(t, "--dir", dir, "get", "g", ""))
}

func TestGetErrors(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "ge")
	fillStore(t, dir, "ge", map[any]any{
		"accounts": map[string]any{"alice": int64(1)},
		"nan":      math.NaN(),
		"clash":    map[any]any{objects.Int(5): "int", "5": "string"},
	}, nil)
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"accounts/bob", []string{`get: store "ge": no key "accounts/bob"`, "not found"}},
		{"nosuch/alice", []string{`no key "nosuch"`}},
		{"accounts/alice/x", []string{`"accounts/alice"`, "Int, not Dict"}},
		{"nan", []string{`"nan": float NaN has no JSON form; use --format msgpack`}},
		{"clash", []string{`"clash"`, `keys 5 (Int) and "5" (String) are both "5" in JSON`}},
	} {
		requireOneLineError(t, shmctl(t, "--dir", dir, "get", "ge", tc.path), 1, tc.want...)
	}
	requireOneLineError(t, shmctl(t, "--dir", dir, "get", "nosuch", "a"), 1, `get: no store "nosuch" in `+dir)
}

// TestGetKeys: --key reaches a String key with '/' in it, --int-key an
// Int key, each after PATH's keys, in the order given.
func TestGetKeys(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "gk")
	fillStore(t, dir, "gk", map[any]any{
		"a/b":    "slash",
		"scores": map[any]any{objects.Int(5): map[string]any{"x/y": int64(1)}, "5": "the String"},
		"-7":     "dash",
	}, nil)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--key", "a/b"}, `"slash"` + "\n"},
		{[]string{"/", "--key", "a/b"}, `"slash"` + "\n"},
		{[]string{"scores", "--int-key", "5", "--key", "x/y"}, "1\n"},
		{[]string{"--key", "scores", "--int-key", "5", "--key", "x/y"}, "1\n"},
		{[]string{"scores", "--key", "5"}, `"the String"` + "\n"},
		{[]string{"scores/5"}, `"the String"` + "\n"},
		{[]string{"--int-key=5", "scores"}, "{\n  \"x/y\": 1\n}\n"}, // PATH first, whatever the order on the line
		{[]string{"--key", "-7"}, `"dash"` + "\n"},
	} {
		require.Equal(t, tc.want, mustRun(t, append([]string{"--dir", dir, "get", "gk"}, tc.args...)...), tc.args)
	}
	requireOneLineError(t, shmctl(t, "--dir", dir, "get", "gk", "scores", "--int-key", "7"), 1, `get: store "gk": no key "scores/7"`)
	requireOneLineError(t, shmctl(t, "--dir", dir, "get", "gk", "--int-key", "five"), 2,
		`get: invalid argument "five" for "--int-key" flag: want an integer from -9223372036854775808 to 9223372036854775807`)
	requireOneLineError(t, shmctl(t, "--dir", dir, "get", "gk", "--int-key", "9223372036854775808"), 2, "want an integer")
	requireOneLineError(t, shmctl(t, "--dir", dir, "get", "gk"), 2, "get: missing PATH")
	require.Contains(t, mustRun(t, "help", "get"), "--int-key N")
}

// TestEmptyPathKey: an empty key in a PATH is a mistake in the path
// (exit 2), not a type mismatch, for get, watch and load --path.
func TestEmptyPathKey(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "ep")
	f := writeFile(t, "one.json", []byte(`{"k": 1}`))
	for _, args := range [][]string{{"get", "ep", "a//b"}, {"watch", "ep", "a//b"}, {"load", "ep", f, "--path", "a//b"}} {
		r := shmctl(t, append([]string{"--dir", dir}, args...)...)
		requireOneLineError(t, r, 2, args[0]+`: path "a//b" has an empty key after "a"; separate keys with a single '/'`)
		require.NotContains(t, r.stderr, "type mismatch")
	}
	requireOneLineError(t, shmctl(t, "--dir", dir, "get", "ep", "//x"), 1, `no key "x"`) // '/' at the ends is dropped
	requireOneLineError(t, shmctl(t, "--dir", dir, "get", "ep", "x///y"), 2, `path "x///y" has an empty key after "x"`)
}

// TestGetMsgpack: get --format msgpack writes what JSON cannot say (which
// get's JSON errors advise), to standard output or to --out FILE.
func TestGetMsgpack(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "gm")
	fillStore(t, dir, "gm", map[any]any{
		"nan":   math.NaN(),
		"clash": map[any]any{objects.Int(5): "int", "5": "string", objects.Bytes([]byte{0, 1}): []byte("bin")},
		"n":     int64(7),
	}, nil)
	decode := func(b []byte) any {
		t.Helper()
		v, err := msgpack.NewDecoder(bytes.NewReader(b)).DecodeInterface()
		require.NoError(t, err)
		return v
	}
	// The advice of get's JSON errors works now.
	requireOneLineError(t, shmctl(t, "--dir", dir, "get", "gm", "nan"), 1, "use --format msgpack")
	f, ok := decode([]byte(mustRun(t, "--dir", dir, "get", "gm", "nan", "--format", "msgpack"))).(float64)
	require.True(t, ok && math.IsNaN(f))
	require.Equal(t, map[any]any{int8(5): "int", "5": "string", string([]byte{0, 1}): []byte("bin")},
		decodeKeys(t, mustRun(t, "--dir", dir, "get", "gm", "clash", "--format", "msgpack")))
	require.Equal(t, []byte{0x07}, []byte(mustRun(t, "--dir", dir, "get", "gm", "n", "--format", "msgpack")))

	// --out: the file, nothing printed; JSON too.
	out := filepath.Join(t.TempDir(), "n.msgpack")
	require.Empty(t, mustRun(t, "--dir", dir, "get", "gm", "n", "--format", "msgpack", "--out", out))
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, int8(7), decode(b))
	require.Empty(t, mustRun(t, "--dir", dir, "get", "gm", "n", "--out", out))
	b, err = os.ReadFile(out)
	require.NoError(t, err)
	require.Equal(t, "7\n", string(b))
}

// decodeKeys decodes a msgpack map, Bytes keys as strings (Go map keys).
func decodeKeys(t *testing.T, s string) map[any]any {
	t.Helper()
	dec := msgpack.NewDecoder(strings.NewReader(s))
	n, err := dec.DecodeMapLen()
	require.NoError(t, err)
	m := map[any]any{}
	for range n {
		k, err := dec.DecodeInterface()
		require.NoError(t, err)
		if b, ok := k.([]byte); ok {
			k = string(b)
		}
		if m[k], err = dec.DecodeInterface(); err != nil {
			require.NoError(t, err)
		}
	}
	return m
}

// openPTY opens a pseudo-terminal and returns its terminal end; the test
// is skipped where there is none.
func openPTY(t *testing.T) *os.File {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { _ = ptm.Close() })
	require.NoError(t, unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	require.NoError(t, err)
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = pts.Close() })
	return pts
}

// TestBinaryToTerminal: get and dump refuse to write msgpack to a
// terminal (exit 2), unless --out names a file; JSON goes to it.
func TestBinaryToTerminal(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "bt")
	fillStore(t, dir, "bt", map[any]any{"n": int64(7)}, nil)
	tty := openPTY(t)
	require.True(t, isTerminal(tty))
	require.False(t, isTerminal(&bytes.Buffer{}))
	onTTY := func(args ...string) result {
		var errb bytes.Buffer
		return result{code: run(append([]string{"--dir", dir}, args...), tty, &errb), stderr: errb.String()}
	}
	for _, args := range [][]string{{"get", "bt", "n", "--format", "msgpack"}, {"dump", "bt", "--format", "msgpack"}} {
		requireOneLineError(t, onTTY(args...), 2,
			args[0]+": msgpack is binary: not written to a terminal; give --out FILE or redirect standard output")
		out := filepath.Join(t.TempDir(), "out")
		r := onTTY(append(args, "--out", out)...)
		require.Equal(t, 0, r.code, r.stderr)
		b, err := os.ReadFile(out)
		require.NoError(t, err)
		require.NotEmpty(t, b)
	}
	for _, args := range [][]string{{"get", "bt", "n"}, {"dump", "bt"}} {
		r := onTTY(args...)
		require.Equal(t, 0, r.code, r.stderr)
	}
	// A file that is not a terminal takes msgpack.
	f, err := os.Create(filepath.Join(t.TempDir(), "file"))
	require.NoError(t, err)
	defer f.Close()
	require.Equal(t, 0, run([]string{"--dir", dir, "get", "bt", "n", "--format", "msgpack"}, f, io.Discard))
	b, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	require.Equal(t, []byte{0x07}, b)
}
