//go:build linux && (amd64 || arm64)

package main

import (
	"fmt"
	"io/fs"
	"math"
	"strconv"
	"strings"
)

// sizeUnits maps a unit suffix, in lower case, to its multiplier. Every
// unit is binary: "64M" and "64MiB" are both 64 << 20 bytes.
var sizeUnits = map[string]int64{
	"":    1,
	"b":   1,
	"k":   1 << 10,
	"kib": 1 << 10,
	"m":   1 << 20,
	"mib": 1 << 20,
	"g":   1 << 30,
	"gib": 1 << 30,
	"t":   1 << 40,
	"tib": 1 << 40,
}

// parseSize reads a byte count: a decimal integer with an optional binary
// unit (B, K/KiB, M/MiB, G/GiB, T/TiB, any case, optionally after a space).
// Decimal-looking units such as "MB" are refused as ambiguous rather than
// guessed.
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("bad size %q: want a whole number of bytes with an optional unit (B, KiB, MiB, GiB, TiB)", s)
	}
	unit := strings.ToLower(strings.TrimSpace(t[i:]))
	mult, ok := sizeUnits[unit]
	if !ok {
		switch unit {
		case "kb", "mb", "gb", "tb":
			return 0, fmt.Errorf("bad size %q: unit %q is ambiguous; use %s or %s (binary)",
				s, t[i:], strings.ToUpper(unit[:1])+"iB", strings.ToUpper(unit[:1]))
		}
		return 0, fmt.Errorf("bad size %q: unknown unit %q (want B, KiB, MiB, GiB or TiB)", s, strings.TrimSpace(t[i:]))
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("bad size %q: too large", s)
	}
	return n * mult, nil
}

// formatSize writes a byte count for people: exact in the largest binary
// unit that divides it, else with one decimal ("64 MiB", "1.5 GiB", "100 B").
func formatSize(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	u := 0
	for u+1 < len(units) && n >= 1<<(10*(u+1)) {
		u++
	}
	if u == 0 {
		return strconv.FormatUint(n, 10) + " B"
	}
	div := uint64(1) << (10 * u)
	if n%div == 0 {
		return strconv.FormatUint(n/div, 10) + " " + units[u]
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + units[u]
}

// parseMode reads permission bits in octal: "0660", "660" or "0o660".
func parseMode(s string) (fs.FileMode, error) {
	t := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(s)), "0o")
	v, err := strconv.ParseUint(t, 8, 32)
	if err != nil || t == "" || v > 0o777 {
		return 0, fmt.Errorf("bad mode %q: want octal permission bits such as 0600 or 0660", s)
	}
	return fs.FileMode(v), nil
}

// byteSize is a pflag.Value for sizes in human units (see parseSize).
type byteSize int64

// String formats the size exactly, in the largest binary unit that
// divides it ("64MiB", "3000000"), for flag defaults and messages.
func (b *byteSize) String() string {
	if b == nil || *b <= 0 {
		return "0"
	}
	n := int64(*b)
	units := []string{"", "KiB", "MiB", "GiB", "TiB"}
	u := 0
	for u+1 < len(units) && n%(1<<(10*(u+1))) == 0 {
		u++
	}
	return strconv.FormatInt(n>>(10*u), 10) + units[u]
}

// Set parses a size given on the command line.
func (b *byteSize) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

// Type names the value in pflag's messages.
func (b *byteSize) Type() string { return "size" }

// fileMode is a pflag.Value for octal permission bits (see parseMode).
type fileMode fs.FileMode

// String formats the mode in octal.
func (m *fileMode) String() string {
	if m == nil {
		return "0"
	}
	return fmt.Sprintf("%04o", uint32(*m))
}

// Set parses a mode given on the command line.
func (m *fileMode) Set(s string) error {
	v, err := parseMode(s)
	if err != nil {
		return err
	}
	*m = fileMode(v)
	return nil
}

// Type names the value in pflag's messages.
func (m *fileMode) Type() string { return "mode" }
