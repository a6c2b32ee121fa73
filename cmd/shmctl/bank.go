//go:build linux && (amd64 || arm64)

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/internal/layers"
)

// The bank workload: bankDict of the root holds the accounts, Ints under
// the keys accountKey(0) up to accountKey(n-1). Workers move money between
// them in transactions, so their total never changes; the parent reads it
// in a View every interval to show that no reader ever sees money in
// flight.
const bankDict = "accounts"

// maxAccounts bounds --accounts (accountKey has five digits).
const maxAccounts = 100000

// accountKey is the key of account i.
func accountKey(i int) string { return fmt.Sprintf("acct-%05d", i) }

// bankOptions are the flags and arguments of
// `shmctl bank NAME [--procs N] [--accounts N] [--duration D] [--initial N]`.
type bankOptions struct {
	globalOptions
	fleetFlags
	name     string
	accounts int
	initial  int64
	interval time.Duration
}

// newBankOptions returns bank's options with their defaults.
func newBankOptions(g globalOptions) *bankOptions {
	return &bankOptions{globalOptions: g, fleetFlags: fleetFlags{procs: 3, duration: 5 * time.Second},
		accounts: 100, initial: 1000, interval: time.Second}
}

// addFlags registers bank's flags.
func (o *bankOptions) addFlags(fs *pflag.FlagSet) {
	o.addFleetFlags(fs)
	fs.IntVar(&o.accounts, "accounts", o.accounts, "`N` accounts in the Dict \"accounts\" (made if it is missing)")
	fs.Int64Var(&o.initial, "initial", o.initial, "`AMOUNT` each new account starts with; transfers move 1 to AMOUNT")
	fs.DurationVar(&o.interval, "interval", o.interval, "read the total every `DURATION`")
}

// setArgs takes the store name.
func (o *bankOptions) setArgs(args []string) error { return storeNameArg(&o.name, args) }

// Validate checks the workload's shape.
func (o *bankOptions) Validate() error {
	if err := validStoreName(o.name); err != nil {
		return err
	}
	if err := o.validateFleet(); err != nil {
		return err
	}
	switch {
	case o.accounts < 2 || o.accounts > maxAccounts:
		return fmt.Errorf("accounts %d: want 2 to %d", o.accounts, maxAccounts)
	case o.initial < 1 || o.initial > math.MaxInt64/int64(o.accounts):
		return fmt.Errorf("initial %d: want 1 to %d for %d accounts", o.initial, math.MaxInt64/int64(o.accounts), o.accounts)
	case o.interval < 10*time.Millisecond || o.interval > time.Hour:
		return fmt.Errorf("interval %v: want 10ms to 1h", o.interval)
	}
	return nil
}

// bankReport is what bank prints with --json.
type bankReport struct {
	Store    string  `json:"store"`
	Procs    int     `json:"procs"`
	Accounts int     `json:"accounts"`
	Initial  int64   `json:"initial"`
	Duration float64 `json:"duration_seconds"`
	Seed     uint64  `json:"seed"`
	// Created: this run made the accounts; else it found them, and their
	// total then is the one every reading must see.
	Created     bool               `json:"created"`
	Expected    int64              `json:"expected_total"`
	Samples     []bankSample       `json:"samples"`
	Workers     []bankWorkerResult `json:"workers"` // those that reported (a failed one is on stderr)
	Total       bankCounts         `json:"total"`
	Interrupted bool               `json:"interrupted"`
	// Wrong counts the samples whose total (or count of accounts) was not
	// the expected one, or that failed to read.
	Wrong int  `json:"wrong"`
	OK    bool `json:"ok"`
}

