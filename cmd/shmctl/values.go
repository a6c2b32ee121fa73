//go:build linux && (amd64 || arm64)

package main

// Values between the store and files. get and dump copy a subtree out of
// the store in one View (exportPath) and encode it as JSON or msgpack;
// load decodes a file into the generic Go values that build
// stores.
//
// JSON cannot say everything the store holds. Its rules here:
//
//   - A Dict key that is not a String is written in the textual form of
//     Value.String: Int 5 as "5", Bool as "true", None as "None", Bytes as
//     a Go-quoted string after b (b"\x00ab"). Two keys of one Dict that
//     come out alike (Int 5 and String "5") are refused: use msgpack.
//   - Bytes values are base64 strings, encoding/json's usual.
//   - A Float always has a '.' or an exponent (1.0, not 1), so that load
//     tells it from an Int; NaN and ±Inf are refused.
//   - A Counter is written as its value, a Record as an object of its
//     fields.
//
// load reads a JSON object as a Dict with String keys, an array as a List,
// a number without '.' or exponent as an Int (refused beyond int64), any
// other number as a Float; a key twice in one object is refused. So JSON round-trips Dicts with String keys, Lists,
// None, Bool, Int, Float and String; Bytes come back as Strings, other
// keys as String keys.
//
// msgpack keeps every scalar kind, Bytes (bin) and keys of any kind. In
// both formats a Counter comes back as an Int and a Record as a Dict.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/sys/unix"

	"github.com/shmstore/shmstore"
)

// Dump formats.
const (
	formatJSON    = "json"
	formatMsgpack = "msgpack"
)

// validFormat checks a --format value.
func validFormat(f string) error {
	if f != formatJSON && f != formatMsgpack {
		return fmt.Errorf("format %q: want %s or %s", f, formatJSON, formatMsgpack)
	}
	return nil
}

// refuseBinaryTerminal refuses msgpack (binary) for w, where the output
// goes when out (--out) is "", if w is a terminal: it would garble it.
func refuseBinaryTerminal(format, out string, w io.Writer) error {
	if format == formatMsgpack && out == "" && isTerminal(w) {
		return usagef("msgpack is binary: not written to a terminal; give --out FILE or redirect standard output")
	}
	return nil
}

// isTerminal reports whether w is a terminal: a file that takes TCGETS.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// A tree is a value copied out of the store, ready to encode: nil, bool,
// int64, float64, string, []byte (scalars, as Value.Scalar gives them),
// []any (a List) or *dictNode.

// dictNode is a Dict (or Record) copied out, its keys in SortedKeys order.
type dictNode struct {
	keys []shmstore.Value
	vals []any
}

// exportPath copies the value or subtree at keys (nil: the root) out of
// the store. It runs inside a transaction and returns the transaction's
// errors unchanged, conflicts included.
func exportPath(tx *shmstore.Tx, keys []shmstore.Value) (any, error) {
	if len(keys) == 0 {
		return exportDict(tx, tx.Root())
	}
	d, err := dictAt(tx, keys[:len(keys)-1], false)
	if err != nil {
		return nil, err
	}
	v, err := d.Get(keys[len(keys)-1])
	if err != nil {
		return nil, pathError(keys, err)
	}
	t, err := exportValue(tx, v)
	if err != nil {
		return nil, pathError(keys, err)
	}
	return t, nil
}

// dictAt returns the Dict at keys (none: the root), following them from
// the root; with create, a missing Dict on the way is made. An error
// says which key failed (pathError).
func dictAt(tx *shmstore.Tx, keys []shmstore.Value, create bool) (shmstore.Dict, error) {
	d := tx.Root()
	for i, k := range keys {
		var err error
		if create {
			d, err = d.Dict(k)
		} else {
			d, err = d.GetDict(k)
		}
		if err != nil {
			return shmstore.Dict{}, pathError(keys[:i+1], err)
		}
	}
	return d, nil
}

// pathError says where on a path lookup failed.
func pathError(keys []shmstore.Value, err error) error {
	p := pathString(keys)
	switch {
	case errors.Is(err, shmstore.ErrKeyNotFound):
		return fmt.Errorf("no key %q: %w", p, err)
	case errors.Is(err, shmstore.ErrTypeMismatch):
		return fmt.Errorf("%q: %w", p, err)
	}
	return err
}

