//go:build linux && (amd64 || arm64)

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
	"github.com/shmstore/shmstore/shm"
)

// createOptions are the flags and arguments of
// `shmctl create NAME [--region-size S] [--max-size S] [--mode M]`.
type createOptions struct {
	globalOptions
	name       string
	regionSize byteSize
	maxSize    byteSize
	mode       fileMode
}

// addFlags registers create's flags.
func (o *createOptions) addFlags(fs *flag.FlagSet) {
	o.addGlobalFlags(fs)
	o.regionSize = shm.DefaultRegionSize
	o.maxSize = shm.DefaultMaxSize
	o.mode = fileMode(shm.DefaultMode)
	fs.Var(&o.regionSize, "region-size", "`SIZE` of each region file: a multiple of 1MiB from 1MiB to 4GiB. "+
		"It bounds the largest value: a value and its 8-byte header live in one region, less the region's metadata "+
		"(about a thousandth, at least 64KiB): 64MiB regions hold values of up to 63.875MiB-8B, 1MiB regions 960KiB-8B")
	fs.Var(&o.maxSize, "max-size", "largest total `SIZE` of the regions, rounded down to whole regions")
	fs.Var(&o.mode, "mode", "permission bits of the store's files: octal `MODE` including 0600")
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
	opts := o.storeOptions()
	opts.RegionSize, opts.MaxSize, opts.Mode = int64(o.regionSize), int64(o.maxSize), fs.FileMode(o.mode)
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
