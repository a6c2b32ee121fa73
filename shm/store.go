//go:build linux && (amd64 || arm64)

package shm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/edsrzf/mmap-go"
	"golang.org/x/sys/unix"
)

// The files of a store directory besides the region files (RegionPath).
const (
	controlName    = "control"
	controlNewName = "control.new" // a control file its creator is still writing
	lockName       = "lock"
)

// DefaultDir is where stores live unless Options.Dir or SHMSTORE_DIR says
// otherwise: tmpfs, so memory-speed and gone at reboot.
const DefaultDir = "/dev/shm/shmstore"

// Defaults for Options fields left zero.
const (
	DefaultRegionSize   = 64 << 20
	DefaultMaxSize      = 4 << 30
	DefaultMode         = fs.FileMode(0o600)
	DefaultProcs        = 64
	DefaultSlots        = 256
	DefaultSlotsPerProc = 16
)

// Limits on Options fields.
const (
	MinRegionSize = 1 << 20
	MaxRegionSize = 4 << 30
	maxProcs      = 1<<10 - 1 // the process index must fit a lock token
)

// CreateMode says what Open does about a store that does or does not exist.
type CreateMode int

// The create modes.
const (
	CreateIfMissing CreateMode = iota // open, creating it if it does not exist
	MustExist                         // open; ErrNotFound if it does not exist
	MustCreate                        // create; ErrExists if it exists
)

// Options configure Open. The sizes and table sizes are fixed when a store
// is created; opening an existing store uses the store's own.
type Options struct {
	// Dir is the directory that holds stores. Empty: $SHMSTORE_DIR, else
	// DefaultDir.
	Dir string
	// RegionSize is the size of each region file, a multiple of 1 MiB from
	// 1 MiB to 4 GiB. Zero: DefaultRegionSize.
	RegionSize int64
	// MaxSize bounds the bytes of all regions together; it is rounded down
	// to a whole number of regions (at least one). Zero: DefaultMaxSize.
	MaxSize int64
	// Mode is the permission of the store's files (0600 by default); the
	// directory gets the matching execute bits. Widen it to share a store
	// with a group.
	Mode fs.FileMode
	// Procs is the number of processes that may be attached at once.
	Procs int
	// Slots is the number of transaction slots in the store.
	Slots int
	// SlotsPerProc is the most slots one process leases at once; further
	// callers wait for one to be returned.
	SlotsPerProc int
	// Create says whether to create the store.
	Create CreateMode
	// ReadOnly maps the store read-only and does not attach: for
	// inspection, which never writes. Such a Store cannot lease slots.
	ReadOnly bool
}

// BaseDir returns the directory that holds stores for these options.
func (o Options) BaseDir() string {
	if o.Dir != "" {
		return o.Dir
	}
	if d := os.Getenv("SHMSTORE_DIR"); d != "" {
		return d
	}
	return DefaultDir
}

func (o Options) withDefaults() (Options, error) {
	if o.RegionSize == 0 {
		o.RegionSize = DefaultRegionSize
	}
	if o.MaxSize == 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.Mode == 0 {
		o.Mode = DefaultMode
	}
	if o.Procs == 0 {
		o.Procs = DefaultProcs
	}
	if o.Slots == 0 {
		o.Slots = DefaultSlots
	}
	if o.SlotsPerProc == 0 {
		o.SlotsPerProc = DefaultSlotsPerProc
	}
	switch {
	case o.RegionSize < MinRegionSize || o.RegionSize > MaxRegionSize || o.RegionSize%MinRegionSize != 0:
		return o, fmt.Errorf("region size %d: want a multiple of 1 MiB from 1 MiB to 4 GiB: %w", o.RegionSize, ErrBadOption)
	case o.MaxSize < o.RegionSize:
		return o, fmt.Errorf("max size %d is below the region size %d: %w", o.MaxSize, o.RegionSize, ErrBadOption)
	case o.MaxSize/o.RegionSize > 1<<16-1:
		return o, fmt.Errorf("max size %d needs more than 65535 regions of %d bytes: %w", o.MaxSize, o.RegionSize, ErrBadOption)
	case o.Mode&^0o777 != 0 || o.Mode&0o600 != 0o600:
		return o, fmt.Errorf("mode %v: want permission bits including 0600: %w", o.Mode, ErrBadOption)
	case o.Procs < 1 || o.Procs > maxProcs:
		return o, fmt.Errorf("procs %d: want 1 to %d: %w", o.Procs, maxProcs, ErrBadOption)
	case o.Slots < 1 || o.Slots > 1<<16:
		return o, fmt.Errorf("slots %d: want 1 to 65536: %w", o.Slots, ErrBadOption)
	case o.SlotsPerProc < 1 || o.SlotsPerProc > o.Slots:
		return o, fmt.Errorf("slots per process %d: want 1 to %d: %w", o.SlotsPerProc, o.Slots, ErrBadOption)
	}
	return o, nil
}

