//go:build linux && amd64 && !race

package release

import (
	"sync/atomic"
	"unsafe"
)

// Store32 stores v to *p with release order (see the package doc).
func Store32(p *atomic.Uint32, v uint32) { *(*uint32)(unsafe.Pointer(p)) = v }

// Store64 stores v to *p with release order (see the package doc).
func Store64(p *atomic.Uint64, v uint64) { *(*uint64)(unsafe.Pointer(p)) = v }
