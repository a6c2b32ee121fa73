package handle

import (
	"errors"
	"testing"
	"testing/quick"

	"github.com/stretchr/testify/require"
)

func TestFieldsRoundTrip(t *testing.T) {
	f := func(region uint16, granule uint32, gen uint16) bool {
		h := Make(region, granule, gen)
		return h.Region() == region && h.Granule() == granule && h.Gen() == gen &&
			h.Offset() == uint64(granule)*Granule && h.IsNull() == (h == 0)
	}
	require.NoError(t, quick.Check(f, nil))
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		region uint16
		offset uint64
		ok     bool
	}{
		{1, 0, true},
		{1, 8, true},
		{65535, MaxOffset, true},
		{0, 8, false},             // region 0 does not exist
		{1, 12, false},            // not on a granule
		{1, MaxOffset + 8, false}, // beyond what 32 bits of granules reach
	} {
		h, err := New(tc.region, tc.offset, 3)
		if !tc.ok {
			require.ErrorIs(t, err, ErrBadHandle, "%+v", tc)
			require.True(t, h.IsNull())
			continue
		}
		require.NoError(t, err, "%+v", tc)
		require.Equal(t, tc.region, h.Region())
		require.Equal(t, tc.offset, h.Offset())
		require.Equal(t, uint16(3), h.Gen())
	}
}

func TestStringParse(t *testing.T) {
	f := func(region uint16, granule uint32, gen uint16) bool {
		if region == 0 {
			region = 1
		}
		h := Make(region, granule, gen)
		p, err := Parse(h.String())
		return err == nil && p == h
	}
	require.NoError(t, quick.Check(f, nil))
	require.Equal(t, "null", Null.String())
	h, err := Parse("null")
	require.NoError(t, err)
	require.True(t, h.IsNull())
	h, err = Parse("0x1000000010003")
	require.NoError(t, err)
	require.Equal(t, Make(1, 1, 3), h)
	require.Equal(t, "r1+0x8#3", h.String())
	for _, bad := range []string{"", "r", "r1", "r1+8", "x1+8#1", "r0+0x8#1", "r1+0x9#1", "r70000+0x8#1", "r1+0x8#70000", "r1+zz#1"} {
		_, err := Parse(bad)
		require.True(t, errors.Is(err, ErrBadHandle), "Parse(%q) = %v", bad, err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"null", "r1+0x8#3", "0x10", "r65535+0x7fffffff8#65535", "r1+8#", "+#"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := Parse(s)
		if err != nil {
			if !errors.Is(err, ErrBadHandle) {
				t.Fatalf("Parse(%q): error %v does not wrap ErrBadHandle", s, err)
			}
			return
		}
		// Whatever parses prints back to something that parses to the same.
		p, err := Parse(h.String())
		if err != nil || p != h {
			t.Fatalf("Parse(%q) = %v, reparse %v, %v", s, h, p, err)
		}
	})
}
