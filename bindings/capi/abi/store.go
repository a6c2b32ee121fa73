//go:build linux && (amd64 || arm64)

package abi

import (
	"errors"
	"io/fs"
	"path/filepath"
	"unsafe"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
)

// Open is shm_open: name a NUL-terminated store name, opts nil for the
// defaults, *out the new store handle.
func (l *Lib) Open(name unsafe.Pointer, opts *Options, out *uint64, e *Error) int32 {
	return l.call(e, func() error {
		n, err := cstring(name, "name")
		if err != nil {
			return err
		}
		if err := need(out, "out"); err != nil {
			return err
		}
		var o shmstore.Options
		if opts != nil {
			if opts.Dir != nil {
				if o.Dir, err = cstring(opts.Dir, "opts->dir"); err != nil {
					return err
				}
			}
			if opts.Mode&^0o777 != 0 {
				return badArg("opts->mode %#o: want permission bits only", opts.Mode)
			}
			if opts.Create < OpenCreate || opts.Create > OpenMustCreate {
				return badArg("opts->create %d: want SHM_OPEN_CREATE, SHM_OPEN_MUST_EXIST or SHM_OPEN_MUST_CREATE", opts.Create)
			}
			o.RegionSize, o.MaxSize = opts.RegionSize, opts.MaxSize
			o.Mode = fs.FileMode(opts.Mode)
			o.Create = shmstore.CreateMode(opts.Create)
			o.ReadOnly = opts.ReadOnly != 0
		}
		st, err := shmstore.Open(n, o)
		if err != nil {
			return err
		}
		ly := layers.Of(st)
		sh := ly.Shm
		path, err := filepath.Abs(sh.Dir())
		if err != nil {
			path = sh.Dir()
		}
		s := &storeEntry{st: st, path: path, maxValue: int64(sh.RegionSize()), slots: int64(sh.Header().SlotsPerProc)}
		if !o.ReadOnly {
			s.sp = ly.Space
		}
		l.mu.Lock()
		*out = l.stores.add(s)
		l.mu.Unlock()
		return nil
	})
}

// Close is shm_close: it fails with ErrInUse while transactions of the
// store run (or other calls on it are under way).
func (l *Lib) Close(h uint64, e *Error) (rc int32) {
	defer guard(&rc, e)
	if err := l.forked(); err != nil {
		return result(err, e)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s, bad := l.stores.lookup(h)
	switch {
	case bad:
		return result(badArg("%#x is not a store handle", h), e)
	case s == nil:
		return result(failf(ErrClosed, "shmstore: store handle %#x: the store was closed", h), e)
	case s.refs.Load() > 0:
		return result(failf(ErrInUse, "shmstore: close store %q: %d transactions or calls under way", s.st.Name(), s.refs.Load()), e)
	}
	err := s.st.Close()
	if err != nil && errors.Is(err, shmstore.ErrInUse) {
		return result(err, e) // nothing closed: still usable
	}
	l.stores.remove(h)
	return result(err, e)
}

// Remove is shm_remove: dir nil for the default directory.
func (l *Lib) Remove(name, dir unsafe.Pointer, force int32, e *Error) int32 {
	return l.call(e, func() error {
		n, err := cstring(name, "name")
		if err != nil {
			return err
		}
		var o shmstore.Options
		if dir != nil {
			if o.Dir, err = cstring(dir, "dir"); err != nil {
				return err
			}
		}
		return shmstore.Remove(n, o, force != 0)
	})
}

// Check is shm_check: OK, or ErrOther with the problems in the message.
func (l *Lib) Check(h uint64, e *Error) int32 {
	return l.withStore(h, e, func(s *storeEntry) error { return s.st.Check() })
}

// Recover is shm_recover: it repairs what dead processes left behind
// (Store.Recover) and writes how many it recovered into *recovered.
func (l *Lib) Recover(h uint64, recovered *int64, e *Error) int32 {
	return l.withStore(h, e, func(s *storeEntry) error {
		return intOut(recovered, s.st.Recover)
	})
}

// StorePath is shm_store_path: the store's directory (absolute) copied
// into buf's capacity bytes, NUL-terminated, truncated to fit.
func (l *Lib) StorePath(h uint64, buf unsafe.Pointer, capacity uintptr, e *Error) int32 {
	return l.withStore(h, e, func(s *storeEntry) error {
		if buf == nil || capacity == 0 {
			return badArg("buf is NULL or of capacity 0")
		}
		b := unsafe.Slice((*byte)(buf), min(capacity, uintptr(len(s.path))+1))
		b[copy(b[:len(b)-1], s.path)] = 0
		return nil
	})
}

// StoreStats is shm_store_stats: the bytes of the store's allocated blocks
// and the most its regions may grow to (Store.Stats).
func (l *Lib) StoreStats(h uint64, used, maxBytes *int64, e *Error) int32 {
	return l.withStore(h, e, func(s *storeEntry) error {
		if used == nil || maxBytes == nil {
			return badArg("used_bytes or max_bytes is NULL")
		}
		st, err := s.st.Stats()
		if err != nil {
			return err
		}
		*used, *maxBytes = int64(st.UsedBytes), int64(st.MaxBytes)
		return nil
	})
}
