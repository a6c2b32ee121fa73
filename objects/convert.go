//go:build linux && (amd64 || arm64)

package objects

// Go values in and out of shared memory.
//
// Storing (Set, Append, FromGeneric...) walks a Go value with reflection
// and makes new containers, children first, so that nothing is allocated
// for a value that turns out not to be storable:
//
//   - nil, a nil pointer, map, slice or interface: None. bool: Bool.
//     Every integer type: Int; unsigned values beyond MaxInt64 are refused,
//     never wrapped or turned into a Float. float32/64: Float. string:
//     String. []byte and [N]byte (any element type of kind uint8): Bytes.
//   - time.Time: a String, RFC 3339 with nanoseconds and the zone offset
//     (see timeValue for why).
//   - other slices and arrays: a List. Maps: a Dict whose keys are the
//     map's keys as Strings, Ints or Bools (a key of a float, struct,
//     pointer... type is refused; so are two keys of a map[any]T that
//     become the same key, such as int(1) and int64(1)).
//   - structs: a Dict of their fields, by msgpack's rules, so that the
//     `msgpack` tags programs already have keep their meaning: a field is
//     named by its tag (or its Go name), "-" skips it, omitempty omits it
//     when empty, embedded structs are inlined (their fields become the
//     outer struct's) unless the tag says noinline or a name clashes
//     with any other field of the outer struct (msgpack looks only at
//     the fields before the embedded one, and then stores a name twice;
//     two fields of one name are refused here), and a field named
//     _msgpack tagged ",as_array" makes the struct a List of its fields
//     in order. Unexported fields are not stored; a struct that has only
//     unexported fields (sync.Mutex, atomic.Int64...) is refused rather
//     than stored as an empty Dict.
//   - a type with its own msgpack, binary or text encoding (msgpack's
//     CustomEncoder or Marshaler, encoding.BinaryMarshaler or
//     TextMarshaler, looked up in that order, as msgpack does) is stored
//     as msgpack encodes it (bin as Bytes, str as String...), except that
//     a text encoding is a String where msgpack writes bin; Decode gives
//     it back through the matching decoder (msgpack's, UnmarshalBinary,
//     UnmarshalText).
//   - a field of static type error: the String of its message.
//   - a Value or a *Dict, *List, *Record or *Counter anywhere in the
//     value: stored as itself (a container by reference).
//   - channels, functions, complex numbers, uintptr and unsafe.Pointer
//     are refused.
//
// Everything refused fails with ErrTypeMismatch and names the Go type and
// where the value is ("field \"Stats.Total\"": struct fields and string
// map keys after dots or in brackets, indexes and other keys in
// brackets). Nothing panics on a bad value, cycles included.
//
// Export copies a stored value out as generic Go values; Decode copies it
// into a typed Go value, undoing the mapping above (a Decode into the type
// that was stored gives back an equal value; see Decode for the few
// exceptions).

import (
	"bytes"
	"cmp"
	"encoding"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// maxDepth bounds how deeply values nest, when stored, exported or decoded:
// deeper is refused (a cycle of shared containers would otherwise recurse
// until the stack overflows).
const maxDepth = 10000

// cycleCheckFrom is the depth from which storing tracks the pointers,
// maps and slices on its path, to refuse a cyclic Go value early (below
// it, tracking costs more than it saves).
const cycleCheckFrom = 32

var (
	timeType    = reflect.TypeFor[time.Time]()
	errorType   = reflect.TypeFor[error]()
	valueType   = reflect.TypeFor[Value]()
	dictPtrType = reflect.TypeFor[*Dict]()
	listPtrType = reflect.TypeFor[*List]()
	recPtrType  = reflect.TypeFor[*Record]()
	ctrPtrType  = reflect.TypeFor[*Counter]()

	// encoderTypes and decoderTypes are the interfaces of types with their
	// own encoding, in the order msgpack asks for them.
	encoderTypes = []reflect.Type{
		reflect.TypeFor[msgpack.CustomEncoder](),
		reflect.TypeFor[msgpack.Marshaler](),
		reflect.TypeFor[encoding.BinaryMarshaler](),
		reflect.TypeFor[encoding.TextMarshaler](),
	}
	decoderTypes = []reflect.Type{
		reflect.TypeFor[msgpack.CustomDecoder](),
		reflect.TypeFor[msgpack.Unmarshaler](),
		reflect.TypeFor[encoding.BinaryUnmarshaler](),
		reflect.TypeFor[encoding.TextUnmarshaler](),
	}
)

// textCodec is the index of encoding.TextMarshaler in encoderTypes.
const textCodec = 3

// convertError is a Go value that cannot be stored, or a stored value that
// cannot be decoded into a Go value, and where it is.
type convertError struct {
	op   string   // "decode Dict into *T", or "" when storing
	path []string // segments, innermost first: ".Name", "[3]"
	msg  string
	err  error // ErrTypeMismatch, or the cause
}

// Error says what could not be stored, and where in the Go value.
func (e *convertError) Error() string {
	var b strings.Builder
	b.WriteString("objects: ")
	if e.op != "" {
		b.WriteString(e.op)
		b.WriteString(": ")
	}
	if len(e.path) > 0 {
		b.WriteString("field ")
		b.WriteString(strconv.Quote(strings.TrimPrefix(e.where(), ".")))
		b.WriteString(": ")
	}
	b.WriteString(e.msg)
	b.WriteString(": ")
	b.WriteString(e.err.Error())
	return b.String()
}

// Unwrap gives the sentinel (ErrTypeMismatch) the error wraps.
func (e *convertError) Unwrap() error { return e.err }

// where is the path, outermost segment first.
func (e *convertError) where() string {
	var b strings.Builder
	for i := len(e.path) - 1; i >= 0; i-- {
		b.WriteString(e.path[i])
	}
	return b.String()
}

// mismatchf makes a convertError wrapping ErrTypeMismatch.
func mismatchf(format string, args ...any) error {
	return &convertError{msg: fmt.Sprintf(format, args...), err: ErrTypeMismatch}
}

// at adds a path segment to a convertError; other errors (a transaction's
// own, such as a conflict) pass unchanged.
func at(err error, seg string) error {
	if ce, ok := err.(*convertError); ok {
		ce.path = append(ce.path, seg)
	}
	return err
}

// fieldSeg is the path segment of a struct field or of a String map key
// that reads well after a dot.
func fieldSeg(name string) string {
	if plainName(name) {
		return "." + name
	}
	return "[" + strconv.Quote(name) + "]"
}

// keySeg is the path segment of a map key.
func keySeg(k Value) string {
	if k.kind == KindString {
		return fieldSeg(k.s)
	}
	return "[" + k.String() + "]"
}

// plainName reports whether a name needs no quotes in a path.
func plainName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '_' && r != '-' {
			return false
		}
	}
	return true
}

