//go:build linux && (amd64 || arm64)

package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/pflag"

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
func (o *rmOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.force, "force", false, "remove even while live processes are attached (they keep their mappings), or a damaged store")
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

// run removes the store, refusing while live processes are attached, or
// a store that cannot be opened, unless forced. A directory that is not a
// store's is never removed.
func (o *rmOptions) run(w io.Writer) error {
	// Peek read-only for the report: the directory and the attached
	// processes. Only the file and process layer is opened: a store whose
	// upper layers this build cannot read (another version's) is still
	// removed. Remove checks everything again itself, and says what is
	// wrong with a store it cannot open.
	rep := rmReport{Name: o.name, Dir: filepath.Join(o.baseDir(), o.name), Forced: o.force, LivePIDs: []int{}}
	ro := shm.Options{Dir: o.Dir}
	ro.ReadOnly = true
	peek, peekErr := shm.Open(o.name, ro)
	if peekErr == nil {
		rep.Dir = peek.Dir()
		if live := peek.LiveProcs(); live != nil {
			rep.LivePIDs = live
		}
		_ = peek.Close()
	}

	err := shmstore.Remove(o.name, o.storeOptions(), o.force)
	switch {
	case err == nil:
	case errors.Is(err, shmstore.ErrInUse):
		return fmt.Errorf("store %q has live processes attached (pids %s); use --force to remove it anyway",
			o.name, intList(rep.LivePIDs))
	case errors.Is(err, shm.ErrDamaged), errors.Is(err, shm.ErrNotStore):
		return err // says what is wrong, and whether --force would remove it
	case errors.Is(err, shmstore.ErrLayout):
		// Another layout or build: say why, in Open's words.
		cause := peekErr
		if cause == nil {
			cause = err
		}
		return fmt.Errorf("store %q cannot be opened (%w); use --force to remove it anyway", o.name, cause)
	default:
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
