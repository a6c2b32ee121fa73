// Package churn is a workload that drives the allocator (package alloc)
// from many processes at once, for tests, benchmarks and shmctl's bench:
// workers allocate tagged blocks of random sizes and swap them through a
// shared mailbox, so that blocks move between processes and most frees
// are remote. It is not part of the allocator: it uses only its public
// API.
package churn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
)

// Options configure Run. Run is a workload for tests, benchmarks and the
// demo: it allocates blocks of random sizes, tags each with its handle and
// its worker, and swaps it into a random cell of a shared mailbox (an
// array of handles in one block). What it takes out of the mailbox it checks and frees, so that
// blocks move between processes and most frees are remote. A tag that does
// not match (two live blocks overlapping, or memory handed out twice)
// stops it with ErrCorrupt.
//
// Its handover is crash-safe in the allocator's sense: a taken block is
// adopted into the log before the swap, a new block stays logged until the
// swap is done. A worker killed at any point leaks nothing; at worst a
// mailbox cell names a block that recovery freed (a stale handle, which
// Run and DrainMailbox count and skip).
type Options struct {
	Mailbox  handle.Handle // from NewMailbox
	Worker   uint64        // tag written into blocks (non-zero, below 2^32)
	Duration time.Duration // run this long (or Ops operations, whichever first)
	Ops      int           // 0: no limit
	MinSize  int           // smallest request, >= 16
	MaxSize  int           // largest request; sizes are log-uniform in [MinSize, MaxSize]
	Seed     uint64
	// PauseEvery and Pause make the worker sleep Pause after every
	// PauseEvery operations, so that processes sharing few cores take
	// turns often and really pass blocks to each other (a worker that runs
	// alone for a whole time slice mostly takes back its own blocks).
	PauseEvery int
	Pause      time.Duration
}

// Stats counts what a Run did.
type Stats struct {
	Allocs      uint64 `json:"allocs"`
	Frees       uint64 `json:"frees"`
	RemoteFrees uint64 `json:"remote_frees"` // frees of blocks another worker allocated
	Bytes       uint64 `json:"bytes"`        // bytes requested
	Stale       uint64 `json:"stale"`        // mailbox handles already freed by recovery (after a kill)
	Seconds     float64
}

// ErrCorrupt: a block's tag was not what its allocator wrote.
var ErrCorrupt = errors.New("block content corrupted")

// MailboxBytes is the size of the block of a mailbox of n cells: 8 bytes
// a cell and 8 for the count.
func MailboxBytes(n int) int { return 8 + 8*n }

// MailboxCells is the most cells a mailbox in a block of limit bytes has
// (the inverse of MailboxBytes).
func MailboxCells(limit int) int { return (limit - 8) / 8 }

// NewMailbox allocates a mailbox of n cells (all empty) and hands it over
// (it stays allocated until DrainMailbox frees it).
func NewMailbox(h alloc.Heap, n int) (handle.Handle, error) {
	mark := h.LogLen()
	hd, b, err := h.Alloc(MailboxBytes(n))
	if err != nil {
		return handle.Null, err
	}
	clear(b)
	binary.LittleEndian.PutUint64(b, uint64(n))
	h.TruncateLog(mark)
	return hd, nil
}

// mailboxCells are the cells of mailbox mb.
func mailboxCells(a *alloc.Allocator, mb handle.Handle) ([]atomic.Uint64, error) {
	b, err := a.Resolve(mb)
	if err != nil {
		return nil, fmt.Errorf("churn: mailbox: %w", err)
	}
	n := binary.LittleEndian.Uint64(b)
	if n == 0 || n > uint64(len(b)-8)/8 {
		return nil, fmt.Errorf("churn: mailbox %v: %d cells do not fit: %w", mb, n, ErrCorrupt)
	}
	return unsafe.Slice((*atomic.Uint64)(unsafe.Pointer(&b[8])), n), nil
}

// A tag: the handle at both ends of the block, and the worker and the
// request size after the first copy.
const tagBytes = 16

func writeTag(b []byte, hd handle.Handle, worker uint64) {
	binary.LittleEndian.PutUint64(b, uint64(hd))
	binary.LittleEndian.PutUint64(b[8:], worker<<32|uint64(len(b)))
	if len(b) >= 2*tagBytes {
		binary.LittleEndian.PutUint64(b[len(b)-8:], uint64(hd))
	}
}