// indexSeg is the path segment of a List element.
func indexSeg(i int) string { return "[" + strconv.Itoa(i) + "]" }

// convert stores a Go value that is not a scalar (see FromGeneric).
func (tx *Tx) convert(x any) (Value, error) { return tx.FromGeneric(x) }

// FromGeneric stores a Go value as Set does: scalars become values, maps
// and structs new Dicts, slices new Lists (the mapping is described at the
// top of convert.go). The generic values msgpack or encoding/json decode
// into (map[string]any, map[any]any, []any, scalars) are the usual input;
// map[any]any keys may be Values. A value that cannot be stored fails with
// ErrTypeMismatch naming its type and where it is.
func (tx *Tx) FromGeneric(g any) (Value, error) {
	s := storer{tx: tx}
	return s.value(reflect.ValueOf(g))
}

// storer stores one Go value.
type storer struct {
	tx    *Tx
	depth int
	path  map[visit]struct{} // pointers, maps and slices being stored, once deep
}

// visit is a pointer, map or slice on the path being stored.
type visit struct {
	p uintptr
	t reflect.Type
	n int
}

// enter goes one level deeper into v (a pointer, map, slice, array or
// struct); leave must follow when it succeeds.
func (s *storer) enter(v reflect.Value) error {
	s.depth++
	if s.depth > maxDepth {
		s.depth--
		return mismatchf("%s nested more than %d deep", v.Type(), maxDepth)
	}
	if s.depth < cycleCheckFrom {
		return nil
	}
	var k visit
	switch v.Kind() {
	case reflect.Pointer, reflect.Map:
		k = visit{p: v.Pointer(), t: v.Type()}
	case reflect.Slice:
		k = visit{p: v.Pointer(), t: v.Type(), n: v.Len()}
	default:
		return nil
	}
	if _, cycle := s.path[k]; cycle {
		s.depth--
		return mismatchf("%s contains itself (a cycle)", v.Type())
	}
	if s.path == nil {
		s.path = map[visit]struct{}{}
	}
	s.path[k] = struct{}{}
	return nil
}

// leave undoes enter.
func (s *storer) leave(v reflect.Value) {
	if s.depth >= cycleCheckFrom {
		switch v.Kind() {
		case reflect.Pointer, reflect.Map:
			delete(s.path, visit{p: v.Pointer(), t: v.Type()})
		case reflect.Slice:
			delete(s.path, visit{p: v.Pointer(), t: v.Type(), n: v.Len()})
		}
	}
	s.depth--
}

// value stores v.
func (s *storer) value(v reflect.Value) (Value, error) {
	if !v.IsValid() {
		return None, nil
	}
	t := v.Type()
	switch t {
	case timeType:
		if !v.CanInterface() {
			return None, mismatchf("unexported %s cannot be stored", t)
		}
		return timeValue(v.Interface().(time.Time))
	case valueType, dictPtrType, listPtrType, recPtrType, ctrPtrType:
		if t.Kind() == reflect.Pointer && v.IsNil() {
			return None, nil
		}
		if !v.CanInterface() {
			return None, mismatchf("unexported %s cannot be stored", t)
		}
		return s.tx.valueOf(v.Interface())
	case errorType:
		if v.IsNil() {
			return None, nil
		}
		if !v.CanInterface() {
			return None, mismatchf("unexported %s cannot be stored", t)
		}
		return String(v.Interface().(error).Error()), nil
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return None, nil
		}
		if err := s.enter(v); err != nil {
			return None, err
		}
		defer s.leave(v)
		return s.value(v.Elem())
	}
	if c := codecsOf(t).enc; c.ok {
		return s.custom(v, c)
	}
	switch v.Kind() {
	case reflect.Bool:
		return Bool(v.Bool()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return Int(v.Int()), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u := v.Uint()
		if u > math.MaxInt64 {
			return None, mismatchf("%d does not fit an Int (int64)", u)
		}
		return Int(int64(u)), nil
	case reflect.Float32, reflect.Float64:
		return Float(v.Float()), nil
	case reflect.String:
		return String(v.String()), nil
	case reflect.Slice:
		if v.IsNil() {
			return None, nil
		}
		if t.Elem().Kind() == reflect.Uint8 {
			return Bytes(v.Bytes()), nil
		}
		return s.list(v)
	case reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			b := make([]byte, v.Len())
			for i := range b {
				b[i] = byte(v.Index(i).Uint())
			}
			return Bytes(b), nil
		}
		return s.list(v)
	case reflect.Map:
		if v.IsNil() {
			return None, nil
		}
		return s.dict(v)
	case reflect.Struct:
		return s.structValue(v)
	}
	// Chan, Func, Complex64/128, Uintptr, UnsafePointer.
	return None, mismatchf("%s cannot be stored", t)
}

