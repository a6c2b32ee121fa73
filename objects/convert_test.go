//go:build linux && (amd64 || arm64)

package objects

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"testing/quick"
	"time"
	_ "time/tzdata" // America/New_York on machines without a zone database
	"unsafe"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/shmstore/shmstore/txn"
)

// store sets x under key in the root in its own transaction.
func store(s *Space, key string, x any) error {
	return s.Update(func(tx *Tx) error { return tx.Root().Set(key, x) })
}

// decodeKey decodes the value under key into out in a View.
func decodeKey(s *Space, key string, out any) error {
	return s.View(func(tx *Tx) error {
		v, err := tx.Root().Get(key)
		if err != nil {
			return err
		}
		return tx.Decode(v, out)
	})
}

// exportKey exports the value under key in a View.
func exportKey(t *testing.T, s *Space, key string) any {
	t.Helper()
	var g any
	require.NoError(t, s.View(func(tx *Tx) error {
		v, err := tx.Root().Get(key)
		if err != nil {
			return err
		}
		g, err = tx.Export(v)
		return err
	}))
	return g
}

// roundTrip stores in, decodes it into a new value of the same type and
// requires the two to be equal.
func roundTrip(t *testing.T, s *Space, key string, in any) {
	t.Helper()
	require.NoError(t, store(s, key, in))
	out := reflect.New(reflect.TypeOf(in))
	require.NoError(t, decodeKey(s, key, out.Interface()))
	require.Equal(t, in, out.Elem().Interface())
}

func TestIntAndBoolKeyedMapsRoundTrip(t *testing.T) {
	s := newSpace(t)
	for i, in := range []any{
		map[int]string{1: "a", -2: "b", math.MaxInt: "max", math.MinInt: "min"},
		map[int64]any{1: int64(5), 2: "s", 3: nil, 4: []any{int64(1), "x"}, 5: map[string]any{"a": true},
			6: 2.5, 7: []byte("b"), 8: map[any]any{int64(9): false}},
		map[bool]int{true: 1, false: 0},
		map[uint8]string{0: "zero", 255: "max"},
		map[int8][]int{-128: {1, 2}, 127: nil},
		map[uint64]int{math.MaxInt64: 1},
		map[uint]bool{7: true},
		map[int32]map[bool]string{3: {true: "yes"}, 4: {}},
		map[int16]*int{5: nil},
		map[int]string{},
		map[int]string(nil),
		map[bool]struct{}{true: {}},
	} {
		t.Run(fmt.Sprintf("%d_%T", i, in), func(t *testing.T) {
			roundTrip(t, s, fmt.Sprint("m", i), in)
		})
	}
	checkClean(t, s)
}

func TestIntAndBoolKeyedMapsExport(t *testing.T) {
	s := newSpace(t)
	for _, tc := range []struct {
		in   any
		want any
	}{
		{map[int]string{1: "a", -2: "b"}, map[any]any{int64(1): "a", int64(-2): "b"}},
		{map[uint8]int{7: 8}, map[any]any{int64(7): int64(8)}},
		{map[bool]int{true: 1, false: 0}, map[any]any{true: int64(1), false: int64(0)}},
		{map[any]int{"s": 1, 2: 2, nil: 3, true: 4}, map[any]any{"s": int64(1), int64(2): int64(2), nil: int64(3), true: int64(4)}},
		{map[string]int{"a": 1}, map[string]any{"a": int64(1)}},
		{map[int]string{}, map[string]any{}},
	} {
		require.NoError(t, store(s, "x", tc.in))
		require.Equal(t, tc.want, exportKey(t, s, "x"), "%#v", tc.in)
		// Into an interface, Decode gives what Export gives.
		var g any
		require.NoError(t, decodeKey(s, "x", &g))
		require.Equal(t, tc.want, g)
	}
}

