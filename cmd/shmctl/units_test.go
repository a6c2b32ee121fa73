//go:build linux && (amd64 || arm64)

package main

import (
	"io/fs"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"4096", 4096},
		{"100B", 100},
		{"100 b", 100},
		{"512KiB", 512 << 10},
		{"512K", 512 << 10},
		{"512k", 512 << 10},
		{"64MiB", 64 << 20},
		{"64M", 64 << 20},
		{"64mib", 64 << 20},
		{"64 MiB", 64 << 20},
		{" 1GiB ", 1 << 30},
		{"1G", 1 << 30},
		{"4GiB", 4 << 30},
		{"2TiB", 2 << 40},
		{"2T", 2 << 40},
		{"8388607TiB", 8388607 << 40},
		{"9223372036854775807", 9223372036854775807},
	} {
		got, err := parseSize(tc.in)
		require.NoError(t, err, "parseSize(%q)", tc.in)
		require.Equal(t, tc.want, got, "parseSize(%q)", tc.in)
	}
}

func TestParseSizeErrors(t *testing.T) {
	for _, tc := range []struct {
		in, msg string
	}{
		{"", "want a whole number"},
		{"MiB", "want a whole number"},
		{"-1", "want a whole number"},
		{"1.5GiB", `unknown unit ".5GiB"`},
		{"12XB", `unknown unit "XB"`},
		{"64MB", "ambiguous"},
		{"1kb", "ambiguous"},
		{"64 M B", "unknown unit"},
		{"0x100", "unknown unit"},
		{"8388608TiB", "too large"},
		{"9223372036854775808", "too large"},
	} {
		_, err := parseSize(tc.in)
		require.Error(t, err, "parseSize(%q)", tc.in)
		require.Contains(t, err.Error(), tc.msg, "parseSize(%q)", tc.in)
		require.Contains(t, err.Error(), `"`+tc.in+`"`, "the message quotes the input")
	}
}

func TestFormatSize(t *testing.T) {
	for _, tc := range []struct {
		in   uint64
		want string
	}{
		{0, "0 B"},
		{100, "100 B"},
		{1023, "1023 B"},
		{1024, "1 KiB"},
		{1536, "1.5 KiB"},
		{64 << 20, "64 MiB"},
		{3 << 29, "1.5 GiB"},
		{4 << 30, "4 GiB"},
		{1 << 40, "1 TiB"},
	} {
		require.Equal(t, tc.want, formatSize(tc.in), "formatSize(%d)", tc.in)
	}
}

func TestByteSizeString(t *testing.T) {
	for _, tc := range []struct {
		in   byteSize
		want string
	}{
		{0, "0"},
		{16, "16"},
		{4096, "4KiB"},
		{64 << 20, "64MiB"},
		{3000000, "3000000"},
		{1536 << 20, "1536MiB"},
		{4 << 30, "4GiB"},
	} {
		require.Equal(t, tc.want, tc.in.String(), "byteSize(%d)", int64(tc.in))
		var back byteSize
		require.NoError(t, back.Set(tc.in.String()))
		require.Equal(t, tc.in, back, "String and Set round-trip")
	}
}

func TestParseMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want fs.FileMode
		ok   bool
	}{
		{"0600", 0o600, true},
		{"0660", 0o660, true},
		{"660", 0o660, true},
		{"0o644", 0o644, true},
		{"0777", 0o777, true},
		{"1777", 0, false},
		{"0800", 0, false},
		{"rw", 0, false},
		{"", 0, false},
		{"0o", 0, false},
	} {
		got, err := parseMode(tc.in)
		if !tc.ok {
			require.Error(t, err, "parseMode(%q)", tc.in)
			continue
		}
		require.NoError(t, err, "parseMode(%q)", tc.in)
		require.Equal(t, tc.want, got, "parseMode(%q)", tc.in)
	}
}