// ValidName reports whether name can name a store: 1 to 200 characters of
// letters, digits, '.', '_' and '-', not starting with '.'.
func ValidName(name string) error {
	if name == "" || len(name) > 200 || name[0] == '.' {
		return fmt.Errorf("store name %q: want 1 to 200 letters, digits, '.', '_' or '-', not starting with '.': %w", name, ErrBadOption)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("store name %q: character %q not allowed: %w", name, c, ErrBadOption)
		}
	}
	return nil
}

// Store is one process's view of a store: its mappings, its entry in the
// process table and the slots it leases. It is safe for concurrent use by
// the goroutines of one process; it must not be used after fork.
type Store struct {
	name     string
	dir      string
	readOnly bool

	lockFile *os.File // OFD locks: byte 0 create lock, byte 1+proc liveness
	ctl      mmap.MMap
	hdr      *Header
	layout   controlLayout

	proc  int    // index in the process table, -1 when not attached
	token uint32 // lock token (see Mutex); 0 when not attached

	regions  []atomic.Pointer[regionMap] // by region id; nil until mapped here
	regionMu sync.Mutex                  // serializes mapping a region in this process

	forkGuard *byte // first byte of a private page with MADV_WIPEONFORK: reads 0 in a forked child

	closeMu  sync.Mutex  // serializes Close
	closed   atomic.Bool // set by Close once the slots are given back; read by Guard
	deadSeen atomic.Bool // a dead process was seen; RecoverDead should run soon

	layersMu sync.Mutex
	layers   []layerEntry

	leases leasePool
}

type regionMap struct {
	mem  mmap.MMap
	base unsafe.Pointer
}

// Open opens (and by default creates) the store name.
func Open(name string, opts Options) (*Store, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("shm: open %q: %w", name, err)
	}
	if o.ReadOnly && o.Create != MustExist {
		o.Create = MustExist
	}
	s := &Store{name: name, dir: filepath.Join(o.BaseDir(), name), readOnly: o.ReadOnly, proc: -1}
	if err := s.open(o); err != nil {
		s.unmap()
		return nil, err
	}
	return s, nil
}

func (s *Store) open(o Options) error {
	// Byte 0 of the lock file serializes creating, attaching and removing:
	// the creator holds it while it writes the header, an opener while it
	// checks the header and takes its process entry, Remove while it looks
	// for live processes and deletes the files. An opener that waited while
	// the store was removed holds a lock on a file no longer in the
	// directory: it starts over.
	for try := 0; ; try++ {
		err := s.lockCreateByte(o)
		if err == errStoreReplaced {
			if try < 3 {
				continue
			}
			return fmt.Errorf("shm: open %q: %w", s.name, err)
		}
		if err != nil {
			return err
		}
		err = s.openLocked(o)
		_ = ofdUnlock(s.lockFile, 0)
		return err
	}
}

// errStoreReplaced: the store was removed (and maybe created anew) while
// an opener waited for its lock, three times in a row.
var errStoreReplaced = fmt.Errorf("store removed while waiting for its lock: %w", ErrNotFound)

