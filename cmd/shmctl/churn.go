//go:build linux && (amd64 || arm64)

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/internal/churn"
	"github.com/shmstore/shmstore/internal/layers"
)

// churnCommand is the hidden command bench re-executes shmctl with: one
// worker process.
const churnCommand = "__churn"

// churnOptions are the flags of one bench worker:
// `shmctl __churn NAME --mailbox H --worker N ...`.
type churnOptions struct {
	globalOptions
	name     string
	mailbox  string
	worker   uint64
	duration time.Duration
	ops      int
	minSize  byteSize
	maxSize  byteSize
	seed     uint64
	gate     bool
}

// addFlags registers the worker's flags.
func (o *churnOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.mailbox, "mailbox", "", "mailbox `HANDLE` made by the parent")
	fs.Uint64Var(&o.worker, "worker", 0, "worker `ID`, 1 and up")
	fs.DurationVar(&o.duration, "duration", time.Second, "how long to run")
	fs.IntVar(&o.ops, "ops", 0, "stop after this many operations (0: no limit)")
	fs.Var(&o.minSize, "min-size", "smallest request `SIZE`")
	fs.Var(&o.maxSize, "max-size", "largest request `SIZE`")
	fs.Uint64Var(&o.seed, "seed", 0, "random seed")
	fs.BoolVar(&o.gate, "gate", false, "attach, say \"ready\", then wait for standard input to close before running")
}

// setArgs takes the store name.
func (o *churnOptions) setArgs(args []string) error { return storeNameArg(&o.name, args) }

// Validate checks the worker's options.
func (o *churnOptions) Validate() error {
	if err := validStoreName(o.name); err != nil {
		return err
	}
	if _, err := handle.Parse(o.mailbox); err != nil || o.mailbox == "" || o.mailbox == "null" {
		return fmt.Errorf("bad mailbox handle %q", o.mailbox)
	}
	if o.worker == 0 || o.worker >= 1<<32 {
		return fmt.Errorf("worker %d: want 1 to 2^32-1", o.worker)
	}
	return validChurnSizes(int64(o.minSize), int64(o.maxSize))
}

// validChurnSizes checks the request sizes of the churn workload.
func validChurnSizes(lo, hi int64) error {
	switch {
	case lo < 16:
		return fmt.Errorf("min size %d: want at least 16 bytes (a block carries a 16-byte tag)", lo)
	case hi < lo:
		return fmt.Errorf("max size %d is below the min size %d", hi, lo)
	case hi > 1<<30:
		return fmt.Errorf("max size %s: want at most 1GiB", formatSize(uint64(hi)))
	}
	return nil
}

// workerResult is what a worker prints (JSON) for the parent.
type workerResult struct {
	Worker      uint64  `json:"worker"`
	PID         int     `json:"pid"`
	Allocs      uint64  `json:"allocs"`
	Frees       uint64  `json:"frees"`
	RemoteFrees uint64  `json:"remote_frees"`
	Bytes       uint64  `json:"bytes"`
	Seconds     float64 `json:"seconds"`
}

// run attaches, leases a heap, waits at the gate, runs churn.Run and
// prints its counts.
func (o *churnOptions) run(w io.Writer) error {
	mb, _ := handle.Parse(o.mailbox)
	st, err := o.openExisting(o.name)
	if err != nil {
		return err
	}
	h, err := layers.Of(st).Alloc.Lease()
	if err != nil {
		_ = st.Close()
		return fmt.Errorf("store %q: lease a slot: %w", o.name, err)
	}
	if o.gate {
		waitAtGate(w)
	}
	cs, cerr := churn.Run(h, churn.Options{
		Mailbox:  mb,
		Worker:   o.worker,
		Duration: o.duration,
		Ops:      o.ops,
		MinSize:  int(o.minSize),
		MaxSize:  int(o.maxSize),
		Seed:     o.seed,
	})
	h.Release()
	if err := errors.Join(cerr, st.Close()); err != nil {
		return fmt.Errorf("worker %d: %w", o.worker, err)
	}
	return writeJSON(w, workerResult{Worker: o.worker, PID: os.Getpid(), Allocs: cs.Allocs, Frees: cs.Frees,
		RemoteFrees: cs.RemoteFrees, Bytes: cs.Bytes, Seconds: cs.Seconds})
}
