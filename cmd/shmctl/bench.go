//go:build linux && (amd64 || arm64)

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/internal/churn"
	"github.com/shmstore/shmstore/internal/layers"
)

// benchOptions are the flags and arguments of
// `shmctl bench NAME [--procs N] [--duration D] [--min-size S] [--max-size S] [--mailbox N]`.
type benchOptions struct {
	globalOptions
	fleetFlags
	name    string
	ops     int
	minSize byteSize
	maxSize byteSize
	mailbox int
	keep    bool
}

// newBenchOptions returns bench's options with their defaults.
func newBenchOptions(g globalOptions) *benchOptions {
	return &benchOptions{globalOptions: g, fleetFlags: fleetFlags{procs: 4, duration: 3 * time.Second},
		minSize: 16, maxSize: 4 << 10, mailbox: 1024}
}

// addFlags registers bench's flags.
func (o *benchOptions) addFlags(fs *pflag.FlagSet) {
	o.addFleetFlags(fs)
	fs.IntVar(&o.ops, "ops", o.ops, "stop each worker after `N` allocations (0: only --duration)")
	fs.Var(&o.minSize, "min-size", "smallest request `SIZE`, at least 16")
	fs.Var(&o.maxSize, "max-size", "largest request `SIZE`, at most the largest block of the store (a region less its metadata, as for create --region-size); sizes are log-uniform in between")
	fs.IntVar(&o.mailbox, "mailbox", o.mailbox, "`N` cells in the shared mailbox that blocks are swapped through, one block of 8 bytes a cell and 8 more: at most the largest block of the store, as for --max-size")
	fs.BoolVar(&o.keep, "keep", false, "leave the mailbox and the blocks in it allocated, for a look with info (linked from no object: check reports them as leaked, and they stay until the store is removed)")
}

// setArgs takes the store name.
func (o *benchOptions) setArgs(args []string) error { return storeNameArg(&o.name, args) }

// Validate checks the workload's shape.
func (o *benchOptions) Validate() error {
	if err := validStoreName(o.name); err != nil {
		return err
	}
	if err := o.validateFleet(); err != nil {
		return err
	}
	switch {
	case o.ops < 0:
		return fmt.Errorf("ops %d: want 0 or more", o.ops)
	case o.mailbox < 1 || o.mailbox > 1<<20:
		return fmt.Errorf("mailbox %d: want 1 to %d cells", o.mailbox, 1<<20)
	}
	return validChurnSizes(int64(o.minSize), int64(o.maxSize))
}

// benchWorker is one worker's line in bench's report.
type benchWorker struct {
	Worker int `json:"worker"`
	PID    int `json:"pid"`
	benchCounts
}

// benchCounts are the counts and rates of a worker or of all of them.
type benchCounts struct {
	Allocs      uint64 `json:"allocs"`
	Frees       uint64 `json:"frees"`
	RemoteFrees uint64 `json:"remote_frees"`
	Bytes       uint64 `json:"bytes"`
	// Ops is allocations plus frees.
	Ops uint64 `json:"ops"`
	// Seconds is the worker's running time (for the total: the longest).
	Seconds float64 `json:"seconds"`
	// OpsPerSec is Ops/Seconds (for the total: the sum over the workers).
	OpsPerSec float64 `json:"ops_per_sec"`
	// RemoteFreeFraction is RemoteFrees/Frees: frees of blocks another
	// worker allocated.
	RemoteFreeFraction float64 `json:"remote_free_fraction"`
}

// benchReport is what bench prints with --json.
type benchReport struct {
	Store        string        `json:"store"`
	Procs        int           `json:"procs"`
	Duration     float64       `json:"duration_seconds"`
	MinSize      int64         `json:"min_size"`
	MaxSize      int64         `json:"max_size"`
	Mailbox      int           `json:"mailbox_cells"`
	Seed         uint64        `json:"seed"`
	Workers      []benchWorker `json:"workers"`
	Total        benchCounts   `json:"total"`
	Recovered    int           `json:"recovered"`
	StaleHandles int           `json:"stale_handles"`
	KeptMailbox  string        `json:"kept_mailbox,omitempty"` // with --keep: the mailbox left allocated
}