// list stores a slice or an array as a new List.
func (s *storer) list(v reflect.Value) (Value, error) {
	if err := s.enter(v); err != nil {
		return None, err
	}
	defer s.leave(v)
	vals := make([]Value, v.Len())
	for i := range vals {
		x, err := s.value(v.Index(i))
		if err != nil {
			return None, at(err, indexSeg(i))
		}
		vals[i] = x
	}
	return s.newList(vals)
}

// newList makes a List of vals.
func (s *storer) newList(vals []Value) (Value, error) {
	l, err := s.tx.NewList()
	if err != nil {
		return None, err
	}
	for _, x := range vals {
		if err := l.Append(x); err != nil {
			return None, err
		}
	}
	return l.Value(), nil
}

// item is one key and value of a Dict to be made.
type item struct{ k, v Value }

// newDict makes a Dict of items.
func (s *storer) newDict(items []item) (Value, error) {
	d, err := s.tx.NewDict()
	if err != nil {
		return None, err
	}
	for _, it := range items {
		if err := d.Set(it.k, it.v); err != nil {
			return None, err
		}
	}
	return d.Value(), nil
}

// dict stores a map as a new Dict.
func (s *storer) dict(v reflect.Value) (Value, error) {
	if err := s.enter(v); err != nil {
		return None, err
	}
	defer s.leave(v)
	// Keys of some types may come out alike: int(1) and int64(1) in a
	// map[any]T, two times of one instant and offset, two values of a type
	// with its own encoding that encode alike.
	var seen map[Value]reflect.Value
	kt := v.Type().Key()
	if codecsOf(kt).enc.ok || kt.Kind() == reflect.Interface || kt == valueType || kt == timeType {
		seen = make(map[Value]reflect.Value, v.Len())
	}
	items := make([]item, 0, v.Len())
	it := v.MapRange()
	for it.Next() {
		k, err := s.key(it.Key())
		if err != nil {
			return None, err
		}
		if seen != nil {
			if other, dup := seen[k]; dup {
				return None, mismatchf("map keys %v (%s) and %v (%s) would both be the Dict key %v",
					other, dynType(other), it.Key(), dynType(it.Key()), k)
			}
			seen[k] = it.Key()
		}
		x, err := s.value(it.Value())
		if err != nil {
			return None, at(err, keySeg(k))
		}
		items = append(items, item{k, x})
	}
	return s.newDict(items)
}

// dynType is the type of the value v holds.
func dynType(v reflect.Value) reflect.Type {
	if v.Kind() == reflect.Interface && !v.IsNil() {
		return v.Elem().Type()
	}
	return v.Type()
}

// key converts a map key into a Dict key: strings, integers (unsigned
// ones up to MaxInt64), bools, times (as Strings, like time values), and
// the scalar keys of types with their own encoding.
func (s *storer) key(k reflect.Value) (Value, error) {
	if !k.CanInterface() {
		return None, mismatchf("map key of unexported type %s cannot be stored", k.Type())
	}
	var v Value
	switch t := k.Type(); {
	case t == valueType:
		v = k.Interface().(Value)
	case t == timeType:
		var err error
		if v, err = timeValue(k.Interface().(time.Time)); err != nil {
			return None, err
		}
	case k.Kind() == reflect.Interface:
		if k.IsNil() {
			return None, nil
		}
		return s.key(k.Elem())
	default:
		if c := codecsOf(t).enc; c.ok {
			var err error
			if v, err = s.custom(k, c); err != nil {
				return None, err
			}
			if v.kind.IsContainer() {
				return None, mismatchf("map key of type %s encodes as a %v, not a String, Int or Bool", t, v.kind)
			}
			break
		}
		switch k.Kind() {
		case reflect.String:
			v = String(k.String())
		case reflect.Bool:
			v = Bool(k.Bool())
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			v = Int(k.Int())
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			u := k.Uint()
			if u > math.MaxInt64 {
				return None, mismatchf("map key %d does not fit an Int (int64)", u)
			}
			v = Int(int64(u))
		default:
			return None, mismatchf("map key of type %s cannot be a Dict key (want a string, an integer or a bool)", t)
		}
	}
	if err := checkKey(v); err != nil {
		return None, &convertError{msg: "map key", err: err}
	}
	return v, nil
}

// structValue stores a struct as a new Dict of its fields (a List if
// msgpack's as_array option is set).
func (s *storer) structValue(v reflect.Value) (Value, error) {
	if err := s.enter(v); err != nil {
		return None, err
	}
	defer s.leave(v)
	fs := fieldsOf(v.Type())
	if len(fs.list) == 0 && fs.hidden {
		return None, mismatchf("%s cannot be stored: it has only unexported fields", v.Type())
	}
	if fs.twice != "" {
		return None, mismatchf("%s cannot be stored: two of its fields are named %q", v.Type(), fs.twice)
	}
	if fs.asArray {
		vals := make([]Value, len(fs.list))
		for i, f := range fs.list {
			fv, ok := fieldByIndex(v, f.index)
			if !ok {
				continue
			}
			x, err := s.value(fv)
			if err != nil {
				return None, at(err, fieldSeg(f.name))
			}
			vals[i] = x
		}
		return s.newList(vals)
	}
	items := make([]item, 0, len(fs.list))
	for _, f := range fs.list {
		fv, ok := fieldByIndex(v, f.index)
		if fs.hasOmitEmpty && (!ok || f.omitEmpty && isEmptyValue(fv)) {
			continue
		}
		var x Value
		if ok {
			var err error
			if x, err = s.value(fv); err != nil {
				return None, at(err, fieldSeg(f.name))
			}
		}
		items = append(items, item{String(f.name), x})
	}
	return s.newDict(items)
}

