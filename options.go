//go:build linux && (amd64 || arm64)

package shmstore

import (
	"io/fs"

	"github.com/shmstore/shmstore/shm"
)

// Options configure Open. The zero value opens (creating if missing) a
// store in $SHMSTORE_DIR, else /dev/shm/shmstore, with the defaults below.
// The sizes and table sizes apply when the store is created; an existing
// store keeps its own.
type Options struct {
	// Dir is the directory that holds stores. Empty: $SHMSTORE_DIR, else
	// DefaultDir (tmpfs: memory speed, gone at reboot). A disk directory
	// makes the store outlive a reboot (through the page cache; nothing
	// is promised across a power loss).
	Dir string
	// RegionSize is the size of each region file, a multiple of 1 MiB from
	// 1 MiB to 4 GiB. Zero: DefaultRegionSize. It also bounds the largest
	// value: a value lives in one block, and a block in one region, less
	// the region's metadata (Store.MaxValueSize; 64 MiB regions hold
	// values of up to 63.875 MiB less 8 bytes). A larger value fails with
	// ErrTooLarge.
	RegionSize int64
	// MaxSize bounds the bytes of all regions together; it is rounded down
	// to a whole number of regions (at least one). Zero: DefaultMaxSize.
	MaxSize int64
	// Mode is the permission of the store's files (0600 by default); the
	// directory gets the matching execute bits. Widen it to share a store
	// with a group.
	Mode fs.FileMode
	// Procs is the number of processes that may be attached at once.
	// Zero: DefaultProcs.
	Procs int
	// Slots is the number of transaction slots in the store (transactions
	// running at once, over all processes). Zero: DefaultSlots.
	Slots int
	// SlotsPerProc is the most slots one process leases at once; further
	// transactions wait for one to be returned. Zero: DefaultSlotsPerProc.
	SlotsPerProc int
	// Create says whether to create the store (CreateIfMissing, the zero
	// value; MustExist; MustCreate).
	Create CreateMode
	// ReadOnly maps the store read-only and does not attach, for
	// inspection with Stats and Check: it never writes, and it runs no
	// transaction (Update, View, Get... fail with ErrReadOnly; a
	// transaction needs a slot, which a read-only open cannot lease).
	ReadOnly bool
}

// CreateMode says what Open does about a store that does or does not
// exist.
type CreateMode int

// The create modes.
const (
	// CreateIfMissing opens the store, creating it if it does not exist.
	CreateIfMissing CreateMode = 0
	// MustExist opens an existing store only (else ErrNotFound).
	MustExist CreateMode = 1
	// MustCreate creates a new store only (else ErrExists).
	MustCreate CreateMode = 2
)

// The defaults that zero Options fields stand for.
const (
	DefaultDir          = "/dev/shm/shmstore"
	DefaultRegionSize   = 64 << 20
	DefaultMaxSize      = 4 << 30
	DefaultMode         = fs.FileMode(0o600)
	DefaultProcs        = 64
	DefaultSlots        = 256
	DefaultSlotsPerProc = 16
)

// The values above are shm's, which owns them (compile-time checks: a
// constant that drifts makes one of these arrays negative in size).
var (
	_ = [1]struct{}{}[CreateIfMissing-CreateMode(shm.CreateIfMissing)]
	_ = [1]struct{}{}[MustExist-CreateMode(shm.MustExist)]
	_ = [1]struct{}{}[MustCreate-CreateMode(shm.MustCreate)]
	_ = [1]struct{}{}[DefaultRegionSize-shm.DefaultRegionSize]
	_ = [1]struct{}{}[DefaultMaxSize-shm.DefaultMaxSize]
	_ = [1]struct{}{}[DefaultMode-shm.DefaultMode]
	_ = [1]struct{}{}[DefaultProcs-shm.DefaultProcs]
	_ = [1]struct{}{}[DefaultSlots-shm.DefaultSlots]
	_ = [1]struct{}{}[DefaultSlotsPerProc-shm.DefaultSlotsPerProc]
	_ = map[bool]int{DefaultDir == shm.DefaultDir: 0, false: 1}
)

// shm converts the options for the layer that owns them.
func (o Options) shm() shm.Options {
	return shm.Options{
		Dir: o.Dir, RegionSize: o.RegionSize, MaxSize: o.MaxSize, Mode: o.Mode,
		Procs: o.Procs, Slots: o.Slots, SlotsPerProc: o.SlotsPerProc,
		Create: shm.CreateMode(o.Create), ReadOnly: o.ReadOnly,
	}
}

// BaseDir is the directory that holds stores for these options.
func (o Options) BaseDir() string { return o.shm().BaseDir() }