// lockCreateByte opens the lock file and takes byte 0, and checks that the
// file is still the store's.
func (s *Store) lockCreateByte(o Options) error {
	if s.lockFile != nil {
		_ = s.lockFile.Close()
		s.lockFile = nil
	}
	if err := s.makeDirs(o); err != nil {
		return err
	}
	path := filepath.Join(s.dir, lockName)
	var err error
	if s.lockFile, err = s.openLockFile(o); err != nil {
		return err
	}
	lt := int16(unix.F_WRLCK)
	if o.ReadOnly {
		lt = unix.F_RDLCK
	}
	if err := ofdLock(s.lockFile, 0, lt, true); err != nil {
		return fmt.Errorf("shm: store %q: take create lock: %w", s.name, err)
	}
	held, err1 := s.lockFile.Stat()
	now, err2 := os.Stat(path)
	if err1 != nil || err2 != nil || !os.SameFile(held, now) {
		_ = ofdUnlock(s.lockFile, 0)
		return errStoreReplaced
	}
	return nil
}

// openLockFile opens the lock file, creating it if o may create the store.
// A creator makes the lock file before the control file, and Remove takes
// the directory away whole, so a control file without a lock file is
// damage; a lock file made afresh beside it would let openers take the
// processes still holding bytes of the old one for dead.
func (s *Store) openLockFile(o Options) (*os.File, error) {
	path := filepath.Join(s.dir, lockName)
	flag := os.O_RDWR
	if o.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err == nil {
		return f, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, s.fileError("open lock file", err)
	}
	if s.controlExists() {
		// A creator may have made both since we looked: look again.
		if f, err = os.OpenFile(path, flag, 0); err == nil {
			return f, nil
		}
		if errors.Is(err, fs.ErrNotExist) && s.controlExists() {
			return nil, damaged(s.name, "lock file is missing")
		}
	}
	if o.ReadOnly || o.Create == MustExist {
		// Never add a lock file to a store being removed.
		return nil, s.fileError("open lock file", err)
	}
	if r := s.someRegionFile(); r != "" {
		// A creator makes the lock file before any region file, so a
		// region file seen after the lock file was missing is damage
		// only if the lock file is still missing: else a creator made
		// both since we looked, and its lock decides.
		if f, err = os.OpenFile(path, flag, 0); err == nil {
			return f, nil
		}
		return nil, damaged(s.name, "control file is missing but %s is there", r)
	}
	// Only in a directory of its own: one that holds nothing but what a
	// creator that died may have left (control.new), not a directory of
	// other files that has the store's name (Remove would refuse it).
	if _, err := s.storeFiles("create", "choose another name or directory"); err != nil {
		return nil, err
	}
	if f, err = os.OpenFile(path, flag|os.O_CREATE, o.Mode); err != nil {
		return nil, s.fileError("open lock file", err)
	}
	return f, nil
}

func (s *Store) controlExists() bool {
	_, err := os.Stat(filepath.Join(s.dir, controlName))
	return err == nil
}

// openLocked maps the control segment, checks the region files and
// attaches. REQUIRES: byte 0 held.
func (s *Store) openLocked(o Options) error {
	if err := s.openControl(o); err != nil {
		return err
	}
	if err := s.checkRegionFiles(); err != nil {
		return err
	}
	s.regions = make([]atomic.Pointer[regionMap], s.hdr.MaxRegions+1)
	if err := s.makeForkGuard(); err != nil {
		return err
	}
	if !o.ReadOnly {
		return s.attach()
	}
	return nil
}