// TestFromGenericValueKeys: the generic maps shmctl decodes msgpack into
// (map[any]any keyed by Values, Bytes keys included).
func TestFromGenericValueKeys(t *testing.T) {
	s := newSpace(t)
	require.NoError(t, s.Update(func(tx *Tx) error {
		v, err := tx.FromGeneric(map[any]any{Bytes([]byte("b")): int8(1), Int(2): uint16(2), String("s"): []byte("x")})
		if err != nil {
			return err
		}
		return tx.Root().Set("g", v)
	}))
	require.Equal(t, map[any]any{"b": int64(1), int64(2): int64(2), "s": []byte("x")}, exportKey(t, s, "g"))
}

type Stats struct {
	Total uint64
	Hits  uint
}

type withStats struct {
	Name  string
	Stats Stats
}

func TestUintBeyondInt64IsRefused(t *testing.T) {
	const tooBig = "18446744073709551615 does not fit an Int (int64)"
	maxU := uint64(math.MaxUint64)
	for _, tc := range []struct {
		name string
		in   any
		want string // the whole message after "objects: "
	}{
		{"top uint64", maxU, tooBig},
		{"top uint", uint(math.MaxUint), tooBig},
		{"pointer", &maxU, tooBig},
		{"struct field", withStats{Name: "n", Stats: Stats{Total: maxU}}, `field "Stats.Total": ` + tooBig},
		{"struct uint field", withStats{Stats: Stats{Hits: uint(math.MaxInt64) + 1}}, `field "Stats.Hits": 9223372036854775808 does not fit an Int (int64)`},
		{"slice", []uint64{1, maxU}, `field "[1]": ` + tooBig},
		{"array", [2]uint64{maxU, 1}, `field "[0]": ` + tooBig},
		{"map value", map[string]uint64{"a": 1, "total": maxU}, `field "total": ` + tooBig},
		{"map key", map[uint64]string{maxU: "x"}, "map key " + tooBig},
		{"generic", map[string]any{"n": []any{int64(1), uint64(maxU)}}, `field "n[1]": ` + tooBig},
		{"slice of structs", []withStats{{}, {Stats: Stats{Total: maxU}}}, `field "[1].Stats.Total": ` + tooBig},
		{"map of structs", map[int]withStats{7: {Stats: Stats{Total: maxU}}}, `field "[7].Stats.Total": ` + tooBig},
		{"odd string key", map[string]any{"a b": maxU}, `field "[\"a b\"]": ` + tooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSpace(t)
			err := store(s, "x", tc.in)
			require.ErrorIs(t, err, ErrTypeMismatch)
			require.Equal(t, "objects: "+tc.want+": type mismatch", err.Error())
			require.NoError(t, s.View(func(tx *Tx) error {
				n, err := tx.Root().Len()
				require.Zero(t, n, "nothing stored")
				return err
			}))
			checkClean(t, s)
		})
	}
	s := newSpace(t)
	roundTrip(t, s, "ok", withStats{Stats: Stats{Total: math.MaxInt64, Hits: math.MaxInt64}})
	roundTrip(t, s, "okp", []*uint64{nil, ptr(uint64(math.MaxInt64))})
}

func ptr[T any](x T) *T { return &x }

// sameTime requires two times to be the same instant with the same zone
// offset (wall clock), as RFC 3339 says them.
func sameTime(t *testing.T, want, got time.Time) {
	t.Helper()
	require.True(t, want.Equal(got), "want %v, got %v", want, got)
	_, wo := want.Zone()
	_, gotOff := got.Zone()
	require.Equal(t, wo, gotOff, "offset of %v", got)
	require.Equal(t, want.Format(time.RFC3339Nano), got.Format(time.RFC3339Nano))
}

type event struct {
	Name  string
	When  time.Time
	At    *time.Time
	Never *time.Time
	Log   []time.Time
}

