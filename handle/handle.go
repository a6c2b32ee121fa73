package handle

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Handle names one block in a store.
//
//	 63          48 47                              16 15           0
//	+--------------+----------------------------------+--------------+
//	| region (16)  | offset in 8-byte granules (32)   |  gen (16)    |
//	+--------------+----------------------------------+--------------+
//
// Region 0 does not exist, so the zero Handle is null. The offset counts
// 8-byte granules from the start of the region file (every block is 8-byte
// aligned so that it can hold 64-bit atomics), which allows regions of up to
// 32 GiB. The generation is the low 16 bits of the block's state counter when
// it was allocated: a freed block's counter moves on, so an old handle stops
// resolving (until the counter wraps after 32768 reuses of the same block).
// Allocated blocks always have an odd generation.
type Handle uint64

// Granule is the unit of Handle offsets and the alignment of every block.
const Granule = 8

// Null is the handle that names nothing.
const Null Handle = 0

// MaxRegion is the largest region number a handle can carry.
const MaxRegion = 1<<16 - 1

// MaxOffset is the largest byte offset a handle can carry.
const MaxOffset = (1<<32 - 1) * Granule

// Sentinel errors of handle validation. Callers wrap them with context.
var (
	// ErrBadHandle: the handle cannot name a block (null, out of range,
	// misaligned, not on a block boundary, or a forged generation).
	ErrBadHandle = errors.New("bad handle")
	// ErrStaleHandle: the handle named a block that has since been freed.
	ErrStaleHandle = errors.New("stale handle")
)

// New builds a handle from its parts. The offset must be a multiple of
// Granule and at most MaxOffset; New reports ErrBadHandle otherwise.
func New(region uint16, offset uint64, gen uint16) (Handle, error) {
	if region == 0 {
		return Null, fmt.Errorf("handle: region 0: %w", ErrBadHandle)
	}
	if offset%Granule != 0 || offset > MaxOffset {
		return Null, fmt.Errorf("handle: offset %#x not a granule offset: %w", offset, ErrBadHandle)
	}
	return Make(region, uint32(offset/Granule), gen), nil
}

// Make builds a handle from a region, an offset in granules and a
// generation, without checks. It is the allocator's fast path.
func Make(region uint16, granule uint32, gen uint16) Handle {
	return Handle(uint64(region)<<48 | uint64(granule)<<16 | uint64(gen))
}

// IsNull reports whether h names nothing.
func (h Handle) IsNull() bool { return h == Null }

// Region is the region number (1-based; 0 only in the null handle).
func (h Handle) Region() uint16 { return uint16(h >> 48) }

// Granule is the offset in granules from the start of the region.
func (h Handle) Granule() uint32 { return uint32(h >> 16) }

// Offset is the byte offset from the start of the region.
func (h Handle) Offset() uint64 { return uint64(h.Granule()) * Granule }

// Gen is the generation the block had when this handle was made.
func (h Handle) Gen() uint16 { return uint16(h) }

// String formats h as "r<region>+<offset hex>#<gen>", "null", or (for a
// value no block can have: region 0 but not null) as a hex number.
func (h Handle) String() string {
	if h.IsNull() {
		return "null"
	}
	if h.Region() == 0 {
		return fmt.Sprintf("%#x", uint64(h))
	}
	return fmt.Sprintf("r%d+%#x#%d", h.Region(), h.Offset(), h.Gen())
}

// Parse reads the form String writes (or a plain decimal or 0x-prefixed
// uint64). It reports ErrBadHandle for anything else.
func Parse(s string) (Handle, error) {
	if s == "null" {
		return Null, nil
	}
	if v, err := strconv.ParseUint(s, 0, 64); err == nil {
		return Handle(v), nil
	}
	rest, ok := strings.CutPrefix(s, "r")
	if !ok {
		return Null, fmt.Errorf("handle: parse %q: %w", s, ErrBadHandle)
	}
	reg, rest, ok1 := strings.Cut(rest, "+")
	off, gen, ok2 := strings.Cut(rest, "#")
	if !ok1 || !ok2 {
		return Null, fmt.Errorf("handle: parse %q: %w", s, ErrBadHandle)
	}
	r, err1 := strconv.ParseUint(reg, 10, 16)
	o, err2 := strconv.ParseUint(off, 0, 64)
	g, err3 := strconv.ParseUint(gen, 10, 16)
	if err := errors.Join(err1, err2, err3); err != nil {
		return Null, fmt.Errorf("handle: parse %q: %w", s, ErrBadHandle)
	}
	return New(uint16(r), o, uint16(g))
}