func (s *Store) makeDirs(o Options) error {
	base := o.BaseDir()
	if fi, err := os.Stat(base); err == nil && !fi.IsDir() {
		return fmt.Errorf("shm: directory %s (Options.Dir or $SHMSTORE_DIR) is a file, not a directory: %w", base, ErrBadOption)
	}
	if fi, err := os.Stat(s.dir); err == nil && !fi.IsDir() {
		return fmt.Errorf("shm: store %q: %s is a file, not a store: %w", s.name, s.dir, ErrNotStore)
	}
	if o.Create == MustExist {
		if _, err := os.Stat(filepath.Join(s.dir, controlName)); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return s.noControl(base)
			}
			return s.fileError("stat control file", err)
		}
		return nil
	}
	if _, err := os.Stat(base); errors.Is(err, fs.ErrNotExist) {
		if o.Dir != "" || os.Getenv("SHMSTORE_DIR") != "" {
			// A directory the caller chose is the caller's to make: a
			// typo must not become a tree of new directories.
			return fmt.Errorf("shm: directory %s (Options.Dir or $SHMSTORE_DIR) does not exist; create it first: %w", base, ErrBadOption)
		}
		// The shared default directory is like /tmp: every user may keep
		// stores there, only a store's owner may remove or rename it
		// (sticky), and each store directory is private.
		perm := 0o777 | fs.ModeSticky
		if err := os.MkdirAll(base, perm); err != nil && !errors.Is(err, fs.ErrExist) {
			return s.fileError("create "+base, err)
		}
		_ = os.Chmod(base, perm) // undo the umask; a race with another creator sets the same bits
	}
	dirMode := o.Mode | (o.Mode&0o444)>>2 // x wherever r
	if err := os.Mkdir(s.dir, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return s.fileError("create store directory", err)
	} else if err == nil {
		_ = os.Chmod(s.dir, dirMode)
	}
	return nil
}

// fileError names a permission problem as such, with who owns what.
func (s *Store) fileError(what string, err error) error {
	if errors.Is(err, fs.ErrPermission) {
		owner := ""
		if fi, serr := os.Stat(s.dir); serr == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok { // os.Stat fills a syscall.Stat_t, not a unix.Stat_t
				owner = fmt.Sprintf(" (directory %s is mode %v, owner uid %d; this process is uid %d)",
					s.dir, fi.Mode().Perm(), st.Uid, os.Getuid())
			}
		}
		return fmt.Errorf("shm: store %q: %s%s: %w: %w", s.name, what, owner, ErrPermission, err)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("shm: store %q: %s: %w: %w", s.name, what, ErrNotFound, err)
	}
	return fmt.Errorf("shm: store %q: %s: %w", s.name, what, err)
}

// damaged is the error for a damaged store: what is wrong, that the store
// is damaged (ErrDamaged), and what to do about it.
func damaged(name, format string, args ...any) error {
	return fmt.Errorf("shm: store %q: %s: %w: remove it with shmctl rm --force", name, fmt.Sprintf(format, args...), ErrDamaged)
}

// openControl creates the control segment if there is none, else checks
// it: size, magic, version, stamp, sizes, each with its own message. The
// caller holds the create lock, so no creator is at work: a control file
// is always a published one (create writes it under another name), and one
// without its magic is damaged.
func (s *Store) openControl(o Options) error {
	flag := os.O_RDWR
	if o.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(filepath.Join(s.dir, controlName), flag, 0)
	if errors.Is(err, fs.ErrNotExist) {
		// Never created, or its creator died before publishing it.
		if o.Create == MustExist || o.ReadOnly {
			return s.noControl(o.BaseDir())
		}
		if r := s.someRegionFile(); r != "" {
			return damaged(s.name, "control file is missing but %s is there", r)
		}
		return s.create(o)
	}
	if err != nil {
		return s.fileError("open control file", err)
	}
	defer f.Close()
	if o.Create == MustCreate {
		return fmt.Errorf("shm: store %q in %s: %w", s.name, filepath.Dir(s.dir), ErrExists)
	}
	fi, err := f.Stat()
	if err != nil {
		return s.fileError("stat control file", err)
	}
	return s.verifyAndMap(f, fi.Size())
}

// noControl is the error for a store directory without a control file:
// no such store, unless region files say that there was one.
func (s *Store) noControl(base string) error {
	if r := s.someRegionFile(); r != "" {
		return damaged(s.name, "control file is missing but %s is there", r)
	}
	return fmt.Errorf("shm: store %q in %s: %w", s.name, base, ErrNotFound)
}

// someRegionFile names a region file in the store directory, "" if none.
func (s *Store) someRegionFile() string {
	ents, _ := os.ReadDir(s.dir)
	for _, e := range ents {
		if isRegionName(e.Name()) {
			return e.Name()
		}
	}
	return ""
}

