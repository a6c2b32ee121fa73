//go:build linux && (amd64 || arm64)

package main

import (
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
)

// txnsOptions are the flags and arguments of `shmctl txns NAME`.
type txnsOptions struct{ nameOnly }

// txnsReport is what txns prints with --json.
type txnsReport struct {
	Name string `json:"name"`
	// Clock is the global version clock: where every snapshot starts
	// (commits stamp versions past it; those that retire memory move it).
	Clock uint64     `json:"clock"`
	Slots []txnsSlot `json:"slots"`
}

// txnsSlot is one slot that has an owner or holds retired memory back
// (txn.SlotInfo, with JSON names). It is read without locks while others
// work: a snapshot, perhaps mid-change.
type txnsSlot struct {
	Slot   int    `json:"slot"`
	Proc   int    `json:"proc"` // process-table index of the owner, -1 when free
	PID    uint32 `json:"pid"`  // 0 when free
	Alive  bool   `json:"alive"`
	Leased bool   `json:"leased"` // a goroutine or thread holds the slot now
	State  string `json:"state"`  // idle, active, committing, releasing
	// Active: in a transaction whose snapshot is RV (published to
	// reclaim, which keeps what that snapshot may read).
	Active     bool    `json:"active"`
	RV         uint64  `json:"rv"`
	AgeSeconds float64 `json:"age_seconds"` // since the running transaction's first attempt
	Attempts   uint32  `json:"attempts"`    // of the running transaction
	Locks      int     `json:"locks"`       // locks held by the commit under way
	WaitOn     uint64  `json:"wait_on"`     // address of the lock word waited on, 0 for none
	RetryOn    int     `json:"retry_on"`    // in Retry: how many words it sleeps on (wait_on is the first)
	Commits    uint64  `json:"commits"`     // since the slot was made: all its owners
	Aborts     uint64  `json:"aborts"`
	Retired    int     `json:"retired"`      // retired entries the slot holds back from reuse
	Oldest     uint64  `json:"oldest_epoch"` // the oldest epoch among them
}

// run opens the store read-only and lists its slots.
func (o *txnsOptions) run(w io.Writer) error {
	st, err := o.openReadOnly(o.name)
	if err != nil {
		return err
	}
	defer st.Close()
	rep := collectTxns(st)
	return o.emit(w, &rep)
}

// collectTxns reads the slot table. It only reads.
func collectTxns(st *shmstore.Store) txnsReport {
	e := layers.Of(st).Engine
	rep := txnsReport{Name: st.Name(), Clock: e.Clock(), Slots: []txnsSlot{}}
	for _, s := range e.Slots() {
		rep.Slots = append(rep.Slots, txnsSlot{Slot: s.Slot, Proc: s.Proc, PID: s.PID, Alive: s.Alive,
			Leased: s.Leased, State: s.State, Active: s.Active, RV: s.RV, AgeSeconds: s.Age.Seconds(),
			Attempts: s.Attempts, Locks: s.Locks, WaitOn: s.WaitOn, RetryOn: s.RetryOn, Commits: s.Commits, Aborts: s.Aborts,
			Retired: s.Retired, Oldest: s.Oldest})
	}
	return rep
}

// writeText prints the clock and a table of the slots. Cells that do not
// apply (no owner, no transaction running, nothing waited on, nothing
// retired) are "-".
func (r *txnsReport) writeText(w io.Writer) error {
	if len(r.Slots) == 0 {
		_, err := fmt.Fprintf(w, "store %q: clock %d, no slot in use or holding retired memory\n", r.Name, r.Clock)
		return err
	}
	fmt.Fprintf(w, "store %q: clock %d, %d slots in use or holding retired memory\n\n", r.Name, r.Clock, len(r.Slots))
	t := newTable(w)
	fmt.Fprintln(t, "SLOT\tPROC\tPID\tALIVE\tLEASED\tSTATE\tRV\tAGE\tATTEMPTS\tLOCKS\tWAITS ON\tCOMMITS\tABORTS\tRETIRED\tOLDEST")
	for _, s := range r.Slots {
		proc, pid, alive := "-", "-", "-"
		if s.Proc >= 0 {
			proc, pid, alive = strconv.Itoa(s.Proc), strconv.FormatUint(uint64(s.PID), 10), yesNo(s.Alive)
		}
		rv, age, attempts := "-", "-", "-"
		if s.Active {
			rv = strconv.FormatUint(s.RV, 10)
		}
		if s.AgeSeconds > 0 {
			age = formatAge(s.AgeSeconds)
			attempts = strconv.FormatUint(uint64(s.Attempts), 10)
		}
		waitOn := "-"
		switch {
		case s.RetryOn > 0:
			waitOn = fmt.Sprintf("retry: %d words (%#x...)", s.RetryOn, s.WaitOn)
		case s.WaitOn != 0:
			waitOn = fmt.Sprintf("%#x", s.WaitOn)
		}
		oldest := "-"
		if s.Retired > 0 {
			oldest = strconv.FormatUint(s.Oldest, 10)
		}
		fmt.Fprintf(t, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%s\n", s.Slot, proc, pid, alive,
			yesNo(s.Leased), s.State, rv, age, attempts, s.Locks, waitOn, s.Commits, s.Aborts, s.Retired, oldest)
	}
	return t.Flush()
}

// yesNo formats a bool for a table.
func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// formatAge formats seconds for a table: 850µs, 12ms, 3.2s, 5m0s.
func formatAge(sec float64) string {
	d := time.Duration(sec * float64(time.Second))
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