func TestTimeRoundTrip(t *testing.T) {
	s := newSpace(t)
	ny, err := time.LoadLocation("America/New_York")
	require.NoError(t, err)
	now := time.Now()
	times := []time.Time{
		now, // with a monotonic reading, which is not kept
		now.UTC(),
		now.In(time.FixedZone("IST", 5*3600+1800)),
		now.In(time.FixedZone("", -7*3600)),
		now.In(ny),
		time.Date(2024, 7, 1, 12, 0, 0, 1, ny), // summer time
		time.Date(1969, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		{},
	}
	for i, tm := range times {
		key := fmt.Sprint("t", i)
		require.NoError(t, store(s, key, tm))
		var back time.Time
		require.NoError(t, decodeKey(s, key, &back))
		sameTime(t, tm, back)
		if tm.Location() == time.UTC {
			require.Equal(t, tm.Round(0), back, "a UTC time comes back exactly")
		}
		// Export and Decode into any give the RFC 3339 string.
		require.Equal(t, tm.Format(time.RFC3339Nano), exportKey(t, s, key))
		var g any
		require.NoError(t, decodeKey(s, key, &g))
		require.Equal(t, tm.Format(time.RFC3339Nano), g)

		in := event{Name: "e", When: tm, At: &tm, Log: []time.Time{tm, tm.UTC()}}
		require.NoError(t, store(s, "e", in))
		var out event
		require.NoError(t, decodeKey(s, "e", &out))
		sameTime(t, in.When, out.When)
		sameTime(t, *in.At, *out.At)
		require.Nil(t, out.Never)
		require.Len(t, out.Log, 2)
		sameTime(t, in.Log[0], out.Log[0])
		sameTime(t, in.Log[1], out.Log[1])
	}
	// Zero and UTC times in structs compare equal as a whole.
	roundTrip(t, s, "z", event{When: time.Date(2001, 2, 3, 4, 5, 6, 7, time.UTC), Log: []time.Time{{}}})
	// Times as map keys are String keys too.
	k1, k2 := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2021, 1, 1, 0, 0, 0, 5, time.UTC)
	roundTrip(t, s, "k", map[time.Time]int{k1: 1, k2: 2})
	// A String written by someone else decodes too.
	require.NoError(t, store(s, "str", map[string]any{"When": "2006-01-02T15:04:05.5+07:00"}))
	var e event
	require.NoError(t, decodeKey(s, "str", &e))
	sameTime(t, time.Date(2006, 1, 2, 15, 4, 5, 5e8, time.FixedZone("", 7*3600)), e.When)

	for _, bad := range []time.Time{
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2000, 1, 1, 0, 0, 0, 0, time.FixedZone("LMT", 561)), // an offset with seconds
	} {
		err := store(s, "bad", event{When: bad})
		require.ErrorIs(t, err, ErrTypeMismatch)
		require.Contains(t, err.Error(), `objects: field "When": time.Time `)
		require.Contains(t, err.Error(), "cannot be stored exactly as RFC 3339")
	}
	require.NoError(t, store(s, "notatime", map[string]any{"When": "yesterday"}))
	err = decodeKey(s, "notatime", &e)
	require.ErrorIs(t, err, ErrTypeMismatch)
	require.Equal(t, `objects: decode Dict into *objects.event: field "When": String "yesterday" is not an RFC 3339 time: type mismatch`, err.Error())
	checkClean(t, s)
}

type Inner struct {
	A int
	B string
}

type Base struct {
	ID   int64
	Tags []string
}

type Extra struct {
	Note string
}

type hidden struct {
	Shown int
	quiet int
}

// Color has its own text encoding.
type Color int

func (c Color) MarshalText() ([]byte, error) { return []byte([]string{"red", "green"}[c]), nil }

func (c *Color) UnmarshalText(b []byte) error {
	switch string(b) {
	case "red":
		*c = 0
	case "green":
		*c = 1
	default:
		return fmt.Errorf("no color %q", b)
	}
	return nil
}

// Stamp embeds a time: msgpack stores it by its MarshalBinary.
type Stamp struct{ time.Time }