// exportDict copies Dict d and everything under it.
func exportDict(tx *shmstore.Tx, d shmstore.Dict) (*dictNode, error) {
	vals := map[shmstore.Value]shmstore.Value{}
	var keys []shmstore.Value
	err := d.Range(func(k, v shmstore.Value) bool {
		keys = append(keys, k)
		vals[k] = v
		return true
	})
	if err != nil {
		return nil, err
	}
	shmstore.SortKeys(keys)
	n := &dictNode{keys: keys, vals: make([]any, len(keys))}
	for i, k := range keys {
		if n.vals[i], err = exportValue(tx, vals[k]); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// exportValue copies v, a value read in tx: a Dict in a container or an
// item taken from a Queue. A Dict is walked here, key by key, so that
// keys of every kind (Bytes too) come out; Lists, Records and Counters go
// through tx.Export.
func exportValue(tx *shmstore.Tx, v shmstore.Value) (any, error) {
	switch {
	case v.Kind() == shmstore.KindDict:
		d, err := tx.Dict(v)
		if err != nil {
			return nil, err
		}
		return exportDict(tx, d)
	case v.Kind().IsContainer():
		g, err := tx.Export(v)
		if err != nil {
			return nil, err
		}
		return treeOf(g)
	}
	return v.Scalar(), nil
}

// treeOf turns what tx.Export returns (maps, slices, scalars) into a tree.
func treeOf(g any) (any, error) {
	switch g := g.(type) {
	case map[string]any:
		n := &dictNode{}
		for k := range g {
			n.keys = append(n.keys, shmstore.String(k))
		}
		shmstore.SortKeys(n.keys)
		for _, k := range n.keys {
			t, err := treeOf(g[k.Scalar().(string)])
			if err != nil {
				return nil, err
			}
			n.vals = append(n.vals, t)
		}
		return n, nil
	case map[any]any:
		n := &dictNode{}
		byKey := map[shmstore.Value]any{}
		for k, x := range g {
			kv, err := shmstore.ValueOf(k)
			if err != nil {
				return nil, err
			}
			n.keys = append(n.keys, kv)
			byKey[kv] = x
		}
		shmstore.SortKeys(n.keys)
		for _, k := range n.keys {
			t, err := treeOf(byKey[k])
			if err != nil {
				return nil, err
			}
			n.vals = append(n.vals, t)
		}
		return n, nil
	case []any:
		out := make([]any, len(g))
		for i, x := range g {
			var err error
			if out[i], err = treeOf(x); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	v, err := shmstore.ValueOf(g)
	if err != nil {
		return nil, err
	}
	return v.Scalar(), nil
}

// jsonKey is how a Dict key is written in JSON: a String as itself, any
// other kind as Value.String.
func jsonKey(k shmstore.Value) string {
	if s, err := k.AsString(); err == nil {
		return s
	}
	return k.String()
}

// jsonFloat is a Float as JSON writes it: with a '.' or an exponent.
type jsonFloat float64

// MarshalJSON writes f as encoding/json would, plus ".0" when that has
// neither '.' nor exponent.
func (f jsonFloat) MarshalJSON() ([]byte, error) {
	x := float64(f)
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil, fmt.Errorf("float %v has no JSON form", x)
	}
	format := byte('f')
	if a := math.Abs(x); a != 0 && (a < 1e-6 || a >= 1e21) {
		format = 'e'
	}
	b := strconv.AppendFloat(nil, x, format, -1, 64)
	if format == 'e' {
		// 1e-07 as 1e-7, as encoding/json writes it.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	if !bytes.ContainsAny(b, ".e") {
		b = append(b, ".0"...)
	}
	return b, nil
}

// jsonTree turns a tree into values encoding/json writes by the rules
// above. at is the path so far, for errors.
func jsonTree(t any, at string) (any, error) { return jsonTreeOf(t, at, false) }

// bytesTag is the key of the object that take --json writes for Bytes:
// {"$bytes": "<base64>"}.
const bytesTag = "$bytes"

// jsonTreeOf is jsonTree; with tagged, each Bytes value becomes
// {"$bytes": "<base64>"}, so that Bytes and Strings read apart (take
// --json). A Dict whose only key is "$bytes" would then read as Bytes: it
// has no such form (an error naming it).
func jsonTreeOf(t any, at string, tagged bool) (any, error) {
	switch t := t.(type) {
	case *dictNode:
		if tagged && len(t.keys) == 1 && t.keys[0] == shmstore.String(bytesTag) {
			return nil, fmt.Errorf("%s: a Dict whose only key is %q would read as tagged Bytes in take --json; take it without --json",
				where(at), bytesTag)
		}
		m := make(map[string]any, len(t.keys))
		first := make(map[string]shmstore.Value, len(t.keys))
		for i, k := range t.keys {
			jk := jsonKey(k)
			if o, dup := first[jk]; dup {
				return nil, fmt.Errorf("%s: keys %v (%v) and %v (%v) are both %q in JSON; use --format msgpack",
					where(at), o, o.Kind(), k, k.Kind(), jk)
			}
			first[jk] = k
			v, err := jsonTreeOf(t.vals[i], at+"/"+jk, tagged)
			if err != nil {
				return nil, err
			}
			m[jk] = v
		}
		return m, nil
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			var err error
			if out[i], err = jsonTreeOf(x, at+"/"+strconv.Itoa(i), tagged); err != nil {
				return nil, err
			}
		}
		return out, nil
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return nil, fmt.Errorf("%s: float %v has no JSON form; use --format msgpack", where(at), t)
		}
		return jsonFloat(t), nil
	case []byte:
		if tagged {
			return map[string]any{bytesTag: t}, nil // encoding/json writes []byte as base64
		}
	}
	return t, nil
}

// where names a path in an error ("the root" for the empty one).
func where(at string) string {
	if at == "" {
		return "the root"
	}
	return strconv.Quote(strings.TrimPrefix(at, "/"))
}

// writeTreeJSON writes a tree as indented JSON, without HTML escaping.
// at is the path of the tree, for errors.
func writeTreeJSON(w io.Writer, t any, at string) error {
	j, err := jsonTree(t, at)
	if err != nil {
		return err
	}
	return encodeJSON(w, j, "  ")
}

// encodeJSON writes what jsonTree gives as JSON without HTML escaping,
// indented by indent ("": one line), and a newline.
func encodeJSON(w io.Writer, j any, indent string) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", indent)
	enc.SetEscapeHTML(false)
	return enc.Encode(j)
}