// custom stores a value of a type with its own encoding c as msgpack
// encodes it, or as a String if it is a text encoding.
func (s *storer) custom(v reflect.Value, c codec) (Value, error) {
	t := v.Type()
	if !v.CanInterface() {
		return None, mismatchf("unexported %s cannot be stored", t)
	}
	x := v.Interface()
	if c.byPtr {
		if !v.CanAddr() {
			p := reflect.New(t)
			p.Elem().Set(v)
			v = p.Elem()
		}
		x = v.Addr().Interface()
	}
	if c.c == textCodec {
		var b []byte
		err := safely(func() (err error) {
			b, err = x.(encoding.TextMarshaler).MarshalText()
			return err
		})
		if err != nil {
			return None, mismatchf("%s cannot be stored: %v", t, err)
		}
		return String(string(b)), nil
	}
	var b []byte
	err := safely(func() (err error) {
		b, err = msgpack.Marshal(x)
		return err
	})
	if err != nil {
		return None, mismatchf("%s cannot be stored: %v", t, err)
	}
	g, err := readMsgpack(msgpack.NewDecoder(bytes.NewReader(b)), 0)
	if err != nil {
		return None, mismatchf("%s cannot be stored: its msgpack encoding: %v", t, err)
	}
	return s.value(reflect.ValueOf(g))
}

// safely runs f, which encodes or decodes a user's type with its own
// methods or msgpack, and turns a panic into an error (msgpack panics on
// some types, such as a uintptr field).
func safely(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return f()
}

// readMsgpack decodes one msgpack value into generic values: nil, bool,
// int64, uint64, float64, string, []byte, time.Time, []any and map[any]any
// (with Bytes keys as Values).
func readMsgpack(dec *msgpack.Decoder, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nested more than %d deep", maxDepth)
	}
	c, err := dec.PeekCode()
	if err != nil {
		return nil, err
	}
	switch {
	case c == msgpcode.Nil:
		return nil, dec.DecodeNil()
	case c == msgpcode.False || c == msgpcode.True:
		return dec.DecodeBool()
	case c == msgpcode.Uint8 || c == msgpcode.Uint16 || c == msgpcode.Uint32 || c == msgpcode.Uint64:
		return dec.DecodeUint64()
	case msgpcode.IsFixedNum(c) || c == msgpcode.Int8 || c == msgpcode.Int16 || c == msgpcode.Int32 || c == msgpcode.Int64:
		return dec.DecodeInt64()
	case c == msgpcode.Float || c == msgpcode.Double:
		return dec.DecodeFloat64()
	case msgpcode.IsString(c):
		return dec.DecodeString()
	case msgpcode.IsBin(c):
		return dec.DecodeBytes()
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		n, err := dec.DecodeArrayLen()
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, 0, min(n, 1024))
		for range n {
			x, err := readMsgpack(dec, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, x)
		}
		return out, nil
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		n, err := dec.DecodeMapLen()
		if err != nil || n < 0 {
			return nil, err
		}
		out := make(map[any]any, min(n, 1024))
		for range n {
			k, err := readMsgpack(dec, depth+1)
			if err != nil {
				return nil, err
			}
			switch kk := k.(type) {
			case []byte:
				k = Bytes(kk)
			case []any, map[any]any:
				return nil, fmt.Errorf("a map key that is an array or a map")
			}
			if out[k], err = readMsgpack(dec, depth+1); err != nil {
				return nil, err
			}
		}
		return out, nil
	case msgpcode.IsExt(c):
		x, err := dec.DecodeInterface()
		if err != nil {
			return nil, err
		}
		if _, ok := x.(time.Time); !ok {
			return nil, fmt.Errorf("msgpack extension %T", x)
		}
		return x, nil
	}
	return nil, fmt.Errorf("msgpack code %#x", c)
}

// timeValue stores a time.Time as a String: RFC 3339 with nanoseconds and
// the zone offset ("2006-01-02T15:04:05.999999999-07:00"), which Decode
// parses back into a time.Time (into any, and in Export, it stays a
// string).
//
// Why a String: it is the simplest form that round-trips exactly, to the
// nanosecond and with the zone offset (msgpack's time extension, stored
// as Bytes, keeps no offset, and Export would give bytes); it needs no
// shared object per time (as a Record would), it is what encoding/json and
// other languages read as a time, and shmctl shows it as is. What is not
// kept: the Location's name and rules (a time in Europe/Paris comes back
// in a fixed zone of the same offset, or in Local if Local has that
// offset then), and the monotonic clock reading. A time RFC 3339 cannot
// say (a year outside 0-9999, an offset with seconds) is refused.
func timeValue(t time.Time) (Value, error) {
	s := t.Format(time.RFC3339Nano)
	back, err := time.Parse(time.RFC3339Nano, s)
	_, off := t.Zone()
	if _, boff := back.Zone(); err != nil || !back.Equal(t) || boff != off {
		return None, mismatchf("time.Time %v cannot be stored exactly as RFC 3339", t)
	}
	return String(s), nil
}