type Outer struct {
	Base
	*Extra
	hidden
	Name   string `msgpack:"name"`
	Skip   string `msgpack:"-"`
	Opt    string `msgpack:"opt,omitempty"`
	In     Inner
	PIn    *Inner
	NilP   *Inner
	PInt   *int
	PPInt  **int
	List   []Inner
	PList  []*Inner
	ByName map[string]Inner
	ByID   map[int]*Inner
	Any    any
	Arr    [2]Inner
	Bytes  []byte
	Fixed  [4]byte
	F32    float32
	U8     uint8
	I8     int8
	Err    error
	Dur    time.Duration
	Color  Color
	Colors map[Color]Color
	Addr   netip.Addr
	Big    *big.Int
	Stamp  Stamp
	Empty  struct{}
	Nested struct {
		Deeper struct{ X []map[string][]int }
	}
	private int
}

// Shadow's ID clashes with Base's: Base is then not inlined.
type Shadow struct {
	Base
	ID string
}

// Pair is stored as a List of its fields.
type Pair struct {
	//lint:ignore U1000 read through reflection, for its tag
	_msgpack struct{} `msgpack:",as_array"`
	X, Y     int
}

// Node embeds a pointer to itself (msgpack itself would recurse forever
// inlining it; it is a plain field here).
type Node struct {
	*Node
	V int
}

func TestPointersAndStructsRoundTrip(t *testing.T) {
	s := newSpace(t)
	one := 1
	pone := &one
	in := Outer{
		Base:   Base{ID: 7, Tags: []string{"a", "b"}},
		Extra:  &Extra{Note: "n"},
		hidden: hidden{Shown: 3},
		Name:   "outer",
		In:     Inner{1, "x"},
		PIn:    &Inner{2, "y"},
		PInt:   &one,
		PPInt:  &pone,
		List:   []Inner{{3, "z"}, {}},
		PList:  []*Inner{{4, "w"}, nil},
		ByName: map[string]Inner{"k": {5, "v"}, "weird key": {}},
		ByID:   map[int]*Inner{6: {6, "u"}, 7: nil},
		Any:    map[string]any{"list": []any{int64(1), "two", nil, 3.5, []byte{4}}},
		Arr:    [2]Inner{{8, "t"}},
		Bytes:  []byte{},
		Fixed:  [4]byte{1, 2, 3, 4},
		F32:    1.5,
		U8:     255,
		I8:     -128,
		Err:    errors.New("boom"),
		Dur:    time.Second,
		Color:  1,
		Colors: map[Color]Color{0: 1, 1: 0},
		Addr:   netip.MustParseAddr("2001:db8::1"),
		Big:    new(big.Int).Lsh(big.NewInt(1), 100),
		Stamp:  Stamp{time.Date(2020, 5, 6, 7, 8, 9, 10, time.FixedZone("", 3600))},
	}
	in.Nested.Deeper.X = []map[string][]int{{"a": {1}}, nil}
	roundTrip(t, s, "o", in)

	// The Dict stored follows msgpack's layout: embedded structs inlined,
	// tag names, "-" and empty omitempty fields left out, unexported
	// fields too.
	g := exportKey(t, s, "o").(map[string]any)
	for _, k := range []string{"ID", "Tags", "Note", "Shown", "name", "In", "Color", "Addr", "Stamp"} {
		require.Contains(t, g, k)
	}
	for _, k := range []string{"Base", "Extra", "hidden", "quiet", "Skip", "Opt", "opt", "Name", "private"} {
		require.NotContains(t, g, k)
	}
	require.Equal(t, "green", g["Color"])
	require.Equal(t, "boom", g["Err"])
	require.Equal(t, map[string]any{"green": "red", "red": "green"}, g["Colors"])
	require.IsType(t, []byte(nil), g["Addr"]) // MarshalBinary comes first, as in msgpack

	// Unexported fields are not stored.
	require.NoError(t, store(s, "u", Outer{hidden: hidden{Shown: 1, quiet: 2}, private: 3}))
	var u Outer
	require.NoError(t, decodeKey(s, "u", &u))
	require.Equal(t, hidden{Shown: 1}, u.hidden)
	require.Zero(t, u.private)

	// A pointer to a nil pointer comes back nil (msgpack's too).
	var nilp *int
	in.PPInt = &nilp
	require.NoError(t, store(s, "pp", in))
	var out Outer
	require.NoError(t, decodeKey(s, "pp", &out))
	require.Nil(t, out.PPInt)

	roundTrip(t, s, "shadow", Shadow{Base: Base{ID: 1}, ID: "s"})
	require.Equal(t, map[string]any{"ID": "s", "Base": map[string]any{"ID": int64(1), "Tags": nil}}, exportKey(t, s, "shadow"))
	roundTrip(t, s, "pair", Pair{X: 1, Y: 2})
	require.Equal(t, []any{int64(1), int64(2)}, exportKey(t, s, "pair"))
	roundTrip(t, s, "pairs", map[string]Pair{"p": {X: 3}})
	roundTrip(t, s, "node", Node{V: 1, Node: &Node{V: 2}})
	roundTrip(t, s, "pnode", &Node{V: 1})
	roundTrip(t, s, "nil", (*Outer)(nil))
	roundTrip(t, s, "ptrs", []*Outer{nil, {Name: "p"}})
	roundTrip(t, s, "generic", map[string]any{"a": []any{map[any]any{int64(1): "x", true: nil}}})

	// Into an existing pointer held by an interface.
	var pi Inner
	var x any = &pi
	require.NoError(t, store(s, "in", Inner{9, "nine"}))
	require.NoError(t, decodeKey(s, "in", &x))
	require.Equal(t, Inner{9, "nine"}, pi)
	checkClean(t, s)
}

