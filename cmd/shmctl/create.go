//go:build linux && (amd64 || arm64)

package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
	"github.com/shmstore/shmstore/shm"
)

// createOptions are the flags and arguments of
// `shmctl create NAME [--region-size S] [--max-size S] [--mode M] [--max-procs N]`.
type createOptions struct {
	globalOptions
	name       string
	regionSize byteSize
	maxSize    byteSize
	mode       fileMode
	maxProcs   int
}

// addFlags registers create's flags.
func (o *createOptions) addFlags(fs *pflag.FlagSet) {
	o.regionSize = shm.DefaultRegionSize
	o.maxSize = shm.DefaultMaxSize
	o.mode = fileMode(shm.DefaultMode)
	fs.Var(&o.regionSize, "region-size", "`SIZE` of each region file: a multiple of 1MiB from 1MiB to 4GiB. "+
		"It bounds the largest value: a value and its 8-byte header live in one region, less the region's metadata "+
		"(about a thousandth, at least 64KiB): 64MiB regions hold values of up to 63.875MiB-8B, 1MiB regions 960KiB-8B")
	fs.Var(&o.maxSize, "max-size", "largest total `SIZE` of the regions, rounded down to whole regions")
	fs.Var(&o.mode, "mode", "permission bits of the store's files: octal `MODE` including 0600")
	fs.IntVar(&o.maxProcs, "max-procs", shm.DefaultProcs, "`N` entries in the process table: processes attached at once, 1 to 1023")
}

// setArgs takes the store name.
func (o *createOptions) setArgs(args []string) error { return storeNameArg(&o.name, args) }

// Validate checks the name, the sizes and the mode before anything is
// created.
func (o *createOptions) Validate() error {
	if err := validStoreName(o.name); err != nil {
		return err
	}
	rs, ms := int64(o.regionSize), int64(o.maxSize)
	switch {
	case rs < shm.MinRegionSize || rs > shm.MaxRegionSize || rs%shm.MinRegionSize != 0:
		return fmt.Errorf("region size %s: want a multiple of 1MiB from 1MiB to 4GiB", o.regionSize.String())
	case ms < rs:
		return fmt.Errorf("max size %s is below the region size %s", o.maxSize.String(), o.regionSize.String())
	case ms/rs > 1<<16-1:
		return fmt.Errorf("max size %s needs more than 65535 regions of %s; raise --region-size", o.maxSize.String(), o.regionSize.String())
	case fs.FileMode(o.mode)&0o600 != 0o600:
		return fmt.Errorf("mode %s: the owner needs read and write (0600)", o.mode.String())
	case o.maxProcs < 1 || o.maxProcs > maxProcTable:
		return fmt.Errorf("max procs %d: want 1 to %d", o.maxProcs, maxProcTable)
	}
	return nil
}

// maxProcTable is the largest process table shm makes (a process's index
// must fit its lock token).
const maxProcTable = 1<<10 - 1

// checkBaseDir makes sure that create makes only the store's own
// directory: the directory that holds stores must exist, except the
// default one, which shmstore makes in its parent (/dev/shm).
func (o *createOptions) checkBaseDir() error {
	ok, err := o.statDir()
	switch {
	case err != nil || ok:
		return err
	case o.dirFrom() != "":
		return fmt.Errorf("directory %s (%s) does not exist; create makes only the store's own directory: make it first (mkdir -p %[1]s)",
			o.baseDir(), o.dirFrom())
	}
	parent := filepath.Dir(o.baseDir())
	if fi, err := os.Stat(parent); err != nil || !fi.IsDir() {
		return fmt.Errorf("%s, which the default directory %s goes in, is not a directory", parent, o.baseDir())
	}
	return nil
}

// createReport is what create prints with --json.
type createReport struct {
	Name       string `json:"name"`
	Dir        string `json:"dir"`
	RegionSize uint64 `json:"region_size"`
	MaxRegions int    `json:"max_regions"`
	MaxSize    uint64 `json:"max_size"`
	Mode       string `json:"mode"`
	Procs      int    `json:"procs"`
	Slots      int    `json:"slots"`
}

// run creates the store (failing if it exists) and describes it.
func (o *createOptions) run(w io.Writer) error {
	if err := o.checkBaseDir(); err != nil {
		return err
	}
	opts := o.storeOptions()
	opts.RegionSize, opts.MaxSize, opts.Mode = int64(o.regionSize), int64(o.maxSize), fs.FileMode(o.mode)
	opts.Procs = o.maxProcs
	opts.Create = shmstore.MustCreate
	st, err := shmstore.Open(o.name, opts)
	if errors.Is(err, shmstore.ErrBadOption) {
		return &usageError{err.Error()}
	}
	if err != nil {
		return o.storeError(o.name, err)
	}
	s := layers.Of(st).Shm
	h := s.Header()
	rep := createReport{
		Name:       o.name,
		Dir:        s.Dir(),
		RegionSize: s.RegionSize(),
		MaxRegions: int(s.MaxRegions()),
		MaxSize:    s.RegionSize() * uint64(s.MaxRegions()),
		Mode:       fmt.Sprintf("%04o", h.Mode),
		Procs:      s.NumProcs(),
		Slots:      s.NumSlots(),
	}
	if err := st.Close(); err != nil {
		return fmt.Errorf("store %q created, but closing it failed: %w", o.name, err)
	}
	if o.JSON {
		return writeJSON(w, rep)
	}
	_, err = fmt.Fprintf(w, "created store %q in %s: regions of %s, at most %s (%d regions), mode %s\n",
		rep.Name, rep.Dir, formatSize(rep.RegionSize), formatSize(rep.MaxSize), rep.MaxRegions, rep.Mode)
	return err
}