// create writes the control segment of a new store. It writes it as
// control.new and renames that to control once the header is complete
// (magic last): a creator that dies midway leaves only control.new, which
// the next creator overwrites, and never a control file without magic,
// which openers take for damage.
func (s *Store) create(o Options) error {
	tmp := filepath.Join(s.dir, controlNewName)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, o.Mode)
	if err != nil {
		return s.fileError("create control file", err)
	}
	defer f.Close()
	maxRegions := uint32(o.MaxSize / o.RegionSize)
	l := computeLayout(maxRegions, uint32(o.Procs), uint32(o.Slots))
	if err := f.Truncate(int64(l.size)); err != nil {
		return s.fileError("size control file", err)
	}
	// O_CREATE's mode went through the umask: set the store's mode (best
	// effort: only the owner may, and a group member re-creating keeps it).
	_ = f.Chmod(o.Mode)
	_ = s.lockFile.Chmod(o.Mode)
	m, err := mmap.MapRegion(f, int(l.size), mmap.RDWR, 0, 0)
	if err != nil {
		return fmt.Errorf("shm: store %q: map control file: %w", s.name, err)
	}
	s.ctl, s.layout = m, l
	s.hdr = (*Header)(unsafe.Pointer(&m[0]))
	h := s.hdr
	h.Version = LayoutVersion
	h.HeaderSize = uint32(unsafe.Sizeof(Header{}))
	h.Stamp = layoutStamp()
	h.RegionSize = uint64(o.RegionSize)
	h.MaxRegions = maxRegions
	h.Procs = uint32(o.Procs)
	h.Slots = uint32(o.Slots)
	h.SlotsPerProc = uint32(o.SlotsPerProc)
	h.Mode = uint32(o.Mode)
	h.Created = time.Now().UnixNano()
	h.ControlSize = uint64(l.size)
	// Publish: everything above is visible to whoever loads Magic, and the
	// file is a store once it is called control.
	h.Magic.Store(Magic)
	if err := os.Rename(tmp, filepath.Join(s.dir, controlName)); err != nil {
		return s.fileError("publish control file", err)
	}
	return nil
}

func (s *Store) verifyAndMap(f *os.File, size int64) error {
	name := s.name
	if size < int64(unsafe.Sizeof(Header{})) {
		return damaged(name, "control file is %d bytes, want at least %d", size, unsafe.Sizeof(Header{}))
	}
	var raw [unsafe.Sizeof(Header{})]byte
	if _, err := f.ReadAt(raw[:], 0); err != nil {
		return s.fileError("read control header", err)
	}
	h := (*Header)(unsafe.Pointer(&raw[0]))
	switch {
	case h.Magic.Load() == 0 && raw == [len(raw)]byte{}:
		return damaged(name, "control file is zeroed (%d bytes, no header)", size)
	case h.Magic.Load() == 0:
		return damaged(name, "control file has no magic (%d bytes)", size)
	case h.Magic.Load() != Magic:
		return fmt.Errorf("shm: store %q: control file has magic %#x, want %#x (not a shmstore control file): %w",
			name, h.Magic.Load(), Magic, ErrLayout)
	case h.Version != LayoutVersion:
		return fmt.Errorf("shm: store %q: layout version %d, this build reads version %d: %w",
			name, h.Version, LayoutVersion, ErrLayout)
	case h.Stamp != layoutStamp() || h.HeaderSize != uint32(unsafe.Sizeof(Header{})):
		return fmt.Errorf("shm: store %q: layout stamp %#x, this build's is %#x (built with other struct sizes or word size): %w",
			name, h.Stamp, layoutStamp(), ErrLayout)
	}
	okSizes := h.RegionSize >= MinRegionSize && h.RegionSize <= MaxRegionSize && h.RegionSize%MinRegionSize == 0 &&
		h.MaxRegions >= 1 && h.MaxRegions < 1<<16 && h.Procs >= 1 && h.Procs <= maxProcs &&
		h.Slots >= 1 && h.Slots <= 1<<16 && h.SlotsPerProc >= 1 && h.SlotsPerProc <= h.Slots
	if !okSizes {
		return fmt.Errorf("shm: store %q: header sizes out of range (region %d, regions %d, procs %d, slots %d): %w",
			name, h.RegionSize, h.MaxRegions, h.Procs, h.Slots, ErrLayout)
	}
	l := computeLayout(h.MaxRegions, h.Procs, h.Slots)
	if h.ControlSize != uint64(l.size) {
		return fmt.Errorf("shm: store %q: header records a control size of %d, its table sizes make %d: %w",
			name, h.ControlSize, l.size, ErrLayout)
	}
	if size < int64(l.size) {
		return damaged(name, "control file is %d bytes, its header wants %d", size, l.size)
	}
	prot := mmap.RDWR
	if s.readOnly {
		prot = mmap.RDONLY
	}
	m, err := mmap.MapRegion(f, int(l.size), prot, 0, 0)
	if err != nil {
		return fmt.Errorf("shm: store %q: map control file: %w", name, err)
	}
	s.ctl, s.layout = m, l
	s.hdr = (*Header)(unsafe.Pointer(&m[0]))
	if s.hdr.Regions.Load() > s.hdr.MaxRegions {
		return fmt.Errorf("shm: store %q: %d regions published, at most %d allowed: %w",
			name, s.hdr.Regions.Load(), s.hdr.MaxRegions, ErrLayout)
	}
	return nil
}

