package alloc

import "github.com/shmstore/shmstore/handle"

// SuperblockSize is the unit regions are cut into.
const SuperblockSize = 64 << 10

const sbShift = 16

// MaxSmall is the largest request served from a size class (a quarter
// superblock); larger ones take whole superblocks.
const MaxSmall = SuperblockSize / 4

// SizeClass describes the blocks of one class and how they sit in a
// superblock.
type SizeClass struct {
	Size       uint32 // block size in bytes, a multiple of handle.Granule
	Blocks     uint32 // blocks per superblock
	BlockStart uint32 // offset of block 0 in the superblock (after the state array)
	StatesDesc bool   // the state array lives in the descriptor (too few blocks to spare one)
}

// NumClasses is the number of size classes; class numbers run 1..NumClasses
// (0 means none).
const NumClasses = 39

// Classes is indexed by class number; Classes[0] is unused.
var Classes [NumClasses + 1]SizeClass

// descStates is how many state words fit in a descriptor.
const descStates = 4

var (
	smallLookup [MaxSmall/handle.Granule/16 + 2]uint8 // (n+7)/8 -> class, n <= 1024
	largeLookup [MaxSmall/128 + 1]uint8               // (n+127)/128 -> class, n <= MaxSmall
)

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
		c := &Classes[i+1]
		c.Size = s
		// In-band states cost 4 bytes a block, rounded to the granule.
		n := uint32(SuperblockSize / (s + 4))
		for n > 0 && (4*n+7)&^7+n*s > SuperblockSize {
			n--
		}
		if SuperblockSize/s <= descStates && SuperblockSize/s > n {
			c.Blocks, c.BlockStart, c.StatesDesc = SuperblockSize/s, 0, true
		} else {
			c.Blocks, c.BlockStart = n, (4*n+7)&^7
		}
	}
	c := 1
	for i := range smallLookup {
		n := uint32(i) * 8
		for Classes[c].Size < n {
			c++
		}
		smallLookup[i] = uint8(c)
	}
	c = 1
	for i := range largeLookup {
		n := uint32(i) * 128
		for Classes[c].Size < n {
			c++
		}
		largeLookup[i] = uint8(c)
	}
}

// ClassOf returns the class that serves a request of n bytes, 0 < n <=
// MaxSmall.
func ClassOf(n int) int {
	if n <= 1024 {
		return int(smallLookup[(n+7)>>3])
	}
	return int(largeLookup[(n+127)>>7])
}