type withChan struct {
	Name string
	C    chan int
}

type withFuncPtr struct {
	P *struct{ F func() }
}

type loop struct {
	Next *loop
}

type withUintptr struct {
	U uintptr
}

func TestUnstorableValuesAreRefused(t *testing.T) {
	s := newSpace(t)
	l := &loop{}
	l.Next = l
	m := map[string]any{}
	m["m"] = m
	sl := []any{nil}
	sl[0] = sl
	for _, tc := range []struct {
		in   any
		want string
	}{
		{make(chan int), "objects: chan int cannot be stored"},
		{func() {}, "objects: func() cannot be stored"},
		{complex(1, 2), "objects: complex128 cannot be stored"},
		{uintptr(1), "objects: uintptr cannot be stored"},
		{unsafe.Pointer(&sl), "objects: unsafe.Pointer cannot be stored"},
		{withChan{Name: "x"}, `objects: field "C": chan int cannot be stored`},
		{&withFuncPtr{P: &struct{ F func() }{}}, `objects: field "P.F": func() cannot be stored`},
		{map[string]any{"a": []any{1, complex64(1)}}, `objects: field "a[1]": complex64 cannot be stored`},
		{[]withUintptr{{}}, `objects: field "[0].U": uintptr cannot be stored`},
		{map[float64]string{1.5: "x"}, "objects: map key of type float64 cannot be a Dict key (want a string, an integer or a bool)"},
		{map[string]map[Inner]int{"in": {{}: 1}}, `objects: field "in": map key of type objects.Inner cannot be a Dict key`},
		{map[any]int{1.5: 1}, "objects: map key of type float64 cannot be a Dict key"},
		{map[[2]int]string{{1, 2}: "x"}, "objects: map key of type [2]int cannot be a Dict key"},
		{map[*int]string{new(int): "x"}, "objects: map key of type *int cannot be a Dict key"},
		{map[any]int{int(1): 1, int64(1): 2}, "would both be the Dict key 1"},
		{map[string]any{"k": Float(1)}, ""},                               // a Float Value is a fine value...
		{map[any]any{Float(1): 1}, "objects: map key: key of kind Float"}, // ...but not a key
		{&atomic.Int64{}, "objects: atomic.Int64 cannot be stored: it has only unexported fields"},
		{struct{ N atomic.Int64 }{}, `objects: field "N": atomic.Int64 cannot be stored: it has only unexported fields`},
		{l, "objects: field \"Next.Next.Next"},
		{m, "map[string]interface {} contains itself (a cycle)"},
		{sl, "[]interface {} contains itself (a cycle)"},
	} {
		err := store(s, "x", tc.in)
		if tc.want == "" {
			require.NoError(t, err)
			continue
		}
		require.ErrorIs(t, err, ErrTypeMismatch, "%T", tc.in)
		require.Contains(t, err.Error(), tc.want)
		require.True(t, strings.HasSuffix(err.Error(), ": type mismatch"), err.Error())
	}
	// A key too long is too large, not of the wrong type.
	err := store(s, "x", map[string]int{strings.Repeat("k", MaxKeyLen+1): 1})
	require.ErrorIs(t, err, txn.ErrTooLarge)
	require.NotErrorIs(t, err, ErrTypeMismatch)
	require.Contains(t, err.Error(), "objects: map key: key of 65537 bytes: at most 65536")
	require.Contains(t, store(s, "x", l).Error(), "*objects.loop contains itself (a cycle)")
	checkClean(t, s)
}