func (s *Store) makeForkGuard() error {
	g, err := unix.Mmap(-1, 0, PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return fmt.Errorf("shm: fork guard: %w", err)
	}
	if err := unix.Madvise(g, unix.MADV_WIPEONFORK); err != nil {
		_ = unix.Munmap(g)
		return fmt.Errorf("shm: fork guard (MADV_WIPEONFORK needs Linux 4.14): %w", err)
	}
	g[0] = 1
	s.forkGuard = &g[0]
	return nil
}

// Guard returns ErrForked in a forked child and ErrClosed after Close. Every
// entry point of the layers above calls it (it is one load and one branch).
// It is inlined, and its errors are made out of line (guardErr): a call
// of Guard and of reclaim's Enter and Exit were 10% of a Set.
func (s *Store) Guard() error {
	if s.Live() {
		return nil
	}
	return s.guardErr()
}

// Live reports whether Guard would return nil: the store is open, in the
// process that opened it.
func (s *Store) Live() bool { return !s.closed.Load() && *s.forkGuard != 0 }

// guardErr is Guard's error when the store is not Live.
func (s *Store) guardErr() error {
	if s.closed.Load() {
		return fmt.Errorf("shm: store %q: %w", s.name, ErrClosed)
	}
	return fmt.Errorf("shm: store %q opened by parent process: %w", s.name, ErrForked)
}

// Name is the store's name.
func (s *Store) Name() string { return s.name }

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// ReadOnly reports whether the store was opened for inspection only.
func (s *Store) ReadOnly() bool { return s.readOnly }

// Header returns the control segment's header.
func (s *Store) Header() *Header { return s.hdr }

// RegionSize is the size of every region file.
func (s *Store) RegionSize() uint64 { return s.hdr.RegionSize }

// ProcIndex is this process's index in the process table, -1 if not attached.
func (s *Store) ProcIndex() int { return s.proc }

// Token is this process's lock token (see Mutex), 0 if not attached.
func (s *Store) Token() uint32 { return s.token }

// ControlBytes is the size of the control segment.
func (s *Store) ControlBytes() uint64 { return uint64(s.layout.size) }

// GlobalPart returns the start of layer p's global area.
func (s *Store) GlobalPart(p Part) unsafe.Pointer {
	return unsafe.Pointer(&s.ctl[s.layout.globalPart[p]])
}

// NumSlots is the number of slots in the store.
func (s *Store) NumSlots() int { return int(s.hdr.Slots) }

// Slot returns the header of slot i.
func (s *Store) Slot(i int) *SlotHeader {
	return (*SlotHeader)(unsafe.Pointer(&s.ctl[s.layout.slotTable+uintptr(i)*SlotSize]))
}