// codec is how a type encodes (or decodes) itself, if it does.
type codec struct {
	c     int  // the index of the interface in encoderTypes or decoderTypes
	byPtr bool // through its pointer
	ok    bool // the type has its own encoding
}

// codecs are a type's own encoding and decoding.
type codecs struct{ enc, dec codec }

var codecCache sync.Map // reflect.Type -> codecs

// codecsOf returns how t encodes and decodes itself: the first of the
// interfaces t implements, else the first *t implements (as msgpack looks
// them up). Interfaces and pointers are walked through, not asked.
func codecsOf(t reflect.Type) codecs {
	if c, ok := codecCache.Load(t); ok {
		return c.(codecs)
	}
	var cs codecs
	if t.Kind() != reflect.Interface && t.Kind() != reflect.Pointer {
		cs = codecs{enc: findCodec(t, encoderTypes), dec: findCodec(t, decoderTypes)}
	}
	codecCache.Store(t, cs)
	return cs
}

func findCodec(t reflect.Type, ifaces []reflect.Type) codec {
	for i, it := range ifaces {
		if t.Implements(it) {
			return codec{c: i, ok: true}
		}
	}
	pt := reflect.PointerTo(t)
	for i, it := range ifaces {
		if pt.Implements(it) {
			return codec{c: i, byPtr: true, ok: true}
		}
	}
	return codec{}
}

// structField is a struct field as msgpack sees it.
type structField struct {
	name      string
	index     []int
	omitEmpty bool
}

// structFields are a struct type's fields as msgpack sees them.
type structFields struct {
	list         []*structField          // stored, in order
	byName       map[string]*structField // decoded: names, aliases, inlined structs' own names
	asArray      bool
	hasOmitEmpty bool
	hidden       bool   // some fields are left out for being unexported
	twice        string // a name two stored fields have
}

func (fs *structFields) add(f *structField) {
	fs.byName[f.name] = f
	fs.list = append(fs.list, f)
	if f.omitEmpty {
		fs.hasOmitEmpty = true
	}
}

var structCache sync.Map // reflect.Type -> *structFields

// fieldsOf returns a struct type's fields by msgpack's rules
// (vmihailenco/msgpack/v5 getFields: tag names, "-", omitempty, alias,
// inline and noinline, as_array and omitempty on a _msgpack field).
func fieldsOf(t reflect.Type) *structFields {
	if fs, ok := structCache.Load(t); ok {
		return fs.(*structFields)
	}
	fs, _ := structCache.LoadOrStore(t, buildFields(t, nil))
	return fs.(*structFields)
}

// buildFields reads t's fields; chain holds the structs t is inlined in,
// so that a struct embedding itself (through a pointer) is not inlined
// forever (msgpack's own getFields would overflow the stack).
func buildFields(t reflect.Type, chain []reflect.Type) *structFields {
	fs := &structFields{byName: map[string]*structField{}}
	chain = append(chain[:len(chain):len(chain)], t)
	// The names of t's own (not embedded) fields: an embedded struct with
	// a field of one of these names is not inlined. (msgpack looks only at
	// the fields before the embedded one, and then stores a name twice.)
	own := map[string]bool{}
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _ := parseTag(sf.Tag.Get("msgpack"))
		if name == "-" || sf.Anonymous || !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		own[name] = true
	}
	omitEmpty := false
	for i := range t.NumField() {
		sf := t.Field(i)
		name, opts := parseTag(sf.Tag.Get("msgpack"))
		if name == "-" {
			continue
		}
		if sf.Name == "_msgpack" {
			fs.asArray = opts.has("as_array") || opts.has("asArray")
			if opts.has("omitempty") {
				omitEmpty = true
			}
		}
		if !sf.IsExported() && !sf.Anonymous {
			fs.hidden = fs.hidden || sf.Name != "_msgpack"
			continue
		}
		f := &structField{name: name, index: sf.Index, omitEmpty: omitEmpty || opts.has("omitempty")}
		if f.name == "" {
			f.name = sf.Name
		}
		if sf.Anonymous && !opts.has("noinline") {
			if inlineFields(fs, sf.Type, f, opts.has("inline"), chain, own) {
				fs.byName[f.name] = f
				continue
			}
		}
		if !sf.IsExported() {
			// An embedded unexported type that is not inlined: msgpack
			// would store it but cannot set it back; it is left out.
			fs.hidden = true
			continue
		}
		fs.add(f)
		if alias, ok := opts["alias"]; ok {
			fs.byName[alias] = f
		}
	}
	seen := map[string]bool{}
	for _, f := range fs.list {
		if seen[f.name] {
			fs.twice = f.name
		}
		seen[f.name] = true
	}
	return fs
}

// inlineFields adds the fields of the embedded struct (or pointer to
// struct) t to fs and reports whether it did. With force (the inline
// option) the fields are added except those fs or own already has;
// without, only a struct without its own encoding is inlined, and only if
// none of its fields is already in fs or own.
func inlineFields(fs *structFields, t reflect.Type, f *structField, force bool, chain []reflect.Type, own map[string]bool) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || slices.Contains(chain, t) {
		return false
	}
	if !force {
		if t == timeType {
			return false
		}
		if cs := codecsOf(t); cs.enc.ok || cs.dec.ok {
			return false
		}
	}
	innerFS := buildFields(t, chain)
	fs.hidden = fs.hidden || innerFS.hidden
	inner := innerFS.list
	clash := func(name string) bool {
		_, ok := fs.byName[name]
		return ok || own[name]
	}
	if !force && slices.ContainsFunc(inner, func(g *structField) bool { return clash(g.name) }) {
		return false
	}
	for _, g := range inner {
		if clash(g.name) {
			continue
		}
		idx := append(append([]int(nil), f.index...), g.index...)
		fs.add(&structField{name: g.name, index: idx, omitEmpty: g.omitEmpty})
	}
	return true
}

