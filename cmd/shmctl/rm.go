//go:build linux && (amd64 || arm64)

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/shm"
)

// rmOptions are the flags and arguments of `shmctl rm NAME [--force]`.
type rmOptions struct {
	globalOptions
	name  string
	force bool
}

// addFlags registers rm's flags.
func (o *rmOptions) addFlags(fs *flag.FlagSet) {
	o.addGlobalFlags(fs)
	fs.BoolVar(&o.force, "force", false, "remove even while live processes are attached (they keep their mappings)")
}

// setArgs takes the store name.
func (o *rmOptions) setArgs(args []string) error { return storeNameArg(&o.name, args) }

// Validate checks the store name.
func (o *rmOptions) Validate() error { return validStoreName(o.name) }

// rmReport is what rm prints with --json.
type rmReport struct {
	Name    string `json:"name"`
	Dir     string `json:"dir"`
	Removed bool   `json:"removed"`
	Forced  bool   `json:"forced"`
	// LivePIDs are the processes that were attached when it was removed
	// (only with --force).
	LivePIDs []int `json:"live_pids"`
}

// run removes the store, refusing while live processes are attached unless
// forced.
func (o *rmOptions) run(w io.Writer) error {
	// Peek read-only for the directory and the attached processes, for the
	// report; Remove checks again itself. Only the file and process layer
	// is opened: a store whose upper layers this build cannot read (another
	// version's) is still removed. One it cannot open at all (damaged) is
	// removed only with --force, blind.
	rep := rmReport{Name: o.name, Dir: filepath.Join(o.baseDir(), o.name), Forced: o.force, LivePIDs: []int{}}
	ro := shm.Options{Dir: o.Dir}
	ro.ReadOnly = true
	peek, err := shm.Open(o.name, ro)
	switch {
	case err == nil:
		rep.Dir = peek.Dir()
		if live := peek.LiveProcs(); live != nil {
			rep.LivePIDs = live
		}
		_ = peek.Close()
	case errors.Is(err, shmstore.ErrLayout) && !o.force:
		return fmt.Errorf("store %q cannot be opened (%w); use --force to remove it anyway", o.name, err)
	case !errors.Is(err, shmstore.ErrLayout):
		return o.storeError(o.name, err)
	}

	err = shmstore.Remove(o.name, o.storeOptions(), o.force)
	if errors.Is(err, shmstore.ErrInUse) {
		return fmt.Errorf("store %q has live processes attached (pids %s); use --force to remove it anyway",
			o.name, intList(rep.LivePIDs))
	}
	if err != nil {
		return o.storeError(o.name, err)
	}
	rep.Removed = true
	if o.JSON {
		return writeJSON(w, rep)
	}
	if len(rep.LivePIDs) > 0 {
		_, err = fmt.Fprintf(w, "removed store %q (%s); live processes %s keep their mappings until they exit\n",
			o.name, rep.Dir, intList(rep.LivePIDs))
	} else {
		_, err = fmt.Fprintf(w, "removed store %q (%s)\n", o.name, rep.Dir)
	}
	return err
}