// run creates the mailbox, starts the workers, opens the gate, waits for
// them, drains the mailbox and reports.
func (o *benchOptions) run(w io.Writer) error {
	o.pickSeed()
	st, err := o.openExisting(o.name)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := o.fitProcTable(st, o.name, "bench"); err != nil {
		return err
	}
	if err := o.fitBlocks(st); err != nil {
		return err
	}
	// From the mailbox's making to its draining, Ctrl-C and SIGTERM only
	// stop the workers (the fleet sends them SIGTERM): bench itself goes
	// on to recover them and give the mailbox's blocks back (a bench
	// killed outright leaves them allocated until the store is removed).
	sigCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h, err := layers.Of(st).Alloc.Lease()
	if err != nil {
		return fmt.Errorf("store %q: lease a slot: %w", o.name, err)
	}
	mb, err := churn.NewMailbox(h, o.mailbox)
	h.Release()
	if err != nil {
		return fmt.Errorf("store %q: make a mailbox of %d cells: %w", o.name, o.mailbox, err)
	}

	results, werr := o.runWorkers(sigCtx, mb)

	// Whatever happened to the workers, repair what a dead one left and
	// give the mailbox's blocks back.
	rep := benchReport{Store: o.name, Procs: o.procs, Duration: o.duration.Seconds(),
		MinSize: int64(o.minSize), MaxSize: int64(o.maxSize), Mailbox: o.mailbox, Seed: o.seed,
		Workers: []benchWorker{}}
	rep.Recovered, err = st.Recover()
	if err != nil {
		return errors.Join(werr, fmt.Errorf("store %q: recover dead workers: %w", o.name, err))
	}
	if o.keep && werr == nil {
		rep.KeptMailbox = mb.String()
	} else {
		if h, err = layers.Of(st).Alloc.Lease(); err != nil {
			return errors.Join(werr, fmt.Errorf("store %q: lease a slot to drain the mailbox: %w", o.name, err))
		}
		rep.StaleHandles, err = churn.DrainMailbox(h, mb)
		_ = h.Release()
		if err != nil {
			return errors.Join(werr, fmt.Errorf("store %q: drain the mailbox: %w", o.name, err))
		}
	}

	if werr != nil {
		return werr // the others' results are not a benchmark of --procs workers
	}

	for _, r := range results {
		bw := benchWorker{Worker: int(r.Worker), PID: r.PID}
		bw.Allocs, bw.Frees, bw.RemoteFrees, bw.Bytes, bw.Seconds = r.Allocs, r.Frees, r.RemoteFrees, r.Bytes, r.Seconds
		bw.Ops = bw.Allocs + bw.Frees
		if bw.Seconds > 0 {
			bw.OpsPerSec = float64(bw.Ops) / bw.Seconds
		}
		bw.RemoteFreeFraction = fraction(bw.RemoteFrees, bw.Frees)
		rep.Workers = append(rep.Workers, bw)
		t := &rep.Total
		t.Allocs += bw.Allocs
		t.Frees += bw.Frees
		t.RemoteFrees += bw.RemoteFrees
		t.Bytes += bw.Bytes
		t.Ops += bw.Ops
		t.Seconds = max(t.Seconds, bw.Seconds)
		t.OpsPerSec += bw.OpsPerSec
	}
	rep.Total.RemoteFreeFraction = fraction(rep.Total.RemoteFrees, rep.Total.Frees)
	return o.emit(w, &rep)
}