// tagOptions are a struct tag's options (omitempty, alias:name...).
type tagOptions map[string]string

func (o tagOptions) has(name string) bool {
	_, ok := o[name]
	return ok
}

// parseTag splits a msgpack struct tag into its name and options.
func parseTag(tag string) (string, tagOptions) {
	parts := strings.Split(tag, ",")
	name := strings.TrimSpace(parts[0])
	opts := tagOptions{}
	if strings.Contains(name, ":") {
		parts, name = append([]string{""}, parts...), ""
	}
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(p), ":")
		opts[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return name, opts
}

// fieldByIndex is the field at index, through embedded pointers; false
// if one of them is nil.
func fieldByIndex(v reflect.Value, index []int) (reflect.Value, bool) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return v, false
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, true
}

// fieldAlloc is the field at index, allocating nil embedded pointers on
// the way; false if one cannot be set.
func fieldAlloc(v reflect.Value, index []int) (reflect.Value, bool) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				if !v.CanSet() {
					return v, false
				}
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, true
}

// isEmptyValue is msgpack's test for omitempty.
func isEmptyValue(v reflect.Value) bool {
	k := v.Kind()
	for k == reflect.Interface {
		if v.IsNil() {
			return true
		}
		v = v.Elem()
		k = v.Kind()
	}
	if v.CanInterface() {
		if z, ok := v.Interface().(interface{ IsZero() bool }); ok {
			return nilable(k) && v.IsNil() || z.IsZero()
		}
	}
	switch k {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Struct:
		fs := fieldsOf(v.Type())
		if !fs.hasOmitEmpty {
			return len(fs.list) == 0
		}
		for _, f := range fs.list {
			fv, ok := fieldByIndex(v, f.index)
			if ok && !(f.omitEmpty && isEmptyValue(fv)) {
				return false
			}
		}
		return true
	case reflect.Bool:
		return !v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return v.Float() == 0
	case reflect.Pointer:
		return v.IsNil()
	}
	return false
}

func nilable(k reflect.Kind) bool {
	switch k {
	case reflect.Chan, reflect.Func, reflect.Interface, reflect.Map, reflect.Pointer, reflect.Slice:
		return true
	}
	return false
}

// Export copies a value out of shared memory into generic Go values:
//
//   - a Dict whose keys are all Strings: map[string]any; any other Dict:
//     map[any]any whose keys are string, int64, bool or nil (a Bytes key
//     becomes a string; if it then equals a String key of the same Dict,
//     Export fails with ErrTypeMismatch). So a map[int]string stored with
//     Set exports as map[any]any{int64(1): "a", ...}.
//   - a List: []any. A Record: map[string]any of its fields. A Counter:
//     its int64.
//   - scalars as Value.Scalar: nil, bool, int64, float64, string, []byte.
//     A stored time.Time is its RFC 3339 string.
func (tx *Tx) Export(v Value) (any, error) {
	return tx.export(v, 0)
}

// exported is a Dict's key and its value exported.
type exported struct {
	k Value
	v any
}

func (tx *Tx) export(v Value, depth int) (any, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("objects: export: %v nested more than %d deep (a cycle?): %w", v.kind, maxDepth, ErrTypeMismatch)
	}
	switch v.kind {
	case KindDict:
		d, err := tx.dictAt(v.hd())
		if err != nil {
			return nil, err
		}
		var items []exported
		allStrings := true
		var ierr error
		err = d.Range(func(k, x Value) bool {
			g, err := tx.export(x, depth+1)
			if err != nil {
				ierr = err
				return false
			}
			allStrings = allStrings && k.kind == KindString
			items = append(items, exported{k, g})
			return true
		})
		if err == nil {
			err = ierr
		}
		if err != nil {
			return nil, err
		}
		if allStrings {
			m := make(map[string]any, len(items))
			for _, it := range items {
				m[it.k.s] = it.v
			}
			return m, nil
		}
		// Bytes keys become strings (a []byte cannot be a map key); a
		// String key with the same bytes would collide, and is refused.
		m := make(map[any]any, len(items))
		for _, it := range items {
			k := it.k.Scalar()
			if it.k.kind == KindBytes {
				k = it.k.s
			}
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("objects: export: keys %v collide as Go map keys: %w", it.k, ErrTypeMismatch)
			}
			m[k] = it.v
		}
		return m, nil
	case KindList:
		l, err := tx.listAt(v.hd())
		if err != nil {
			return nil, err
		}
		vals, err := l.Items()
		if err != nil {
			return nil, err
		}
		out := make([]any, len(vals))
		for i, x := range vals {
			if out[i], err = tx.export(x, depth+1); err != nil {
				return nil, err
			}
		}
		return out, nil
	case KindRecord:
		r, err := tx.recordAt(v.hd())
		if err != nil {
			return nil, err
		}
		m := make(map[string]any, len(r.fields))
		for _, f := range r.fields {
			x, err := r.Get(f)
			if err != nil {
				return nil, err
			}
			if m[f], err = tx.export(x, depth+1); err != nil {
				return nil, err
			}
		}
		return m, nil
	case KindCounter:
		c, err := tx.counterAt(v.hd())
		if err != nil {
			return nil, err
		}
		return c.Get()
	}
	return v.Scalar(), nil
}