func TestDecodeMismatches(t *testing.T) {
	s := newSpace(t)
	require.NoError(t, store(s, "x", map[string]any{
		"Big": 300, "Neg": -1, "F": 1.5, "S": "s", "L": []any{1, "two"}, "M": map[int]int{1: 2}, "N": nil,
		"I": math.MaxInt64,
	}))
	for _, tc := range []struct {
		out  any
		want string
	}{
		{&struct{ Big uint8 }{}, `field "Big": Int 300 does not fit uint8`},
		{&struct{ Big int8 }{}, `field "Big": Int 300 does not fit int8`},
		{&struct{ Neg uint }{}, `field "Neg": Int -1 does not fit uint`},
		{&struct{ F int }{}, `field "F": Float 1.5 cannot be decoded into int`},
		{&struct{ S int }{}, `field "S": String "s" cannot be decoded into int`},
		{&struct{ L []int }{}, `field "L[1]": String "two" cannot be decoded into int`},
		{&struct{ L [1]int }{}, `field "L": List of 2 items does not fit [1]int`},
		{&struct{ M map[string]int }{}, `field "M[1]": key: Int 1 cannot be decoded into string`},
		{&struct{ M map[int]string }{}, `field "M[1]": Int 2 cannot be decoded into string`},
		{&struct{ S chan int }{}, `field "S": String "s" cannot be decoded into chan int`},
		{&struct{ S complex128 }{}, `field "S": String "s" cannot be decoded into complex128`},
		{&struct{ I float64 }{}, `field "I": Int 9223372036854775807 has no exact float64`},
		{&struct{ S Color }{}, `field "S": String "s" cannot be decoded into objects.Color: no color "s"`},
		{&struct{ S fmt.Stringer }{}, `field "S": String "s" cannot be decoded into fmt.Stringer`},
		{new(map[string]int), `cannot be decoded into int`},
		{new([]any), `Dict cannot be decoded into []interface {}`},
	} {
		err := decodeKey(s, "x", tc.out)
		require.ErrorIs(t, err, ErrTypeMismatch, "%T", tc.out)
		require.Contains(t, err.Error(), "objects: decode Dict into "+reflect.TypeOf(tc.out).String()+": ")
		require.Contains(t, err.Error(), tc.want)
	}
	// None decodes into the zero value; an Int into a float exactly.
	out := struct{ N *int }{N: new(int)}
	require.NoError(t, decodeKey(s, "x", &out))
	require.Nil(t, out.N)
	var f struct{ Neg float32 }
	require.NoError(t, decodeKey(s, "x", &f))
	require.Equal(t, float32(-1), f.Neg)

	var notPtr Inner
	require.ErrorIs(t, decodeKey(s, "x", notPtr), ErrTypeMismatch)
	require.ErrorIs(t, decodeKey(s, "x", (*Inner)(nil)), ErrTypeMismatch)
}