// SlotPart returns the start of layer p's part of slot i.
func (s *Store) SlotPart(i int, p Part) unsafe.Pointer {
	return unsafe.Pointer(&s.ctl[s.layout.slotTable+uintptr(i)*SlotSize+SlotPartOffset[p]])
}

// NumProcs is the size of the process table.
func (s *Store) NumProcs() int { return int(s.hdr.Procs) }

// Proc returns entry i of the process table.
func (s *Store) Proc(i int) *ProcEntry {
	return (*ProcEntry)(unsafe.Pointer(&s.ctl[s.layout.procTable+uintptr(i)*unsafe.Sizeof(ProcEntry{})]))
}

// Close gives back this process's slots (each layer tidies its part), leaves
// the process table and unmaps the store. Memory obtained from the store
// must not be used afterwards. While a slot is still leased Close does
// nothing and fails with ErrInUse: release them first.
func (s *Store) Close() error {
	if s.forkGuard != nil && *s.forkGuard == 0 {
		return fmt.Errorf("shm: close store %q: %w", s.name, ErrForked)
	}
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed.Load() {
		return fmt.Errorf("shm: close store %q: %w", s.name, ErrClosed)
	}
	var err error
	if s.proc >= 0 {
		owned, leased := s.leases.drain()
		if leased > 0 {
			return fmt.Errorf("shm: close store %q: %d slots still leased: %w", s.name, leased, ErrInUse)
		}
		// The layers still use the store while they tidy the slots: closed
		// is set only after.
		err = s.detach(owned)
	}
	s.closed.Store(true)
	s.unmap()
	return err
}

func (s *Store) unmap() {
	for i := range s.regions {
		if r := s.regions[i].Load(); r != nil {
			_ = r.mem.Unmap()
			s.regions[i].Store(nil)
		}
	}
	if s.ctl != nil {
		_ = s.ctl.Unmap()
		s.ctl, s.hdr = nil, nil
	}
	if s.lockFile != nil {
		_ = s.lockFile.Close() // drops our OFD locks
		s.lockFile = nil
	}
	// The fork guard page stays mapped: Guard may still read it after Close.
}