// writeTreeMsgpack writes a tree as one msgpack value: maps keep their
// keys' kinds (Bytes as bin), integers are compact.
func writeTreeMsgpack(w io.Writer, t any) error {
	enc := msgpack.NewEncoder(w)
	enc.UseCompactInts(true)
	return encodeTree(enc, t)
}

// encodeTree encodes one tree node.
func encodeTree(enc *msgpack.Encoder, t any) error {
	switch t := t.(type) {
	case *dictNode:
		if err := enc.EncodeMapLen(len(t.keys)); err != nil {
			return err
		}
		for i, k := range t.keys {
			if err := enc.Encode(k.Scalar()); err != nil {
				return err
			}
			if err := encodeTree(enc, t.vals[i]); err != nil {
				return err
			}
		}
		return nil
	case []any:
		if err := enc.EncodeArrayLen(len(t)); err != nil {
			return err
		}
		for _, x := range t {
			if err := encodeTree(enc, x); err != nil {
				return err
			}
		}
		return nil
	}
	return enc.Encode(t)
}

// readTree decodes one JSON or msgpack value (all of data) into generic
// Go values for build: map[string]any, or map[any]any whose keys are
// shmstore.Values when some key is not a String; []any; nil, bool, int64,
// float64, string, []byte. A file of the other format is said to be so.
func readTree(data []byte, format string) (any, error) {
	if format == formatMsgpack {
		g, err := readMsgpack(data)
		if err != nil && json.Valid(data) {
			return nil, errors.New("bad msgpack: this is JSON; load it with --format json")
		}
		return g, err
	}
	g, err := readJSON(data)
	if err != nil {
		if m, merr := readMsgpack(data); merr == nil && isMap(m) {
			return nil, errors.New("bad JSON: this is msgpack; load it with --format msgpack")
		}
	}
	return g, err
}