// TestExportRefusesACycle: a Dict that holds itself is refused by depth,
// not by overflowing the stack.
func TestExportRefusesACycle(t *testing.T) {
	s := newSpace(t)
	require.NoError(t, s.Update(func(tx *Tx) error {
		d, err := tx.Root().Dict("c")
		if err != nil {
			return err
		}
		return d.Set("self", d)
	}))
	require.NoError(t, s.View(func(tx *Tx) error {
		v, err := tx.Root().Get("c")
		if err != nil {
			return err
		}
		_, err = tx.Export(v)
		require.ErrorIs(t, err, ErrTypeMismatch)
		require.Contains(t, err.Error(), "nested more than 10000 deep")
		var g map[string]any
		require.ErrorIs(t, tx.Decode(v, &g), ErrTypeMismatch)
		return nil
	}))
}

// genGeneric makes a random generic value in the form Export gives:
// map[string]any, map[any]any with some key not a String, []any, nil,
// bool, int64, float64 (not NaN), string, []byte (never nil).
func genGeneric(r *rand.Rand, depth int) any {
	n := 9
	if depth > 3 {
		n = 6 // scalars only
	}
	switch r.IntN(n) {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return []int64{0, -1, math.MaxInt64, math.MinInt64, r.Int64() - r.Int64()}[r.IntN(5)]
	case 3:
		return []float64{0, -0.5, math.Inf(1), math.MaxFloat64, r.NormFloat64()}[r.IntN(5)]
	case 4:
		return genString(r)
	case 5:
		return []byte(genString(r))
	case 6:
		l := make([]any, r.IntN(4))
		for i := range l {
			l[i] = genGeneric(r, depth+1)
		}
		return l
	case 7:
		m := map[string]any{}
		for range r.IntN(4) {
			m[genString(r)] = genGeneric(r, depth+1)
		}
		return m
	}
	m := map[any]any{genKey(r, false): genGeneric(r, depth+1)}
	for range r.IntN(4) {
		m[genKey(r, true)] = genGeneric(r, depth+1)
	}
	return m
}

func genString(r *rand.Rand) string {
	b := make([]byte, r.IntN(6))
	for i := range b {
		b[i] = "ab\x00é\xff"[r.IntN(5)]
	}
	return string(b)
}

// genKey makes a key of a map[any]any: int64, bool, nil, and (if str) a
// string.
func genKey(r *rand.Rand, str bool) any {
	switch r.IntN(4) {
	case 0:
		return r.IntN(2) == 0
	case 1:
		return nil
	case 2:
		if str {
			return genString(r)
		}
	}
	return r.Int64N(10) - 5
}

// TestGenericRoundTripProperty: random nested generic values come back
// equal through Set and Export, and through Decode into an any.
func TestGenericRoundTripProperty(t *testing.T) {
	s := newSpace(t)
	f := func(seed uint64) bool {
		g := genGeneric(rand.New(rand.NewPCG(seed, 1)), 0)
		if err := store(s, "g", g); err != nil {
			t.Logf("seed %d: %v", seed, err)
			return false
		}
		var d any
		if err := decodeKey(s, "g", &d); err != nil {
			t.Logf("seed %d: %v", seed, err)
			return false
		}
		back := exportKey(t, s, "g")
		ok := reflect.DeepEqual(g, back) && reflect.DeepEqual(g, d)
		if !ok {
			t.Logf("seed %d: stored %#v, exported %#v", seed, g, back)
		}
		return ok
	}
	n := 300
	if testing.Short() {
		n = 50
	}
	require.NoError(t, quick.Check(f, &quick.Config{MaxCount: n}))
	checkClean(t, s)
}

// FuzzGenericRoundTrip is the property above driven by the fuzzer's
// bytes (go test -fuzz FuzzGenericRoundTrip ./objects/).
func FuzzGenericRoundTrip(f *testing.F) {
	for _, seed := range []uint64{0, 1, 2, 42, 1 << 40} {
		f.Add(seed, seed*7)
	}
	f.Fuzz(func(t *testing.T, a, b uint64) {
		s := newSpace(t)
		g := genGeneric(rand.New(rand.NewPCG(a, b)), 0)
		require.NoError(t, store(s, "g", g))
		require.Equal(t, g, exportKey(t, s, "g"))
	})
}