// List returns the names of the stores in the directory opts names, sorted.
func List(opts Options) ([]string, error) {
	base := opts.BaseDir()
	ents, err := os.ReadDir(base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("shm: list %s: %w", base, err)
	}
	var names []string
	for _, e := range ents {
		if !e.IsDir() || ValidName(e.Name()) != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(base, e.Name(), controlName)); err == nil {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// Remove deletes the store name. Unless force is set it refuses, with
// ErrInUse, while live processes are attached; with force, attached
// processes keep their mappings until they exit, but the files are gone.
//
// A store that cannot be opened is removed only with force: a damaged one
// (ErrDamaged: control file zeroed or cut short, lock, control or region
// file missing, region file cut short) and one of another layout
// (ErrLayout). A directory that is not a store's (it holds no control,
// lock or region file, or a file no store has) is never removed
// (ErrNotStore).
//
// Remove holds the store's create lock for writing while it checks the
// store, looks for live processes and takes the directory away, so that
// no process attaches or creates in between; one that was waiting to
// attach finds the store gone and starts over.
func Remove(name string, opts Options, force bool) error {
	if err := ValidName(name); err != nil {
		return err
	}
	for try := 0; ; try++ {
		err := remove(name, opts, force)
		if err == errStoreReplaced {
			if try < 3 {
				continue
			}
			return fmt.Errorf("shm: remove %q: %w", name, err)
		}
		return err
	}
}

func remove(name string, opts Options, force bool) error {
	s := &Store{name: name, dir: filepath.Join(opts.BaseDir(), name), readOnly: true, proc: -1}
	defer s.unmap()
	if err := s.checkStoreDir(); err != nil {
		return err
	}
	path := filepath.Join(s.dir, lockName)
	lf, err := os.OpenFile(path, os.O_RDWR, 0)
	switch {
	case err == nil:
		s.lockFile = lf
		if err := ofdLock(lf, 0, unix.F_WRLCK, true); err != nil {
			return fmt.Errorf("shm: remove %q: take create lock: %w", name, err)
		}
		held, err1 := lf.Stat()
		now, err2 := os.Stat(path)
		if err1 != nil || err2 != nil || !os.SameFile(held, now) {
			return errStoreReplaced
		}
		// A creator we waited for may have changed the directory.
		if err := s.checkStoreDir(); err != nil {
			return err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return s.fileError("open lock file", err)
	}
	ro := opts
	ro.ReadOnly, ro.Create = true, MustExist
	err = s.openControl(ro)
	if err == nil {
		err = s.checkRegionFiles()
	}
	switch {
	case errors.Is(err, ErrNotFound):
		// checkStoreDir found files of a store: its creator died before
		// publishing the control file, or the file was deleted.
		err = damaged(name, "control file is missing (its creation never finished, or it was deleted)")
	case err == nil && s.lockFile == nil:
		err = damaged(name, "lock file is missing")
	}
	if err != nil {
		switch {
		case !errors.Is(err, ErrLayout):
			return err
		case force:
			return removeDir(name, s.dir)
		case errors.Is(err, ErrDamaged):
			return err // it says what is wrong and to remove the store with force
		}
		return fmt.Errorf("shm: remove %q: the store cannot be opened (%w); use force to remove it anyway", name, err)
	}
	if live := s.LiveProcs(); len(live) > 0 && !force {
		return fmt.Errorf("shm: remove %q: %d live processes attached (pids %v); use force to remove anyway: %w",
			name, len(live), live, ErrInUse)
	}
	return removeDir(name, s.dir)
}

// checkStoreDir makes sure Remove deletes only a store's directory: one
// that holds a control, lock or region file, and nothing else than the
// files of a store.
func (s *Store) checkStoreDir() error {
	fi, err := os.Lstat(s.dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("shm: remove %q: no store in %s: %w", s.name, filepath.Dir(s.dir), ErrNotFound)
	case err != nil:
		return s.fileError("stat store directory", err)
	case !fi.IsDir():
		return fmt.Errorf("shm: remove %q: %s is not a directory: %w; not removed", s.name, s.dir, ErrNotStore)
	}
	n, err := s.storeFiles("remove", "not removed")
	if err == nil && n == 0 {
		err = fmt.Errorf("shm: remove %q: %s holds no control, lock or region file: %w; not removed",
			s.name, s.dir, ErrNotStore)
	}
	return err
}

// storeFiles counts the entries of the store's directory, and fails with
// ErrNotStore (the operation op refused, what then said) at the first
// that no store has: Remove deletes, and Open creates in, only a
// directory that holds nothing else.
func (s *Store) storeFiles(op, then string) (int, error) {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, s.fileError("read store directory", err)
	}
	for _, e := range ents {
		if !isStoreFile(e) {
			return 0, fmt.Errorf("shm: %s %q: %s holds %q, which no store has: %w; %s",
				op, s.name, s.dir, e.Name(), ErrNotStore, then)
		}
	}
	return len(ents), nil
}

// isStoreFile reports whether e is one of the files a store directory
// holds: control, control.new, lock, region-NNNNN, each a regular file.
func isStoreFile(e fs.DirEntry) bool {
	if !e.Type().IsRegular() {
		return false
	}
	switch n := e.Name(); n {
	case controlName, controlNewName, lockName:
		return true
	default:
		return isRegionName(n)
	}
}

// removeDir takes a store directory out of the way in one step (a rename
// to a name List ignores), then deletes it: an opener racing the removal
// finds either the whole store or none, never adds a file to one being
// deleted, and one waiting on the old lock file sees it replaced.
func removeDir(name, dir string) error {
	tmp := filepath.Join(filepath.Dir(dir), fmt.Sprintf(".removing-%s-%d-%d", name, os.Getpid(), time.Now().UnixNano()))
	if err := os.Rename(dir, tmp); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("shm: remove %q: %w", name, ErrNotFound)
		}
		return fmt.Errorf("shm: remove %q: %w", name, err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("shm: remove %q: delete %s: %w", name, tmp, err)
	}
	return nil
}