// isMap reports whether g is a decoded map.
func isMap(g any) bool {
	switch g.(type) {
	case map[string]any, map[any]any:
		return true
	}
	return false
}

// readJSON decodes one JSON value: integers become int64 (one beyond
// int64 is refused), other numbers float64. A key twice in one object is
// refused with its line: encoding/json would keep the last silently.
func readJSON(data []byte) (any, error) {
	r := jsonReader{dec: json.NewDecoder(bytes.NewReader(data)), data: data, line: 1}
	r.dec.UseNumber()
	g, err := r.value("", 0)
	if err == io.EOF {
		return nil, errors.New("bad JSON: the file is empty")
	}
	if err == nil {
		if _, err = r.dec.Token(); err != io.EOF {
			return nil, errors.New("bad JSON: more after the first value")
		}
	}
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return nil, fmt.Errorf("bad JSON: line %d: %w", r.lineAt(se.Offset), err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return nil, errors.New("bad JSON: the file ends inside a value")
	case err != nil && err != io.EOF:
		return nil, err
	}
	return convertNumbers(g, "")
}

// jsonReader walks a JSON document token by token, to see every key of
// every object, and counts lines for errors.
type jsonReader struct {
	dec  *json.Decoder
	data []byte
	off  int64 // lineAt has counted the lines of data[:off]
	line int   // the line at off
}

// lineAt is the line (from 1) of byte offset off, which never goes back.
func (r *jsonReader) lineAt(off int64) int {
	off = min(off, int64(len(r.data)))
	if off > r.off {
		r.line += bytes.Count(r.data[r.off:off], []byte{'\n'})
		r.off = off
	}
	return r.line
}

// maxJSONDepth bounds the nesting of arrays and objects, as
// encoding/json's Decode does.
const maxJSONDepth = 10000

// value decodes the next value, at path at (as jsonTree names paths) and
// depth arrays and objects down: map[string]any, []any, or a scalar with
// json.Number for numbers. The end of the input before a value is io.EOF,
// within one io.ErrUnexpectedEOF.
func (r *jsonReader) value(at string, depth int) (any, error) {
	tok, err := r.dec.Token()
	if err != nil {
		return nil, err
	}
	if depth == maxJSONDepth && (tok == json.Delim('{') || tok == json.Delim('[')) {
		return nil, fmt.Errorf("bad JSON: line %d: nested deeper than %d arrays and objects", r.lineAt(r.dec.InputOffset()), maxJSONDepth)
	}
	switch tok {
	case json.Delim('{'):
		m := map[string]any{}
		lines := map[string]int{}
		for r.dec.More() {
			tok, err := r.dec.Token()
			if err != nil {
				return nil, unexpectedEOF(err)
			}
			k := tok.(string) // More and Token only give a string here
			line := r.lineAt(r.dec.InputOffset())
			if first, dup := lines[k]; dup {
				return nil, fmt.Errorf("line %d: duplicate key %q in %s (first on line %d)", line, k, where(at), first)
			}
			lines[k] = line
			if m[k], err = r.value(at+"/"+k, depth+1); err != nil {
				return nil, unexpectedEOF(err)
			}
		}
		_, err := r.dec.Token() // '}'
		return m, unexpectedEOF(err)
	case json.Delim('['):
		l := []any{}
		for r.dec.More() {
			x, err := r.value(at+"/"+strconv.Itoa(len(l)), depth+1)
			if err != nil {
				return nil, unexpectedEOF(err)
			}
			l = append(l, x)
		}
		_, err := r.dec.Token() // ']'
		return l, unexpectedEOF(err)
	}
	return tok, nil
}