// bankSample is one reading of every balance, in one View.
type bankSample struct {
	// Seconds since the workers started.
	Seconds  float64 `json:"seconds"`
	Total    int64   `json:"total"`
	Accounts int     `json:"accounts"`
	// TransfersPerSec and AbortsPerSec are the workers' commits and
	// aborted attempts since the previous sample, from their slots'
	// counters (0 in the final sample).
	TransfersPerSec float64 `json:"transfers_per_sec"`
	AbortsPerSec    float64 `json:"aborts_per_sec"`
	// Final: read after every worker ended.
	Final bool   `json:"final"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// bankCounts are what the workers did, summed.
type bankCounts struct {
	Transfers       uint64  `json:"transfers"`
	Declined        uint64  `json:"declined"`
	Retries         uint64  `json:"retries"`
	Seconds         float64 `json:"seconds"` // the longest worker's
	TransfersPerSec float64 `json:"transfers_per_sec"`
}

// run sets up the accounts, starts the workers, samples the total until
// they end, and checks every sample.
func (o *bankOptions) run(w io.Writer) error {
	o.pickSeed()
	st, err := o.openExisting(o.name)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := o.fitProcTable(st, o.name, "bank"); err != nil {
		return err
	}
	rep := bankReport{Store: o.name, Procs: o.procs, Accounts: o.accounts, Initial: o.initial,
		Duration: o.duration.Seconds(), Seed: o.seed, Samples: []bankSample{}, Workers: []bankWorkerResult{}}
	if rep.Expected, rep.Created, err = o.setup(st); err != nil {
		return fmt.Errorf("store %q: %w", o.name, err)
	}

	// Ctrl-C (which the workers get too) or SIGTERM stops the workers
	// cleanly: the fleet sends them SIGTERM, each ends its transaction and
	// reports; bank then reads the total a last time and checks as usual.
	sigCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Every worker has attached, leased its slot and checked the accounts
	// (it said "ready") before the fleet returns, so that bank can read
	// their slots' counters before they run.
	f, err := startFleet(sigCtx, fleetSpec{procs: o.procs, command: bankWorkerCommand, timeout: o.fleetTimeout(),
		args: func(id int) []string {
			return append(o.workerArgs(&o.globalOptions, id),
				"--accounts", strconv.Itoa(o.accounts),
				"--max-amount", strconv.FormatInt(o.initial, 10),
				"--", o.name)
		}})
	if err != nil {
		return err
	}
	pids := map[uint32]bool{}
	for _, pid := range f.pids() {
		pids[uint32(pid)] = true
	}
	if !o.JSON {
		o.writeHeader(w, &rep)
	}
	prev := workerSlots(st, pids)
	start, last := time.Now(), time.Now()
	f.openGate()

	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for running := true; running; {
		select {
		case now := <-tick.C:
			s := o.sample(st, &rep, now.Sub(start))
			cur := workerSlots(st, pids)
			s.TransfersPerSec, s.AbortsPerSec = rates(prev, cur, now.Sub(last))
			prev, last = cur, now
			o.record(w, &rep, s)
		case <-f.ended():
			running = false
		}
	}
	s := o.sample(st, &rep, time.Since(start))
	s.Final = true
	o.record(w, &rep, s)

	rep.Interrupted = f.wasInterrupted()
	results, werr := fleetResults[bankWorkerResult](f)
	for _, r := range results {
		rep.Workers = append(rep.Workers, r)
		t := &rep.Total
		t.Transfers += r.Transfers
		t.Declined += r.Declined
		t.Retries += r.Retries
		t.Seconds = max(t.Seconds, r.Seconds)
		t.TransfersPerSec += perSecond(r.Transfers, r.Seconds)
	}
	// The report goes out even when a worker failed: the totals were
	// checked all the same (a worker that died mid-transaction is
	// recovered, and its transaction is all or nothing).
	rep.OK = rep.Wrong == 0
	if o.JSON {
		err = writeJSON(w, rep)
	} else {
		err = rep.writeSummary(w)
	}
	if err != nil {
		return err
	}
	if !rep.OK {
		return errors.Join(werr, rep.wrongError())
	}
	return werr
}

// setup makes the accounts if the store has none, else checks that it
// holds --accounts of them. It returns the total they hold.
func (o *bankOptions) setup(st *shmstore.Store) (total int64, created bool, err error) {
	err = st.Update(func(tx *shmstore.Tx) error {
		total, created = 0, false
		d, err := tx.Root().Dict(bankDict)
		if err != nil {
			return fmt.Errorf("key %q: %w", bankDict, err)
		}
		n, err := d.Len()
		if err != nil {
			return err
		}
		if n == 0 {
			for i := range o.accounts {
				if err := d.Set(accountKey(i), o.initial); err != nil {
					return err
				}
			}
			total, created = int64(o.accounts)*o.initial, true
			return nil
		}
		if n != o.accounts {
			return fmt.Errorf("the Dict %q already holds %d accounts, not %d: pass --accounts %d", bankDict, n, o.accounts, n)
		}
		for i := range o.accounts {
			b, err := d.GetInt(accountKey(i))
			if err != nil {
				return fmt.Errorf("the Dict %q is not a bank's accounts: %s: %w", bankDict, accountKey(i), err)
			}
			total += b
		}
		return nil
	})
	return total, created, err
}

// sample reads every balance in one View and checks the total.
func (o *bankOptions) sample(st *shmstore.Store, rep *bankReport, since time.Duration) bankSample {
	s := bankSample{Seconds: since.Seconds()}
	err := st.View(func(tx *shmstore.Tx) error {
		s.Total, s.Accounts = 0, 0
		d, err := tx.Root().GetDict(bankDict)
		if err != nil {
			return err
		}
		var bad error
		err = d.Range(func(k, v shmstore.Value) bool {
			b, err := v.AsInt()
			if err != nil {
				bad = fmt.Errorf("account %v: %w", k, err)
				return false
			}
			s.Total += b
			s.Accounts++
			return true
		})
		if err == nil {
			err = bad
		}
		return err
	})
	if err != nil {
		s.Error = err.Error()
	}
	s.OK = err == nil && s.Total == rep.Expected && s.Accounts == rep.Accounts
	return s
}

// record keeps a sample and, without --json, prints it at once.
func (o *bankOptions) record(w io.Writer, rep *bankReport, s bankSample) {
	rep.Samples = append(rep.Samples, s)
	if !s.OK {
		rep.Wrong++
	}
	if o.JSON {
		return
	}
	verdict := "ok"
	switch {
	case s.Error != "":
		verdict = "WRONG: " + oneLine(s.Error)
	case !s.OK:
		verdict = fmt.Sprintf("WRONG: want %d in %d accounts", rep.Expected, rep.Accounts)
	}
	if s.Final {
		fmt.Fprintf(w, "%8s  %14d  %11s  %9s  %s\n", "end", s.Total, "", "", verdict)
		return
	}
	fmt.Fprintf(w, "%7.1fs  %14d  %11.0f  %9.0f  %s\n", s.Seconds, s.Total, s.TransfersPerSec, s.AbortsPerSec, verdict)
}

// slotCount is a worker slot's counters at one moment.
type slotCount struct {
	pid             uint32
	commits, aborts uint64
}

// workerSlots reads the counters of the slots the workers (pids) own.
func workerSlots(st *shmstore.Store, pids map[uint32]bool) map[int]slotCount {
	m := map[int]slotCount{}
	for _, s := range layers.Of(st).Engine.Slots() {
		if s.Proc >= 0 && pids[s.PID] {
			m[s.Slot] = slotCount{pid: s.PID, commits: s.Commits, aborts: s.Aborts}
		}
	}
	return m
}

// rates are the commits and aborts per second between two readings of
// the workers' slots. A slot's counters add up over all its owners, so
// only slots that kept their owner count.
func rates(prev, cur map[int]slotCount, dt time.Duration) (commits, aborts float64) {
	if dt <= 0 {
		return 0, 0
	}
	var dc, da uint64
	for slot, c := range cur {
		if p, ok := prev[slot]; ok && p.pid == c.pid {
			dc += c.commits - p.commits
			da += c.aborts - p.aborts
		}
	}
	return float64(dc) / dt.Seconds(), float64(da) / dt.Seconds()
}

// writeHeader prints what runs, before the samples.
func (o *bankOptions) writeHeader(w io.Writer, r *bankReport) {
	how := fmt.Sprintf("set up now: %d accounts of %d", r.Accounts, r.Initial)
	if !r.Created {
		how = fmt.Sprintf("the %d accounts found in %q", r.Accounts, bankDict)
	}
	fmt.Fprintf(w, "bank %q: %d workers for %v, seed %d; total %d (%s)\n\n",
		r.Store, r.Procs, o.duration, r.Seed, r.Expected, how)
	fmt.Fprintf(w, "%8s  %14s  %11s  %9s\n", "TIME", "TOTAL", "TRANSFERS/S", "ABORTS/S")
}

// writeSummary prints the workers' counts and the verdict, after the
// samples.
func (r *bankReport) writeSummary(w io.Writer) error {
	if r.Interrupted {
		fmt.Fprintln(w, "interrupted: the workers stopped early")
	}
	fmt.Fprintln(w)
	t := newTable(w)
	fmt.Fprintln(t, "WORKER\tPID\tTRANSFERS\tDECLINED\tRETRIES\tSECONDS\tTRANSFERS/S")
	for _, b := range r.Workers {
		fmt.Fprintf(t, "%d\t%d\t%d\t%d\t%d\t%.2f\t%.0f\n", b.Worker, b.PID, b.Transfers, b.Declined, b.Retries,
			b.Seconds, perSecond(b.Transfers, b.Seconds))
	}
	c := r.Total
	fmt.Fprintf(t, "total\t\t%d\t%d\t%d\t%.2f\t%.0f\n", c.Transfers, c.Declined, c.Retries, c.Seconds, c.TransfersPerSec)
	if err := t.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if r.OK {
		_, err := fmt.Fprintf(w, "all %d totals were %d: ok\n", len(r.Samples), r.Expected)
		return err
	}
	_, err := fmt.Fprintf(w, "%d of %d totals were not %d\n", r.Wrong, len(r.Samples), r.Expected)
	return err
}

// perSecond is n/sec, 0 when sec is 0.
func perSecond(n uint64, sec float64) float64 {
	if sec <= 0 {
		return 0
	}
	return float64(n) / sec
}

// wrongError: some sample was wrong; exit status 1.
func (r *bankReport) wrongError() error {
	return fmt.Errorf("store %q: %d of %d totals were not %d", r.Store, r.Wrong, len(r.Samples), r.Expected)
}
