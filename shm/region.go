//go:build linux && (amd64 || arm64)

package shm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"github.com/edsrzf/mmap-go"
	"golang.org/x/sys/unix"
)

// RegionPath is the file of region id.
func (s *Store) RegionPath(id uint16) string {
	return filepath.Join(s.dir, regionName(id))
}

// regionName is the name of region id's file in the store directory.
func regionName(id uint16) string { return fmt.Sprintf("region-%05d", id) }

// isRegionName reports whether name is a region file's: region-NNNNN.
func isRegionName(name string) bool {
	const prefix = "region-"
	if len(name) != len(prefix)+5 || name[:len(prefix)] != prefix {
		return false
	}
	for _, c := range name[len(prefix):] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// checkRegionFiles stats the file of every region the header says exists,
// one fstatat each, so that Open reports a region file missing or cut short
// by name instead of a later access failing (or faulting under a live
// mapping). The count is loaded first: a grower sizes its file before it
// raises the count.
func (s *Store) checkRegionFiles() error {
	n := s.hdr.Regions.Load()
	if n == 0 {
		return nil
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return s.fileError("open store directory", err)
	}
	defer d.Close()
	dfd := int(d.Fd())
	for i := uint32(1); i <= n; i++ { // n may be 65535: no uint16 counter
		var st unix.Stat_t
		err := unix.Fstatat(dfd, regionName(uint16(i)), &st, 0)
		if err := s.regionFileError(uint16(i), st.Size, err); err != nil {
			return err
		}
	}
	return nil
}

// regionFileError says what is wrong with the file of region id, given its
// size or the error from opening or statting it; nil if nothing is.
func (s *Store) regionFileError(id uint16, size int64, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return damaged(s.name, "%s is missing, want %d bytes", regionName(id), s.hdr.RegionSize)
	case err != nil:
		return s.fileError("access "+regionName(id), err)
	case size != int64(s.hdr.RegionSize):
		return damaged(s.name, "%s is %d bytes, want %d", regionName(id), size, s.hdr.RegionSize)
	}
	return nil
}

// Regions is the number of regions published (they are numbered 1..n).
func (s *Store) Regions() uint32 { return s.hdr.Regions.Load() }

// MaxRegions is the number of regions the store may grow to.
func (s *Store) MaxRegions() uint32 { return s.hdr.MaxRegions }

// Region returns the base address of region id in this process, mapping it
// first if another process created it since. It fails for a region that is
// out of range or not published: a handle naming it is bad.
func (s *Store) Region(id uint16) (unsafe.Pointer, error) {
	if int(id) < len(s.regions) {
		if r := s.regions[id].Load(); r != nil {
			return r.base, nil
		}
	}
	return s.mapRegion(id)
}

// MappedRegion is Region for code that already knows id is published and
// mapped here (for example the owner of a superblock in it): it returns nil
// otherwise.
func (s *Store) MappedRegion(id uint16) unsafe.Pointer {
	if int(id) < len(s.regions) {
		if r := s.regions[id].Load(); r != nil {
			return r.base
		}
	}
	return nil
}

func (s *Store) mapRegion(id uint16) (unsafe.Pointer, error) {
	if s.closed.Load() {
		return nil, fmt.Errorf("shm: store %q: %w", s.name, ErrClosed)
	}
	if id == 0 || uint32(id) > s.hdr.MaxRegions {
		return nil, fmt.Errorf("shm: region %d out of range 1..%d: %w", id, s.hdr.MaxRegions, ErrNoRegion)
	}
	if uint32(id) > s.hdr.Regions.Load() {
		return nil, fmt.Errorf("shm: region %d not created (store has %d): %w", id, s.hdr.Regions.Load(), ErrNoRegion)
	}
	s.regionMu.Lock()
	defer s.regionMu.Unlock()
	if r := s.regions[id].Load(); r != nil {
		return r.base, nil
	}
	if s.closed.Load() {
		return nil, fmt.Errorf("shm: store %q: %w", s.name, ErrClosed)
	}
	flag, prot := os.O_RDWR, mmap.RDWR
	if s.readOnly {
		flag, prot = os.O_RDONLY, mmap.RDONLY
	}
	f, err := os.OpenFile(s.RegionPath(id), flag, 0)
	if err != nil {
		return nil, s.regionFileError(id, 0, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, s.fileError("stat "+regionName(id), err)
	}
	if err := s.regionFileError(id, fi.Size(), nil); err != nil {
		return nil, err
	}
	m, err := mmap.MapRegion(f, int(s.hdr.RegionSize), prot, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("shm: store %q: map region %d: %w", s.name, id, err)
	}
	r := &regionMap{mem: m, base: unsafe.Pointer(&m[0])}
	s.regions[id].Store(r)
	return r.base, nil
}

// Grow creates region have+1 unless another process already grew the store
// past have regions. It returns the number of regions now published, or
// ErrStoreFull at the maximum size. A grower that dies midway leaves at
// most an unpublished file, which the next grower truncates and reuses.
func (s *Store) Grow(have uint32) (uint32, error) {
	if err := s.Guard(); err != nil {
		return 0, err
	}
	if s.proc < 0 {
		// The control segment is mapped read-only: locking would fault.
		return s.hdr.Regions.Load(), fmt.Errorf("shm: grow %q: store opened read-only: %w", s.name, ErrBadOption)
	}
	s.Lock(&s.hdr.growLock) // a stolen growLock needs no repair: growth is idempotent
	defer s.Unlock(&s.hdr.growLock)
	n := s.hdr.Regions.Load()
	if n > have {
		return n, nil
	}
	if n >= s.hdr.MaxRegions {
		return n, fmt.Errorf("shm: store %q: %d regions of %d bytes: %w", s.name, n, s.hdr.RegionSize, ErrStoreFull)
	}
	id := uint16(n + 1)
	f, err := os.OpenFile(s.RegionPath(id), os.O_RDWR|os.O_CREATE|os.O_TRUNC, os.FileMode(s.hdr.Mode))
	if err != nil {
		return n, s.fileError(fmt.Sprintf("create region %d", id), err)
	}
	_ = f.Chmod(os.FileMode(s.hdr.Mode)) // undo the umask (best effort: only the owner may)
	err = f.Truncate(int64(s.hdr.RegionSize))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, s.fileError(fmt.Sprintf("size region %d", id), err)
	}
	s.regionEntry(id).Created = time.Now().UnixNano()
	s.hdr.Regions.Store(uint32(id)) // publish
	return uint32(id), nil
}

// RegionCreated is when region id was published (zero if it was not).
func (s *Store) RegionCreated(id uint16) time.Time {
	if id == 0 || uint32(id) > s.hdr.MaxRegions {
		return time.Time{}
	}
	ns := s.regionEntry(id).Created
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func (s *Store) regionEntry(id uint16) *RegionEntry {
	return (*RegionEntry)(unsafe.Pointer(&s.ctl[s.layout.regionTable+uintptr(id)*unsafe.Sizeof(RegionEntry{})]))
}

// RegionFileOK reports whether region id's file still has its full size.
// A file cut short under a live mapping makes every access past its end
// fault (SIGBUS), so inspection asks before it walks a region.
func (s *Store) RegionFileOK(id uint16) bool {
	fi, err := os.Stat(s.RegionPath(id))
	return err == nil && fi.Size() == int64(s.hdr.RegionSize)
}
