//go:build invariants

package alloc

import (
	"fmt"
	"unsafe"

	"github.com/shmstore/shmstore/handle"
)

// poisonOn: in -tags invariants builds, freed small blocks are filled with
// poisonByte and checked when they are handed out again, so that a write
// through a stale pointer shows up at the next allocation of that block.
const poisonOn = true

const poisonByte = 0xdb

func poison(p unsafe.Pointer, size uint32) {
	b := unsafe.Slice((*byte)(p), size)
	for i := range b {
		b[i] = poisonByte
	}
}

// checkPoison verifies a free block before it is handed out. The first
// four bytes hold the free-list link and are not checked.
func checkPoison(p unsafe.Pointer, size uint32, hd handle.Handle) {
	b := unsafe.Slice((*byte)(p), size)
	for i := 4; i < len(b); i++ {
		if b[i] != poisonByte {
			panic(fmt.Sprintf("alloc: invariant: block %v (%d bytes) written after it was freed: byte %d is %#x",
				hd, size, i, b[i]))
		}
	}
}