// fitBlocks refuses, before any worker starts, a --max-size or a
// --mailbox whose block is larger than the largest block the store
// allocates (a region less its metadata, fixed by create --region-size):
// every worker would fail on its first such request, and the mailbox
// would not be made.
func (o *benchOptions) fitBlocks(st *shmstore.Store) error {
	limit := byteSize(layers.Of(st).Alloc.MaxBlock())
	if o.maxSize > limit {
		return o.blockTooLarge(st, limit, "--max-size", o.maxSize.String(), "", limit.String())
	}
	if need := byteSize(churn.MailboxBytes(o.mailbox)); need > limit {
		return o.blockTooLarge(st, limit, "--mailbox", strconv.Itoa(o.mailbox),
			fmt.Sprintf("a mailbox of %d cells is one block of %d bytes (8 a cell and 8 more), and ", o.mailbox, need),
			strconv.Itoa(churn.MailboxCells(int(limit))))
	}
	return nil
}

// blockTooLarge is fitBlocks' usage error for flag, given value, whose
// block (as why says, if the flag is not the block's size itself) is
// larger than limit, the largest block of the store; most is the largest
// value of the flag that fits.
func (o *benchOptions) blockTooLarge(st *shmstore.Store, limit byteSize, flag, value, why, most string) error {
	return usagef("%s %s: %sstore %q allocates at most %s in one block (its regions of %s less their metadata); "+
		"give %s %s or less, or bench a store made with a larger --region-size (shmctl create)",
		flag, value, why, o.name, limit.String(), formatSize(layers.Of(st).Shm.RegionSize()), flag, most)
}

// fraction is a/b, 0 when b is 0.
func fraction(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// runWorkers starts the worker processes, lets them go together once
// each is ready and collects what each reports. Every started worker is
// waited for; the end of ctx stops them, and a worker that outlives its
// duration by far is killed.
func (o *benchOptions) runWorkers(ctx context.Context, mb handle.Handle) ([]workerResult, error) {
	f, err := startFleet(ctx, fleetSpec{procs: o.procs, command: churnCommand, timeout: o.fleetTimeout(),
		args: func(id int) []string {
			return append(o.workerArgs(&o.globalOptions, id),
				"--mailbox", mb.String(),
				"--ops", strconv.Itoa(o.ops),
				"--min-size", strconv.FormatInt(int64(o.minSize), 10),
				"--max-size", strconv.FormatInt(int64(o.maxSize), 10),
				"--", o.name)
		}})
	if err != nil {
		return nil, err
	}
	f.openGate()
	return fleetResults[workerResult](f)
}

// writeText prints the parameters, a table of the workers and their total,
// and what draining the mailbox found.
func (r *benchReport) writeText(w io.Writer) error {
	fmt.Fprintf(w, "bench %q: %d workers for %v, sizes %s to %s, mailbox of %d cells, seed %d\n\n",
		r.Store, r.Procs, time.Duration(r.Duration*float64(time.Second)), formatSize(uint64(r.MinSize)),
		formatSize(uint64(r.MaxSize)), r.Mailbox, r.Seed)
	t := newTable(w)
	fmt.Fprintln(t, "WORKER\tPID\tALLOCS\tFREES\tREMOTE FREES\tREMOTE\tSECONDS\tOPS/S")
	for _, b := range r.Workers {
		fmt.Fprintf(t, "%d\t%d\t%s\n", b.Worker, b.PID, b.benchCounts.cells())
	}
	fmt.Fprintf(t, "total\t\t%s\n", r.Total.cells())
	if err := t.Flush(); err != nil {
		return err
	}
	if r.KeptMailbox != "" {
		_, err := fmt.Fprintf(w, "\nmailbox %s kept with its blocks (--keep); %d dead workers recovered\n",
			r.KeptMailbox, r.Recovered)
		return err
	}
	_, err := fmt.Fprintf(w, "\nmailbox drained (%d stale handles); %d dead workers recovered\n",
		r.StaleHandles, r.Recovered)
	return err
}

// cells formats the counts as tab-separated table cells.
func (c *benchCounts) cells() string {
	return fmt.Sprintf("%d\t%d\t%d\t%.1f%%\t%.2f\t%.0f", c.Allocs, c.Frees, c.RemoteFrees,
		100*c.RemoteFreeFraction, c.Seconds, c.OpsPerSec)
}