// unexpectedEOF turns io.EOF, the end of the input inside a value, into
// io.ErrUnexpectedEOF.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// convertNumbers replaces every json.Number in g (at path at): int64 when
// it has no '.' or exponent, float64 when it has. An integer beyond int64
// is refused: as a Float it would lose digits silently. Keys are walked
// in order, so that the same file gives the same error every time.
func convertNumbers(g any, at string) (any, error) {
	switch g := g.(type) {
	case json.Number:
		s := g.String()
		if !strings.ContainsAny(s, ".eE") {
			i, err := g.Int64()
			if err != nil {
				return nil, fmt.Errorf("%s: integer %s does not fit an Int (int64); write it as a float (%s.0) or a string",
					where(at), s, s)
			}
			return i, nil
		}
		f, err := g.Float64()
		if err != nil {
			return nil, fmt.Errorf("%s: bad JSON number %s: %w", where(at), g, err)
		}
		return f, nil
	case map[string]any:
		for _, k := range slices.Sorted(maps.Keys(g)) {
			c, err := convertNumbers(g[k], at+"/"+k)
			if err != nil {
				return nil, err
			}
			g[k] = c
		}
	case []any:
		for i, x := range g {
			c, err := convertNumbers(x, at+"/"+strconv.Itoa(i))
			if err != nil {
				return nil, err
			}
			g[i] = c
		}
	}
	return g, nil
}

// readMsgpack decodes one msgpack value, keeping Bytes as []byte and
// map keys of every kind.
func readMsgpack(data []byte) (any, error) {
	dec := msgpack.NewDecoder(bytes.NewReader(data))
	dec.SetMapDecoder(decodeMsgpackMap)
	g, err := dec.DecodeInterface()
	if err != nil {
		return nil, fmt.Errorf("bad msgpack: %w", err)
	}
	if _, err := dec.PeekCode(); err != io.EOF {
		return nil, errors.New("bad msgpack: more after the first value")
	}
	return g, nil
}

// decodeMsgpackMap decodes a msgpack map as map[string]any when every key
// is a string, else as map[any]any keyed by shmstore.Values (a []byte
// cannot be a Go map key; a Value of kind Bytes can, and Dict.Set takes
// it).
func decodeMsgpackMap(dec *msgpack.Decoder) (any, error) {
	n, err := dec.DecodeMapLen()
	if err != nil || n < 0 {
		return nil, err
	}
	keys := make([]shmstore.Value, n)
	vals := make([]any, n)
	strs := true
	for i := range n {
		k, err := dec.DecodeInterface()
		if err != nil {
			return nil, err
		}
		if keys[i], err = shmstore.ValueOf(k); err != nil {
			return nil, fmt.Errorf("map key %v: %w", k, err)
		}
		strs = strs && keys[i].Kind() == shmstore.KindString
		if vals[i], err = dec.DecodeInterface(); err != nil {
			return nil, err
		}
	}
	if strs {
		m := make(map[string]any, n)
		for i, k := range keys {
			m[k.Scalar().(string)] = vals[i]
		}
		return m, nil
	}
	m := make(map[any]any, n)
	for i, k := range keys {
		m[k] = vals[i]
	}
	return m, nil
}

// build turns a generic value as readTree gives it into what Dict.Set and
// List.Append store: a map becomes a new Dict (its keys Strings or
// shmstore.Values), a slice a new List, a scalar stays as it is.
func build(tx *shmstore.Tx, g any) (any, error) {
	switch g := g.(type) {
	case map[string]any:
		return buildDict(tx, g)
	case map[any]any:
		return buildDict(tx, g)
	case []any:
		l, err := tx.NewList()
		if err != nil {
			return nil, err
		}
		for _, x := range g {
			v, err := build(tx, x)
			if err == nil {
				err = l.Append(v)
			}
			if err != nil {
				return nil, err
			}
		}
		return l, nil
	}
	return g, nil
}

// buildDict is build for a map.
func buildDict[K comparable](tx *shmstore.Tx, g map[K]any) (any, error) {
	d, err := tx.NewDict()
	if err != nil {
		return nil, err
	}
	for k, x := range g {
		v, err := build(tx, x)
		if err == nil {
			err = d.Set(k, v)
		}
		if err != nil {
			return nil, fmt.Errorf("key %v: %w", k, err)
		}
	}
	return d, nil
}
