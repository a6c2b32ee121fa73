//go:build linux && (amd64 || arm64)

package objects

import (
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"testing/quick"
	"unsafe"

	"github.com/stretchr/testify/require"
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

type Inner struct {
	A int
	B string
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
		{map[string]int{strings.Repeat("k", MaxKeyLen+1): 1}, "objects: map key: key of 65537 bytes"},
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
	require.Contains(t, store(s, "x", l).Error(), "*objects.loop contains itself (a cycle)")
	checkClean(t, s)
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
// equal through Set and Export.
func TestGenericRoundTripProperty(t *testing.T) {
	s := newSpace(t)
	f := func(seed uint64) bool {
		g := genGeneric(rand.New(rand.NewPCG(seed, 1)), 0)
		if err := store(s, "g", g); err != nil {
			t.Logf("seed %d: %v", seed, err)
			return false
		}
		back := exportKey(t, s, "g")
		ok := reflect.DeepEqual(g, back)
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
