//go:build linux && (amd64 || arm64)

package shmstore

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/internal/layers"
	"github.com/shmstore/shmstore/objects"
	"github.com/shmstore/shmstore/reclaim"
	"github.com/shmstore/shmstore/shm"
	"github.com/shmstore/shmstore/txn"
)

// Store is an open store: a process's attachment to it.
type Store struct {
	l  layers.Store // what the store is made of (internal/layers hands it to shmctl)
	st *shm.Store
	a  *alloc.Allocator
	e  *txn.Engine
	sp *objects.Space

	readOnly bool // Options.ReadOnly: inspection only (Stats, Check), no transactions
}

func init() {
	layers.TxOf = func(tx any) *objects.Tx { return tx.(*Tx).t }
	layers.Of = func(store any) *layers.Store {
		s := store.(*Store)
		s.l.Space = s.sp
		return &s.l
	}
}

// Open opens the store name, creating it unless opts.Create says
// otherwise, and recovers any process found dead. With opts.ReadOnly it
// only maps the store for inspection.
func Open(name string, opts Options) (*Store, error) {
	st, err := shm.Open(name, opts.shm())
	if err != nil {
		return nil, err
	}
	a, err := alloc.New(st)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	r, err := reclaim.New(st, a)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	e := txn.New(st, a, r)
	s := &Store{l: layers.Store{Shm: st, Alloc: a, Reclaim: r, Engine: e}, st: st, a: a, e: e}
	if !opts.ReadOnly {
		if _, err := st.RecoverDead(); err != nil {
			_ = st.Close()
			return nil, fmt.Errorf("shmstore: open %q: recover dead processes: %w", name, err)
		}
	}
	if s.sp, err = objects.Open(e); err != nil && !(opts.ReadOnly && errors.Is(err, objects.ErrNotFound)) {
		_ = e.Close()
		_ = st.Close()
		return nil, fmt.Errorf("shmstore: open %q: %w", name, err)
	}
	s.readOnly = opts.ReadOnly // mapped read-only: no slot to lease, so no transaction
	return s, nil
}

// Close detaches from the store: this process's slots and their heaps go
// back, unhanded allocations are freed. Transactions must have ended.
func (s *Store) Close() error {
	if err := s.e.Close(); err != nil {
		return fmt.Errorf("shmstore: %w", err) // nothing closed: still usable
	}
	return s.st.Close()
}

// Dir is the store's own directory, which holds its files: Options.Dir
// joined with the name. Another process opens the same store by the name
// with Options.Dir set to filepath.Dir of it.
func (s *Store) Dir() string { return s.st.Dir() }

// Name is the store's name.
func (s *Store) Name() string { return s.st.Name() }

// Stats describes how much of the store is in use. The counts are read
// without locks: exact on a quiet store, a close snapshot on a busy one.
type Stats struct {
	Regions       int    // region files created so far
	RegionBytes   uint64 // their bytes together (mapped, mostly sparse)
	MaxBytes      uint64 // the most the regions may grow to (Options.MaxSize)
	ReservedBytes uint64 // superblocks in use by the allocator
	UsedBytes     uint64 // bytes of allocated blocks (at their size class)
	FreeBytes     uint64 // region bytes not in use by blocks
	LargeBlocks   int    // blocks too large for a size class
	LargeBytes    uint64 // their bytes together
}

// Stats describes how much of the store is in use. After Close it fails
// with ErrClosed (and a Close while it runs fails with ErrInUse).
func (s *Store) Stats() (Stats, error) {
	if err := s.beginRead("stats"); err != nil {
		return Stats{}, err
	}
	defer s.e.EndPeek()
	a := s.a.Stats()
	return Stats{
		Regions: a.Regions, RegionBytes: a.RegionBytes, MaxBytes: uint64(s.st.MaxRegions()) * uint64(s.st.RegionSize()),
		ReservedBytes: a.ReservedBytes, UsedBytes: a.UsedBytes, FreeBytes: a.FreeBytes,
		LargeBlocks: a.LargeBlocks, LargeBytes: a.LargeBytes,
	}, nil
}

// beginRead admits a read of the store's memory outside a transaction
// (what is mapped stays mapped until EndPeek: Close refuses meanwhile),
// or says the store is closed.
func (s *Store) beginRead(what string) error {
	if !s.e.BeginPeekWait() {
		return fmt.Errorf("shmstore: %s of store %q: %w", what, s.Name(), ErrClosed)
	}
	return nil
}

// MaxKeyLen is the longest String or Bytes key a Dict takes (64 KiB); a
// longer one fails with ErrTooLarge.
const MaxKeyLen = objects.MaxKeyLen

