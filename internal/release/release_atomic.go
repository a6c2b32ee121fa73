//go:build linux && (arm64 || (amd64 && race))

package release

import "sync/atomic"

// Store32 stores v to *p with release order: STLR on arm64; with the race
// detector on amd64 too, an XCHG, which it understands (see the package doc).
func Store32(p *atomic.Uint32, v uint32) { p.Store(v) }

// Store64 stores v to *p with release order: STLR (see the package doc).
func Store64(p *atomic.Uint64, v uint64) { p.Store(v) }
