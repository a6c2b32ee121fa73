package alloc

import "github.com/shmstore/shmstore/handle"

// SuperblockSize is the unit regions are cut into.
const SuperblockSize = 64 << 10

const sbShift = 16

// MaxSmall is the largest request served from a size class; larger ones
// take a run of whole superblocks of their own. Classes up to a quarter
// superblock (16 KiB) live in one superblock; the classes above it (four
// per doubling up to 128 KiB) live in spans of up to maxSpan superblocks,
// so that a 20 KiB block does not reserve 64 KiB (as Go's runtime gives
// each size class a span of several pages).
const MaxSmall = 128 << 10

const maxSpan = 8

// SizeClass describes the blocks of one class and how they sit in a span.
type SizeClass struct {
	Size       uint32 // block size in bytes, a multiple of handle.Granule
	Span       uint32 // superblocks per span (1 up to a quarter superblock)
	Blocks     uint32 // blocks per span
	BlockStart uint32 // offset of block 0 in the span (after the state array)
	StatesDesc bool   // the state array lives in the descriptor (too few blocks to spare one)
	// recip turns the division by Size on every Free and Resolve into a
	// multiplication: rel/Size == rel*recip>>recipShift for every offset in
	// a span (TestReciprocal checks them all).
	recip uint64
}

const recipShift = 42

// NumClasses is the number of size classes; class numbers run 1..NumClasses
// (0 means none).
const NumClasses = 51

// Classes is indexed by class number; Classes[0] is unused.
var Classes [NumClasses + 1]SizeClass

// descStates is how many state words fit in a descriptor.
const descStates = 4

var (
	smallLookup [1024/handle.Granule + 1]uint8  // (n+7)/8 -> class, n <= 1024
	midLookup   [SuperblockSize/4/128 + 1]uint8 // (n+127)/128 -> class, n <= 16 KiB
	largeLookup [MaxSmall/4096 + 1]uint8        // (n+4095)/4096 -> class, n <= MaxSmall
)

// layoutClass fits blocks of size s into a span: the most blocks with their
// state words in front, or in the descriptor when that holds more.
func layoutClass(s, span uint32) SizeClass {
	bytes := span * SuperblockSize
	n := bytes / (s + 4)
	for n > 0 && (4*n+7)&^7+n*s > bytes {
		n--
	}
	c := SizeClass{Size: s, Span: span, Blocks: n, BlockStart: (4*n + 7) &^ 7}
	if d := min(bytes/s, descStates); d > n {
		c.Blocks, c.BlockStart, c.StatesDesc = d, 0, true
	}
	return c
}

func init() {
	var sizes []uint32
	for s := uint32(16); s <= 64; s += 8 {
		sizes = append(sizes, s)
	}
	for base := uint32(64); base < MaxSmall; base *= 2 {
		for k := uint32(1); k <= 4; k++ {
			sizes = append(sizes, base+base/4*k)
		}
	}
	if len(sizes) != NumClasses {
		panic("alloc: size class table out of step with NumClasses")
	}
	for i, s := range sizes {
		if s <= SuperblockSize/4 {
			Classes[i+1] = layoutClass(s, 1)
			continue
		}
		// The smallest span whose use is within 2% of the best.
		best := layoutClass(s, 1)
		for span := uint32(2); span <= maxSpan; span++ {
			if c := layoutClass(s, span); use(c) > use(best)+0.02 {
				best = c
			}
		}
		Classes[i+1] = best
	}
	for c := range Classes[1:] {
		Classes[c+1].recip = (1<<recipShift + uint64(Classes[c+1].Size) - 1) / uint64(Classes[c+1].Size)
	}
	fill := func(table []uint8, step uint32) {
		c := 1
		for i := range table {
			for Classes[c].Size < uint32(i)*step {
				c++
			}
			table[i] = uint8(c)
		}
	}
	fill(smallLookup[:], 8)
	fill(midLookup[:], 128)
	fill(largeLookup[:], 4096)
}

// blockIndex is rel / c.Size.
func (c *SizeClass) blockIndex(rel uint32) uint32 {
	return uint32(uint64(rel) * c.recip >> recipShift)
}

func use(c SizeClass) float64 {
	return float64(c.Blocks*c.Size) / float64(c.Span*SuperblockSize)
}

// ClassOf returns the class that serves a request of n bytes, 0 < n <=
// MaxSmall.
func ClassOf(n int) int {
	switch {
	case n <= 1024:
		return int(smallLookup[(n+7)>>3])
	case n <= SuperblockSize/4:
		return int(midLookup[(n+127)>>7])
	}
	return int(largeLookup[(n+4095)>>12])
}