// checkTag verifies the tag of block b (the whole block as Resolve gives
// it) and returns the worker that wrote it.
func checkTag(b []byte, hd handle.Handle) (worker uint64, err error) {
	wn := binary.LittleEndian.Uint64(b[8:])
	n := int(wn & 0xffffffff)
	if binary.LittleEndian.Uint64(b) != uint64(hd) || n < tagBytes || n > len(b) ||
		(n >= 2*tagBytes && binary.LittleEndian.Uint64(b[n-8:]) != uint64(hd)) {
		return 0, fmt.Errorf("churn: block %v: tag %#x/%#x: %w", hd, binary.LittleEndian.Uint64(b), wn, ErrCorrupt)
	}
	return wn >> 32, nil
}

// freeTagged checks a block's tag and frees it, returning its worker.
func freeTagged(h alloc.Heap, hd handle.Handle) (uint64, error) {
	b, err := h.Allocator().Resolve(hd)
	if err != nil {
		return 0, err
	}
	w, err := checkTag(b, hd)
	if err != nil {
		return 0, err
	}
	return w, h.Free(hd)
}

// Run runs the workload on heap h until the duration or the operation
// count is reached.
func Run(h alloc.Heap, o Options) (Stats, error) {
	var s Stats
	if o.MinSize < tagBytes || o.MaxSize < o.MinSize || o.Worker == 0 || o.Worker >= 1<<32 {
		return s, fmt.Errorf("churn: sizes %d..%d (min 16), worker %d (non-zero): %w", o.MinSize, o.MaxSize, o.Worker, alloc.ErrBadSize)
	}
	cells, err := mailboxCells(h.Allocator(), o.Mailbox)
	if err != nil {
		return s, err
	}
	r := rand.New(rand.NewPCG(o.Seed, o.Worker))
	lo, hi := math.Log(float64(o.MinSize)), math.Log(float64(o.MaxSize))
	start := time.Now()
	deadline := start.Add(o.Duration)
	for i := 0; (o.Ops == 0 || i < o.Ops) && (o.Duration == 0 || i%64 != 0 || time.Now().Before(deadline)); i++ {
		if o.PauseEvery > 0 && i > 0 && i%o.PauseEvery == 0 {
			time.Sleep(o.Pause)
		}
		n := int(math.Exp(lo + r.Float64()*(hi-lo)))
		hd, b, err := h.Alloc(n)
		if err != nil {
			return s, err
		}
		writeTag(b, hd, o.Worker)
		s.Allocs++
		s.Bytes += uint64(n)
		cell := &cells[r.IntN(len(cells))]
		old := handle.Handle(cell.Load())
		mark := h.LogLen() // after the new block's entry
		if old != handle.Null {
			if err := h.Adopt(old); err != nil {
				return s, err
			}
		}
		if !cell.CompareAndSwap(uint64(old), uint64(hd)) {
			h.TruncateLog(mark) // someone else took old; try with another cell
			if err := h.Free(hd); err != nil {
				return s, err
			}
			h.ForgetLog()
			continue
		}
		if old != handle.Null {
			w, err := freeTagged(h, old)
			switch {
			case errors.Is(err, handle.ErrStaleHandle):
				// A worker killed between its swap and clearing its log:
				// recovery freed the block it had just put here.
				s.Stale++
			case err != nil:
				return s, err
			default:
				s.Frees++
				if w != o.Worker {
					s.RemoteFrees++
				}
			}
		}
		h.ForgetLog()
	}
	s.Seconds = time.Since(start).Seconds()
	return s, nil
}

// DrainMailbox frees every block left in the mailbox and then the mailbox.
// It returns how many cells named a block already freed (possible only
// after a worker was killed between its swap and clearing its log).
func DrainMailbox(h alloc.Heap, mb handle.Handle) (stale int, err error) {
	cells, err := mailboxCells(h.Allocator(), mb)
	if err != nil {
		return 0, err
	}
	for i := range cells {
		hd := handle.Handle(cells[i].Swap(0))
		if hd == handle.Null {
			continue
		}
		if _, err := freeTagged(h, hd); errors.Is(err, handle.ErrStaleHandle) {
			stale++
		} else if err != nil {
			return stale, err
		}
	}
	return stale, h.Free(mb)
}
