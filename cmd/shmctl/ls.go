//go:build linux && (amd64 || arm64)

package main

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
)

// lsOptions are the flags of `shmctl ls`.
type lsOptions struct {
	globalOptions
}

// addFlags registers nothing: ls has no flags of its own.
func (o *lsOptions) addFlags(*pflag.FlagSet) {}

// setArgs refuses arguments: ls lists the whole directory.
func (o *lsOptions) setArgs(args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("takes no arguments, got %q", args[0])
	}
	return nil
}

// Validate has nothing to check.
func (o *lsOptions) Validate() error { return nil }

// lsEntry is one store in ls's output. A store that cannot be opened is
// listed with Error set and the other fields zero.
type lsEntry struct {
	Name        string    `json:"name"`
	Regions     int       `json:"regions"`
	MaxRegions  int       `json:"max_regions"`
	RegionSize  uint64    `json:"region_size"`
	MappedBytes uint64    `json:"mapped_bytes"`
	MaxSize     uint64    `json:"max_size"`
	LiveProcs   int       `json:"live_procs"`
	DeadProcs   int       `json:"dead_procs"`
	Created     time.Time `json:"created"`
	Error       string    `json:"error,omitempty"`
}

// run lists the stores, opening each read-only. A directory chosen with
// --dir or $SHMSTORE_DIR must exist; the default one is made by the first
// create, and until then there is no store to list.
func (o *lsOptions) run(w io.Writer) error {
	if ok, err := o.statDir(); err != nil {
		return err
	} else if !ok && o.dirFrom() != "" {
		return fmt.Errorf("directory %s (%s) does not exist", o.baseDir(), o.dirFrom())
	}
	opts := o.storeOptions()
	names, err := shmstore.ListStores(opts)
	if err != nil {
		return err
	}
	entries := []lsEntry{}
	for _, name := range names {
		entries = append(entries, o.describe(name))
	}
	if o.JSON {
		return writeJSON(w, entries)
	}
	t := newTable(w)
	fmt.Fprintln(t, "NAME\tREGIONS\tSIZE\tMAX SIZE\tLIVE\tDEAD\tCREATED")
	for _, e := range entries {
		if e.Error != "" {
			fmt.Fprintf(t, "%s\t-\t-\t-\t-\t-\terror: %s\n", e.Name, oneLine(e.Error))
			continue
		}
		fmt.Fprintf(t, "%s\t%d/%d\t%s\t%s\t%d\t%d\t%s\n", e.Name, e.Regions, e.MaxRegions,
			formatSize(e.MappedBytes), formatSize(e.MaxSize), e.LiveProcs, e.DeadProcs,
			e.Created.Format(time.DateTime))
	}
	return t.Flush()
}

// describe opens store name read-only and summarizes it.
func (o *lsOptions) describe(name string) lsEntry {
	st, err := o.openReadOnly(name)
	if err != nil {
		return lsEntry{Name: name, Error: err.Error()}
	}
	defer st.Close()
	s := layers.Of(st).Shm
	e := lsEntry{
		Name:       name,
		Regions:    int(s.Regions()),
		MaxRegions: int(s.MaxRegions()),
		RegionSize: s.RegionSize(),
		LiveProcs:  len(s.LiveProcs()),
		DeadProcs:  len(s.DeadProcs()),
		Created:    time.Unix(0, s.Header().Created),
	}
	e.MappedBytes = uint64(e.Regions) * e.RegionSize
	e.MaxSize = uint64(e.MaxRegions) * e.RegionSize
	return e
}
