//go:build linux && (amd64 || arm64)

package main

import (
	"fmt"
	"io"
	"os"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
)

// checkOptions are the flags and arguments of `shmctl check NAME`.
type checkOptions struct{ nameOnly }

// checkReport is what check prints with --json.
type checkReport struct {
	Name string `json:"name"`
	// Recovered counts the dead processes repaired while check ran (by
	// check itself, or by another process that got there first).
	Recovered int `json:"recovered"`
	// LiveProcs are the other live processes attached while check ran:
	// the allocator's tables are read without its locks, so problems seen
	// while they work may be transient.
	LiveProcs []int    `json:"live_procs"`
	Problems  []string `json:"problems"`
	OK        bool     `json:"ok"`
}

// problemsError: check found problems; exit status 1.
type problemsError struct {
	name string
	n    int
}

// Error says how many problems the store has.
func (e *problemsError) Error() string {
	return fmt.Sprintf("store %q has %d problems", e.name, e.n)
}

// run attaches to the store (so that it can repair), recovers dead
// processes, and lists every problem left.
func (o *checkOptions) run(w io.Writer) error {
	// Peek first, read-only, so the report can say how many processes the
	// repair recovered: opening attached recovers them already.
	ro := o.storeOptions()
	ro.ReadOnly = true
	peek, err := shmstore.Open(o.name, ro)
	if err != nil {
		return o.storeError(o.name, err)
	}
	before := layers.Of(peek).Shm.Header().Recovered.Load()
	_ = peek.Close()

	st, err := o.openExisting(o.name)
	if err != nil {
		return err
	}
	if _, err := st.Recover(); err != nil {
		_ = st.Close()
		return fmt.Errorf("store %q: recover dead processes: %w", o.name, err)
	}
	problems, err := st.Problems()
	if err != nil {
		_ = st.Close()
		return err
	}
	rep := checkReport{Name: o.name, Problems: problems, LiveProcs: []int{}}
	rep.Recovered = int(layers.Of(st).Shm.Header().Recovered.Load() - before)
	if rep.Problems == nil {
		rep.Problems = []string{}
	}
	for _, pid := range layers.Of(st).Shm.LiveProcs() {
		if pid != os.Getpid() {
			rep.LiveProcs = append(rep.LiveProcs, pid)
		}
	}
	rep.OK = len(rep.Problems) == 0
	if err := st.Close(); err != nil {
		return fmt.Errorf("store %q: close: %w", o.name, err)
	}
	if o.JSON {
		err = writeJSON(w, rep)
	} else {
		err = rep.writeText(w)
	}
	if err != nil {
		return err
	}
	if !rep.OK {
		return &problemsError{o.name, len(rep.Problems)}
	}
	return nil
}

// writeText prints the result: what was recovered, then ok or the
// problems, one a line.
func (r *checkReport) writeText(w io.Writer) error {
	if r.Recovered > 0 {
		fmt.Fprintf(w, "recovered %d dead processes\n", r.Recovered)
	}
	if r.OK {
		fmt.Fprintf(w, "store %q: ok\n", r.Name)
	} else {
		fmt.Fprintf(w, "store %q: %d problems:\n", r.Name, len(r.Problems))
		for _, p := range r.Problems {
			fmt.Fprintf(w, "  %s\n", p)
		}
	}
	if len(r.LiveProcs) > 0 {
		fmt.Fprintf(w, "note: %d other live processes attached (pids %s); problems seen while they work may be transient\n",
			len(r.LiveProcs), intList(r.LiveProcs))
	}
	return nil
}