// Point encodes itself with msgpack's CustomEncoder, as a two-item array.
type Point struct{ X, Y int }

func (p Point) EncodeMsgpack(enc *msgpack.Encoder) error {
	return enc.Encode([]int{p.X, p.Y})
}

func (p *Point) DecodeMsgpack(dec *msgpack.Decoder) error {
	var xy []int
	if err := dec.Decode(&xy); err != nil {
		return err
	}
	if len(xy) != 2 {
		return fmt.Errorf("point of %d numbers", len(xy))
	}
	p.X, p.Y = xy[0], xy[1]
	return nil
}

type Named struct {
	Old  string `msgpack:"new,alias:old"`
	Opt  *Inner `msgpack:",omitempty"`
	Keep Inner  `msgpack:",omitempty"`
}

// Inlined inlines a pointer by its tag (msgpack itself panics on that).
type Inlined struct {
	*Extra `msgpack:",inline"`
	Base   `msgpack:",noinline"`
	Where  Point
	Points map[string]Point
}

func TestMsgpackRules(t *testing.T) {
	s := newSpace(t)
	in := Inlined{Extra: &Extra{"e"}, Base: Base{ID: 1}, Where: Point{1, 2}, Points: map[string]Point{"o": {}}}
	roundTrip(t, s, "i", in)
	require.Equal(t, map[string]any{
		"Note":   "e",
		"Base":   map[string]any{"ID": int64(1), "Tags": nil},
		"Where":  []any{int64(1), int64(2)},
		"Points": map[string]any{"o": []any{int64(0), int64(0)}},
	}, exportKey(t, s, "i"))

	// omitempty leaves out a nil pointer, not a struct of zero fields
	// (msgpack calls a struct empty only if all its fields are omitempty).
	roundTrip(t, s, "n", Named{Old: "x"})
	require.Equal(t, map[string]any{"new": "x", "Keep": map[string]any{"A": int64(0), "B": ""}}, exportKey(t, s, "n"))
	// An alias names the field when decoding.
	require.NoError(t, store(s, "alias", map[string]any{"old": "y"}))
	var n Named
	require.NoError(t, decodeKey(s, "alias", &n))
	require.Equal(t, "y", n.Old)

	// A custom decoder's error names the field.
	require.NoError(t, store(s, "badpoint", map[string]any{"Where": []any{1}}))
	err := decodeKey(s, "badpoint", &in)
	require.ErrorIs(t, err, ErrTypeMismatch)
	require.Contains(t, err.Error(), `field "Where": List cannot be decoded into objects.Point: point of 1 numbers`)
}

// TestContainersInsideValues: a Value or a container inside a Go value is
// stored as itself, by reference.
func TestContainersInsideValues(t *testing.T) {
	s := newSpace(t)
	require.NoError(t, s.Update(func(tx *Tx) error {
		d, err := tx.Root().Dict("shared")
		if err != nil {
			return err
		}
		if err := d.Set("n", 1); err != nil {
			return err
		}
		return tx.Root().Set("holder", map[string]any{"d": d, "v": d.Value(), "s": String("x"), "none": (*Dict)(nil)})
	}))
	require.Equal(t, map[string]any{
		"d": map[string]any{"n": int64(1)}, "v": map[string]any{"n": int64(1)}, "s": "x", "none": nil,
	}, exportKey(t, s, "holder"))
	require.NoError(t, s.Update(func(tx *Tx) error {
		h, err := tx.Root().GetDict("holder")
		if err != nil {
			return err
		}
		d, err := h.GetDict("d")
		if err != nil {
			return err
		}
		return d.Set("n", 2) // seen through every reference
	}))
	require.Equal(t, int64(2), exportKey(t, s, "shared").(map[string]any)["n"])
	require.Equal(t, int64(2), exportKey(t, s, "holder").(map[string]any)["v"].(map[string]any)["n"])
	checkClean(t, s)
}
