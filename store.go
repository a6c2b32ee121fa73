//go:build linux && (amd64 || arm64)

package shmstore

import (
	"errors"
	"fmt"
	"strings"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/shm"
)

// Options configure Open; see shm.Options.
type Options = shm.Options

// Create modes for Options.Create.
const (
	CreateIfMissing = shm.CreateIfMissing
	MustExist       = shm.MustExist
	MustCreate      = shm.MustCreate
)

// Sentinel errors; test with errors.Is.
var (
	ErrNotFound    = shm.ErrNotFound
	ErrExists      = shm.ErrExists
	ErrLayout      = shm.ErrLayout
	ErrClosed      = shm.ErrClosed
	ErrForked      = shm.ErrForked
	ErrPermission  = shm.ErrPermission
	ErrInUse       = shm.ErrInUse
	ErrBadOption   = shm.ErrBadOption
	ErrStaleHandle = handle.ErrStaleHandle
	ErrBadHandle   = handle.ErrBadHandle
	ErrOutOfMemory = alloc.ErrOutOfMemory
	// ErrCheck: Check found problems (the error lists them).
	ErrCheck = errors.New("store check failed")
)

// Store is an open store: a process's attachment to it.
type Store struct {
	st *shm.Store
	a  *alloc.Allocator
}

// Open opens the store name, creating it unless opts.Create says
// otherwise, and recovers any process found dead. With opts.ReadOnly it
// only maps the store for inspection.
func Open(name string, opts Options) (*Store, error) {
	st, err := shm.Open(name, opts)
	if err != nil {
		return nil, err
	}
	a, err := alloc.New(st)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	s := &Store{st: st, a: a}
	if !opts.ReadOnly {
		if _, err := st.RecoverDead(); err != nil {
			_ = st.Close()
			return nil, fmt.Errorf("shmstore: open %q: recover dead processes: %w", name, err)
		}
	}
	return s, nil
}

// Close detaches from the store: this process's slots and their heaps go
// back, unhanded allocations are freed.
func (s *Store) Close() error { return s.st.Close() }

// Name is the store's name.
func (s *Store) Name() string { return s.st.Name() }

// Shm is the store's file and process layer.
func (s *Store) Shm() *shm.Store { return s.st }

// Allocator is the store's allocator.
func (s *Store) Allocator() *alloc.Allocator { return s.a }

// Stats describes the allocator's use of the store.
func (s *Store) Stats() alloc.Stats { return s.a.Stats() }

// Recover repairs what dead processes left behind and returns how many it
// recovered.
func (s *Store) Recover() (int, error) { return s.st.RecoverDead() }

// Problems walks the store's tables and allocator metadata and lists every
// problem found (see shm.Store.Check and alloc.Allocator.Check).
func (s *Store) Problems() []string {
	return append(s.st.Check(), s.a.Check()...)
}

// Check is Problems as an error: nil when the store is consistent, else an
// error wrapping ErrCheck that lists every problem.
func (s *Store) Check() error {
	p := s.Problems()
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("shmstore: store %q: %d problems:\n  %s: %w", s.Name(), len(p), strings.Join(p, "\n  "), ErrCheck)
}

// Remove deletes the store name; see shm.Remove.
func Remove(name string, opts Options, force bool) error { return shm.Remove(name, opts, force) }

// List names the stores in opts' directory.
func List(opts Options) ([]string, error) { return shm.List(opts) }
