//go:build linux && (amd64 || arm64)

package main

import (
	"fmt"
	"io"
	"time"

	"github.com/shmstore/shmstore/internal/layers"
	"github.com/shmstore/shmstore/shm"
)

// procsOptions are the flags and arguments of `shmctl procs NAME`.
type procsOptions struct{ nameOnly }

// procsReport is what procs prints with --json.
type procsReport struct {
	Name string `json:"name"`
	// Processes are the used entries of the process table; State is
	// alive, dead (not yet recovered) or recovering.
	Processes []shm.ProcInfo `json:"processes"`
}

// run opens the store read-only (so procs does not list itself) and
// lists the attached processes.
func (o *procsOptions) run(w io.Writer) error {
	st, err := o.openReadOnly(o.name)
	if err != nil {
		return err
	}
	defer st.Close()
	rep := procsReport{Name: st.Name(), Processes: []shm.ProcInfo{}}
	for _, p := range layers.Of(st).Shm.Procs() {
		if p.Slots == nil {
			p.Slots = []int{} // [] rather than null in JSON
		}
		rep.Processes = append(rep.Processes, p)
	}
	if o.JSON {
		return writeJSON(w, rep)
	}
	if len(rep.Processes) == 0 {
		_, err := fmt.Fprintf(w, "store %q: no process attached\n", rep.Name)
		return err
	}
	now := time.Now()
	t := newTable(w)
	fmt.Fprintln(t, "PROC\tPID\tSTATE\tATTACHED\tFOR\tSLOTS")
	for _, p := range rep.Processes {
		fmt.Fprintf(t, "%d\t%d\t%s\t%s\t%s\t%s\n", p.Index, p.PID, p.State, p.Attached.Format(time.DateTime),
			formatAge(now.Sub(p.Attached).Seconds()), intList(p.Slots))
	}
	return t.Flush()
}
