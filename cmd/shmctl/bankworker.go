//go:build linux && (amd64 || arm64)

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/shmstore/shmstore"
)

// bankWorkerCommand is the hidden command bank re-executes shmctl with:
// one worker process.
const bankWorkerCommand = "__bank"

// bankWorkerOptions are the flags of one bank worker:
// `shmctl __bank NAME --worker N --accounts N --max-amount N ...`.
type bankWorkerOptions struct {
	globalOptions
	name      string
	worker    int
	accounts  int
	maxAmount int64
	duration  time.Duration
	seed      uint64
	gate      bool
}

// addFlags registers the worker's flags.
func (o *bankWorkerOptions) addFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.worker, "worker", 0, "worker `ID`, 1 and up")
	fs.IntVar(&o.accounts, "accounts", 0, "`N` accounts")
	fs.Int64Var(&o.maxAmount, "max-amount", 0, "transfers move 1 to `AMOUNT`")
	fs.DurationVar(&o.duration, "duration", time.Second, "how long to run")
	fs.Uint64Var(&o.seed, "seed", 0, "random seed")
	fs.BoolVar(&o.gate, "gate", false, "attach, say \"ready\", then wait for standard input to close before running")
}

// setArgs takes the store name.
func (o *bankWorkerOptions) setArgs(args []string) error { return storeNameArg(&o.name, args) }

// Validate checks the worker's options.
func (o *bankWorkerOptions) Validate() error {
	if err := validStoreName(o.name); err != nil {
		return err
	}
	switch {
	case o.worker < 1:
		return fmt.Errorf("worker %d: want 1 or more", o.worker)
	case o.accounts < 2 || o.accounts > maxAccounts:
		return fmt.Errorf("accounts %d: want 2 to %d", o.accounts, maxAccounts)
	case o.maxAmount < 1:
		return fmt.Errorf("max amount %d: want 1 or more", o.maxAmount)
	case o.duration <= 0:
		return fmt.Errorf("duration %v: want more than 0", o.duration)
	}
	return nil
}

// bankWorkerResult is what a worker prints (JSON) for the parent, and one
// line of bank's report.
type bankWorkerResult struct {
	Worker int `json:"worker"`
	PID    int `json:"pid"`
	// Transfers moved money; Declined found the source short of the
	// amount (and wrote nothing); Retries are attempts run again after a
	// conflict.
	Transfers uint64  `json:"transfers"`
	Declined  uint64  `json:"declined"`
	Retries   uint64  `json:"retries"`
	Seconds   float64 `json:"seconds"`
}

// run attaches, checks the accounts (leasing its slot), waits at the
// gate, then transfers until the duration is up or SIGINT/SIGTERM asks it
// to stop, and prints its counts.
func (o *bankWorkerOptions) run(w io.Writer) (err error) {
	// Stop between transactions, never in one (a kill would be recovered,
	// but a clean stop reports its counts).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	st, err := o.openExisting(o.name)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("worker %d: close: %w", o.worker, cerr))
		}
	}()
	err = st.View(func(tx *shmstore.Tx) error {
		d, err := tx.Root().GetDict(bankDict)
		if err != nil {
			return fmt.Errorf("key %q: %w", bankDict, err)
		}
		n, err := d.Len()
		if err == nil && n != o.accounts {
			err = fmt.Errorf("%q holds %d accounts, not %d", bankDict, n, o.accounts)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("worker %d: store %q: %w", o.worker, o.name, err)
	}
	if o.gate {
		waitAtGate(w)
	}

	rng := rand.New(rand.NewPCG(o.seed, uint64(o.worker)))
	r := bankWorkerResult{Worker: o.worker, PID: os.Getpid()}
	start := time.Now()
	deadline := start.Add(o.duration)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		from := rng.IntN(o.accounts)
		to := rng.IntN(o.accounts - 1)
		if to >= from {
			to++
		}
		amount := 1 + rng.Int64N(o.maxAmount)
		moved, attempts, err := transfer(st, accountKey(from), accountKey(to), amount)
		if err != nil {
			return fmt.Errorf("worker %d: transfer %d from %s to %s: %w", o.worker, amount, accountKey(from), accountKey(to), err)
		}
		if moved {
			r.Transfers++
		} else {
			r.Declined++
		}
		r.Retries += attempts - 1
	}
	r.Seconds = time.Since(start).Seconds()
	return writeJSON(w, r)
}

// transfer moves amount from one account to another in one transaction if
// the source holds that much. It returns whether it moved money and how
// many attempts the transaction took.
func transfer(st *shmstore.Store, from, to string, amount int64) (moved bool, attempts uint64, err error) {
	err = st.Update(func(tx *shmstore.Tx) error {
		attempts++
		moved = false
		d, err := tx.Root().GetDict(bankDict)
		if err != nil {
			return err
		}
		a, err := d.GetInt(from)
		if err != nil {
			return err
		}
		b, err := d.GetInt(to)
		if err != nil {
			return err
		}
		if a < amount {
			return nil
		}
		if err := d.Set(from, a-amount); err != nil {
			return err
		}
		if err := d.Set(to, b+amount); err != nil {
			return err
		}
		moved = true
		return nil
	})
	return moved, attempts, err
}
