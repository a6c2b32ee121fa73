//go:build linux && (amd64 || arm64)

package release

import (
	"sync/atomic"
	"testing"
)

// TestStoresReachTheWord: the stores write the atomic's own word (what
// Load reads), whole.
func TestStoresReachTheWord(t *testing.T) {
	var a struct {
		x atomic.Uint32
		y atomic.Uint64
	}
	Store32(&a.x, 0xdeadbeef)
	Store64(&a.y, 0x0123456789abcdef)
	if a.x.Load() != 0xdeadbeef || a.y.Load() != 0x0123456789abcdef {
		t.Fatalf("got %#x %#x", a.x.Load(), a.y.Load())
	}
}

// TestMessagePassing: a writer fills a payload with release stores, then
// publishes a flag with one; a reader that sees the flag (atomic load)
// sees the whole payload, and acknowledges it before the next round.
// (On amd64 this holds by TSO; the test checks that the compiler kept the
// order.)
func TestMessagePassing(t *testing.T) {
	const rounds = 100_000
	var data [4]atomic.Uint64
	var flag, ack atomic.Uint64
	bad := make(chan string, 1)
	go func() {
		for r := uint64(1); r <= rounds; r++ {
			for flag.Load() != r {
			}
			for i := range data {
				if got := data[i].Load(); got != r {
					select {
					case bad <- "payload behind its flag":
					default:
					}
				}
			}
			ack.Store(r)
		}
	}()
	for r := uint64(1); r <= rounds; r++ {
		for i := range data {
			Store64(&data[i], r)
		}
		Store64(&flag, r)
		for ack.Load() != r {
		}
	}
	select {
	case m := <-bad:
		t.Fatal(m)
	default:
	}
}