// Decode copies a value into the Go value out points to (a struct with
// msgpack tags, a map, a slice, a scalar...), undoing what Set does: a
// value stored from a Go type and decoded into the same type comes back
// equal, with these exceptions: a time.Time comes back with its instant
// and zone offset but not its Location's name (see timeValue); a pointer
// to a nil pointer comes back nil; unexported fields, which are not
// stored, and a field msgpack's omitempty left out keep what out had; and
// an interface (any) receives what Export gives
// (int64 for every integer, map[any]any for maps with other than String
// keys, a time's RFC 3339 string...).
//
// Into a non-nil map, Decode adds keys; into a non-nil pointer (also one
// held by an interface), it decodes into what it points to. None decodes
// into the zero value of any type. Integers are checked to fit the
// target (an Int 300 into a uint8 fails), a Float is never truncated into
// an integer, and a String decodes into a time.Time if it is RFC 3339.
// A mismatch fails with ErrTypeMismatch naming the field; out may then be
// partly filled.
func (tx *Tx) Decode(v Value, out any) error {
	rv := reflect.ValueOf(out)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("objects: decode %v into %T: want a non-nil pointer: %w", v.kind, out, ErrTypeMismatch)
	}
	g, err := tx.Export(v)
	if err != nil {
		return err
	}
	if err := decodeInto(g, rv.Elem(), 0); err != nil {
		if ce, ok := err.(*convertError); ok {
			ce.op = fmt.Sprintf("decode %v into %T", v.kind, out)
		}
		return err
	}
	return nil
}

// describe names an exported value's kind, for errors.
func describe(g any) string {
	switch g := g.(type) {
	case nil:
		return "None"
	case bool:
		return fmt.Sprintf("Bool %v", g)
	case int64:
		return fmt.Sprintf("Int %d", g)
	case float64:
		return fmt.Sprintf("Float %v", g)
	case string:
		if len(g) > 40 {
			return "String"
		}
		return fmt.Sprintf("String %q", g)
	case []byte:
		return "Bytes"
	case []any:
		return "List"
	case map[string]any, map[any]any:
		return "Dict"
	}
	return fmt.Sprintf("%T", g)
}

// decodeInto sets rv (settable) from g, a value as Export gives it.
func decodeInto(g any, rv reflect.Value, depth int) error {
	t := rv.Type()
	if !rv.CanSet() {
		return mismatchf("cannot set a %s (unexported)", t)
	}
	if depth > maxDepth {
		return mismatchf("nested more than %d deep", maxDepth)
	}
	if g == nil {
		rv.SetZero()
		return nil
	}
	switch t {
	case timeType:
		switch x := g.(type) {
		case string:
			tm, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return mismatchf("%s is not an RFC 3339 time", describe(g))
			}
			rv.Set(reflect.ValueOf(tm))
			return nil
		case time.Time:
			rv.Set(reflect.ValueOf(x))
			return nil
		}
		return mismatchf("%s cannot be decoded into time.Time", describe(g))
	case errorType:
		if s, ok := g.(string); ok {
			rv.Set(reflect.ValueOf(errors.New(s)))
			return nil
		}
		return mismatchf("%s cannot be decoded into error", describe(g))
	}
	if codecsOf(t).dec.ok {
		return decodeCustom(g, rv)
	}
	switch k := t.Kind(); k {
	case reflect.Pointer:
		if rv.IsNil() {
			rv.Set(reflect.New(t.Elem()))
		}
		return decodeInto(g, rv.Elem(), depth+1)
	case reflect.Interface:
		if !rv.IsNil() {
			if e := rv.Elem(); e.Kind() == reflect.Pointer && !e.IsNil() {
				return decodeInto(g, e.Elem(), depth+1)
			}
		}
		gv := reflect.ValueOf(g)
		if !gv.Type().AssignableTo(t) {
			return mismatchf("%s cannot be decoded into %s", describe(g), t)
		}
		rv.Set(gv)
		return nil
	case reflect.Bool:
		b, ok := g.(bool)
		if !ok {
			break
		}
		rv.SetBool(b)
		return nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, ok := g.(int64)
		if !ok {
			break
		}
		if rv.OverflowInt(i) {
			return mismatchf("%s does not fit %s", describe(g), t)
		}
		rv.SetInt(i)
		return nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		i, ok := g.(int64)
		if !ok {
			break
		}
		if i < 0 || rv.OverflowUint(uint64(i)) {
			return mismatchf("%s does not fit %s", describe(g), t)
		}
		rv.SetUint(uint64(i))
		return nil
	case reflect.Float32, reflect.Float64:
		var f float64
		switch x := g.(type) {
		case float64:
			f = x
		case int64:
			f = float64(x)
			if f >= math.MaxInt64 || int64(f) != x {
				return mismatchf("%s has no exact %s", describe(g), t)
			}
		default:
			return mismatchf("%s cannot be decoded into %s", describe(g), t)
		}
		if rv.OverflowFloat(f) {
			return mismatchf("%s does not fit %s", describe(g), t)
		}
		rv.SetFloat(f)
		return nil
	case reflect.String:
		switch x := g.(type) {
		case string:
			rv.SetString(x)
			return nil
		case []byte:
			rv.SetString(string(x))
			return nil
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			switch x := g.(type) {
			case []byte:
				rv.SetBytes(append([]byte{}, x...))
				return nil
			case string:
				rv.SetBytes([]byte(x))
				return nil
			}
		}
		l, ok := g.([]any)
		if !ok {
			break
		}
		s := reflect.MakeSlice(t, len(l), len(l))
		for i, x := range l {
			if err := decodeInto(x, s.Index(i), depth+1); err != nil {
				return at(err, indexSeg(i))
			}
		}
		rv.Set(s)
		return nil
	case reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			var b []byte
			switch x := g.(type) {
			case []byte:
				b = x
			case string:
				b = []byte(x)
			}
			if b != nil {
				if len(b) > rv.Len() {
					return mismatchf("Bytes of %d bytes do not fit %s", len(b), t)
				}
				for i := range rv.Len() {
					var c byte
					if i < len(b) {
						c = b[i]
					}
					rv.Index(i).SetUint(uint64(c))
				}
				return nil
			}
		}
		l, ok := g.([]any)
		if !ok {
			break
		}
		if len(l) > rv.Len() {
			return mismatchf("List of %d items does not fit %s", len(l), t)
		}
		for i := range rv.Len() {
			var x any
			if i < len(l) {
				x = l[i]
			}
			if err := decodeInto(x, rv.Index(i), depth+1); err != nil {
				return at(err, indexSeg(i))
			}
		}
		return nil
	case reflect.Map:
		switch m := g.(type) {
		case map[string]any:
			return decodeMap(m, rv, depth)
		case map[any]any:
			return decodeMap(m, rv, depth)
		}
	case reflect.Struct:
		switch m := g.(type) {
		case map[string]any:
			return decodeStruct(m, rv, depth)
		case map[any]any:
			return decodeStruct(m, rv, depth)
		case []any:
			fs := fieldsOf(t)
			if len(m) != len(fs.list) {
				return mismatchf("List of %d items cannot be decoded into %s of %d fields", len(m), t, len(fs.list))
			}
			for i, f := range fs.list {
				if err := decodeField(m[i], rv, f, depth); err != nil {
					return err
				}
			}
			return nil
		}
	default:
		// Chan, Func, Complex64/128, Uintptr, UnsafePointer.
		return mismatchf("%s cannot be decoded into %s", describe(g), t)
	}
	return mismatchf("%s cannot be decoded into %s", describe(g), t)
}