// MaxValueSize is the largest String or Bytes value the store holds: a
// value takes one block, and a block at most a region less the region's
// metadata. A larger value fails with ErrTooLarge. The region size is
// fixed when the store is created (Options.RegionSize, shmctl create
// --region-size).
func (s *Store) MaxValueSize() int { return objects.MaxValueOf(s.a) }

// Recover repairs what dead processes left behind and returns how many it
// recovered. A store opened read-only cannot (ErrReadOnly).
func (s *Store) Recover() (int, error) {
	if err := s.st.Guard(); err != nil {
		return 0, err // closed, or forked
	}
	if s.readOnly {
		return 0, fmt.Errorf("shmstore: recover %q: the store was opened read-only (Options.ReadOnly): %w", s.Name(), ErrReadOnly)
	}
	return s.st.RecoverDead()
}

// Problems walks the store's tables, the allocator's metadata and the
// object space, and lists every problem found: see shm.Store.Check,
// alloc.Allocator.Check and objects.Space.Account. It also verifies that
// every allocated block is accounted for: reachable from the root,
// retired (waiting for reclaim), held in an allocation log (a transaction
// under way, or a dead process's, which recovery frees), or a redo-log
// chunk. On a busy store objects and blocks change under the walk, so
// what the object walk finds (a leaked block, a reference count that does
// not match) is reported only if three more walks over some 30 ms find it
// too. A process stalled longer than that in the middle of a commit can
// still make a live store report a false leak; on a quiet store (every
// multi-process test ends with one) the answer is exact. After Close it
// fails with ErrClosed.
func (s *Store) Problems() ([]string, error) {
	if err := s.beginRead("check"); err != nil {
		return nil, err
	}
	defer s.e.EndPeek()
	p := append(s.st.Check(), s.a.CheckUnleased()...)
	if s.sp == nil || len(p) > 0 {
		// A damaged store (a region cut short, broken metadata) is not
		// walked by handle: that could fault.
		return p, nil
	}
	var first []string
	missing := s.unaccounted(&first)
	if len(missing) == 0 && len(first) == 0 {
		return p, nil
	}
	// Walk again, a few times over some milliseconds: a block or a problem
	// counts only if every walk found it. (On a busy store a block can be
	// missed by a walk while it moves between owners: a commit's stores
	// and its retirement, a finalizer's steps and its frees.)
	for range 3 {
		time.Sleep(10 * time.Millisecond)
		var again []string
		still := s.unaccounted(&again)
		seen := map[string]bool{}
		for _, q := range again {
			seen[q] = true
		}
		first = slices.DeleteFunc(first, func(q string) bool { return !seen[q] })
		maps.DeleteFunc(missing, func(h handle.Handle, _ bool) bool { return !still[h] })
		if len(first) == 0 && len(missing) == 0 {
			break
		}
	}
	p = append(p, first...)
	for h := range missing {
		p = append(p, fmt.Sprintf("block %v is allocated but neither reachable, retired nor logged (leaked)", h))
	}
	return p, nil
}

// unaccounted walks everything once and returns the allocated blocks no
// owner accounts for; the walk's own problems are added to *p.
func (s *Store) unaccounted(p *[]string) map[handle.Handle]bool {
	ac := s.sp.Account()
	*p = append(*p, ac.Problems...)
	owned := map[handle.Handle]bool{}
	s.a.EachLogged(func(h handle.Handle) { owned[h] = true })
	s.e.EachChunk(func(h handle.Handle) { owned[h] = true })
	out := map[handle.Handle]bool{}
	s.a.EachAllocated(func(h handle.Handle) {
		if !ac.Reachable[h] && !ac.Retired[h] && !owned[h] {
			out[h] = true
		}
	})
	return out
}

// Check is Problems as an error: nil when the store is consistent, else an
// error wrapping ErrCheck that lists every problem (or Problems' error).
func (s *Store) Check() error {
	p, err := s.Problems()
	if err != nil {
		return err
	}
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("shmstore: store %q: %d problems:\n  %s: %w", s.Name(), len(p), strings.Join(p, "\n  "), ErrCheck)
}

// Remove deletes the store name in opts' directory. Without force it
// refuses while live processes are attached (ErrInUse) or the store is
// damaged (ErrDamaged); with force it removes it in any state. A
// directory that is not a store's is never removed (ErrNotStore).
func Remove(name string, opts Options, force bool) error { return shm.Remove(name, opts.shm(), force) }

// ListStores names the stores in opts' directory.
func ListStores(opts Options) ([]string, error) { return shm.List(opts.shm()) }