// decodeMap adds the items of m to the map rv (made if nil).
func decodeMap[K comparable](m map[K]any, rv reflect.Value, depth int) error {
	t := rv.Type()
	if rv.IsNil() {
		rv.Set(reflect.MakeMapWithSize(t, len(m)))
	}
	for k, x := range m {
		kv := reflect.New(t.Key()).Elem()
		seg := keySegOf(k)
		if any(k) == nil && t.Key().Kind() != reflect.Interface {
			return at(mismatchf("key None cannot be decoded into %s", t.Key()), seg)
		}
		if err := decodeInto(any(k), kv, depth+1); err != nil {
			if ce, ok := err.(*convertError); ok {
				ce.msg = "key: " + ce.msg
			}
			return at(err, seg)
		}
		xv := reflect.New(t.Elem()).Elem()
		if err := decodeInto(x, xv, depth+1); err != nil {
			return at(err, seg)
		}
		rv.SetMapIndex(kv, xv)
	}
	return nil
}

// keySegOf is the path segment of an exported map key.
func keySegOf(k any) string {
	switch k := k.(type) {
	case string:
		return fieldSeg(k)
	case nil:
		return "[None]"
	}
	return fmt.Sprintf("[%v]", k)
}

// decodeStruct sets the fields of the struct rv named by the keys of m;
// other keys are ignored, as msgpack does.
func decodeStruct[K comparable](m map[K]any, rv reflect.Value, depth int) error {
	fs := fieldsOf(rv.Type())
	for k, x := range m {
		name, ok := any(k).(string)
		if !ok {
			return mismatchf("key %v (%T) cannot name a field of %s", k, k, rv.Type())
		}
		if f := fs.byName[name]; f != nil {
			if err := decodeField(x, rv, f, depth); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeField sets field f of the struct rv from x.
func decodeField(x any, rv reflect.Value, f *structField, depth int) error {
	fv, ok := fieldAlloc(rv, f.index)
	if !ok {
		if x == nil {
			return nil
		}
		return at(mismatchf("cannot be set: an embedded pointer on its way is nil and unexported"), fieldSeg(f.name))
	}
	if err := decodeInto(x, fv, depth+1); err != nil {
		return at(err, fieldSeg(f.name))
	}
	return nil
}

// decodeCustom decodes g into rv, of a type with its own decoding, as
// msgpack does: g is encoded with msgpack and decoded into rv.
func decodeCustom(g any, rv reflect.Value) error {
	t := rv.Type()
	var b []byte
	err := safely(func() (err error) {
		b, err = msgpack.Marshal(g)
		return err
	})
	if err != nil {
		return mismatchf("%s cannot be decoded into %s: %v", describe(g), t, err)
	}
	p := reflect.New(t)
	if err := safely(func() error { return msgpack.Unmarshal(b, p.Interface()) }); err != nil {
		return mismatchf("%s cannot be decoded into %s: %v", describe(g), t, err)
	}
	rv.Set(p.Elem())
	return nil
}

// SortedKeys orders keys for stable output (kind, then content).
func SortedKeys(ks []Value) { slices.SortFunc(ks, CompareKeys) }

// CompareKeys orders two keys for stable output: by kind, then content.
func CompareKeys(a, b Value) int {
	if a.kind != b.kind {
		return cmp.Compare(a.kind, b.kind)
	}
	if a.kind == KindInt {
		return cmp.Compare(int64(a.n), int64(b.n))
	}
	if c := strings.Compare(a.s, b.s); c != 0 {
		return c
	}
	return cmp.Compare(a.n, b.n)
}
