//go:build linux && (amd64 || arm64)

// Command shmctl creates, lists, inspects, checks, removes and benchmarks
// shmstore stores, and reads and writes what they hold.
//
//	shmctl [--dir DIR] [--json] COMMAND [FLAGS] [ARGS]
//
// Commands: create, ls, info, check, rm, get, watch, dump, load, txns, procs,
// bench, bank, help. Every command takes --dir (the directory that holds
// stores; default $SHMSTORE_DIR, else /dev/shm/shmstore) and --json
// (machine-readable output with stable snake_case field names), before or
// after the command name.
//
// Inspection (ls, info, txns, procs) opens stores read-only and never
// writes. get and dump attach, because a transaction needs a slot, and
// read in one View; load writes in one Update (values.go says how values
// map to JSON and msgpack). check attaches, recovers dead processes, then
// reports every problem it finds and exits 1 if there is any. Errors are
// one line on stderr, prefixed "shmctl: ": exit status 2 for a mistake in
// the command line, 1 for a failure at run time.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"text/tabwriter"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/shm"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line (without the program name), writing
// results to stdout and the error, if any, as one line to stderr. It
// returns the exit status: 0 on success, 1 on a runtime error, 2 on a
// usage error. Tests call it in-process.
func run(args []string, stdout, stderr io.Writer) (code int) {
	// A fault in mapped memory (a store file truncated under us) becomes a
	// panic, and every panic becomes one line and exit status 1.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "shmctl: internal error: %s\n", oneLine(fmt.Sprint(r)))
			code = 1
		}
	}()
	err := dispatch(args, stdout)
	if err == nil || errors.Is(err, errHelpShown) {
		return 0
	}
	fmt.Fprintf(stderr, "shmctl: %s\n", oneLine(err.Error()))
	if ue := (*usageError)(nil); errors.As(err, &ue) {
		return 2
	}
	return 1
}

// oneLine folds a multi-line message into one line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\r", "")
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

// Error returns the message.
func (e *usageError) Error() string { return e.msg }

// usagef makes a usageError.
func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// errHelpShown: help was asked for and printed; exit status 0.
var errHelpShown = errors.New("help shown")

// globalOptions are the flags every command takes.
type globalOptions struct {
	// Dir is the directory that holds stores; empty means $SHMSTORE_DIR,
	// else shm.DefaultDir.
	Dir string
	// JSON selects machine-readable output.
	JSON bool
}

// addGlobalFlags registers --dir and --json on fs.
func (g *globalOptions) addGlobalFlags(fs *flag.FlagSet) {
	fs.StringVar(&g.Dir, "dir", g.Dir, "`DIR` holding the stores (default $SHMSTORE_DIR, else "+shm.DefaultDir+")")
	fs.BoolVar(&g.JSON, "json", g.JSON, "print JSON instead of tables")
}

// storeOptions are the Options that open stores in the selected directory.
func (g *globalOptions) storeOptions() shmstore.Options {
	return shmstore.Options{Dir: g.Dir}
}

// baseDir is the directory that holds stores, after $SHMSTORE_DIR.
func (g *globalOptions) baseDir() string {
	return g.storeOptions().BaseDir()
}

// storeError rewords an error from opening or removing store name for
// people: a missing or existing store is said plainly; anything else is
// passed on.
// nameOnly is the options of a command that takes a store name and only
// the global flags (check, info, procs, txns).
type nameOnly struct {
	globalOptions
	name string
}

// addFlags registers the global flags (the command has none of its own).
func (o *nameOnly) addFlags(fs *flag.FlagSet) { o.addGlobalFlags(fs) }

// setArgs takes the store name.
func (o *nameOnly) setArgs(args []string) error { return storeNameArg(&o.name, args) }

// Validate checks the store name.
func (o *nameOnly) Validate() error { return validStoreName(o.name) }

// openExisting opens the store name, which must exist, for a command that
// works on it (a failure is already worded by storeError).
func (g *globalOptions) openExisting(name string) (*shmstore.Store, error) {
	opts := g.storeOptions()
	opts.Create = shmstore.MustExist
	st, err := shmstore.Open(name, opts)
	if err != nil {
		return nil, g.storeError(name, err)
	}
	return st, nil
}

// openReadOnly maps the store name for inspection: it writes nothing and
// does not attach (so inspectors never list themselves).
func (g *globalOptions) openReadOnly(name string) (*shmstore.Store, error) {
	opts := g.storeOptions()
	opts.ReadOnly = true
	st, err := shmstore.Open(name, opts)
	if err != nil {
		return nil, g.storeError(name, err)
	}
	return st, nil
}

// textReport is a report that prints itself for people.
type textReport interface{ writeText(io.Writer) error }

// emit writes rep as JSON with --json, else as text.
func (g *globalOptions) emit(w io.Writer, rep textReport) error {
	if g.JSON {
		return writeJSON(w, rep)
	}
	return rep.writeText(w)
}

func (g *globalOptions) storeError(name string, err error) error {
	switch {
	case errors.Is(err, shmstore.ErrNotFound):
		if _, serr := os.Stat(filepath.Join(g.baseDir(), name, "control")); serr != nil {
			return fmt.Errorf("no store %q in %s", name, g.baseDir())
		}
	case errors.Is(err, shmstore.ErrExists):
		return fmt.Errorf("store %q already exists in %s", name, g.baseDir())
	}
	return err
}

// commandOptions is what each command's options struct provides, in the
// manner of bbolt's cmd/bbolt: flags, arguments, validation, then run.
type commandOptions interface {
	// addFlags registers the command's flags, the global ones included.
	addFlags(fs *flag.FlagSet)
	// setArgs takes the positional arguments left after the flags.
	setArgs(args []string) error
	// Validate checks the options before anything is opened.
	Validate() error
	// run executes the command, writing its output to w.
	run(w io.Writer) error
}

// command describes one subcommand.
type command struct {
	name    string
	args    string // the arguments after the name, for help
	summary string
	details string // more for 'shmctl help COMMAND', wrapped, or ""
	hidden  bool   // internal: not listed by help
	newOpts func(g globalOptions) commandOptions
}

// commandTable lists the commands in the order help shows them. It is a
// function, not a variable, because help refers back to it.
func commandTable() []*command {
	return []*command{
		{name: "create", args: "NAME", summary: "create a store",
			newOpts: func(g globalOptions) commandOptions { return &createOptions{globalOptions: g} }},
		{name: "ls", summary: "list the stores in the directory, with their size and attached processes",
			newOpts: func(g globalOptions) commandOptions { return &lsOptions{globalOptions: g} }},
		{name: "info", args: "NAME", summary: "describe a store: regions, bytes, size classes, processes",
			newOpts: func(g globalOptions) commandOptions { return &infoOptions{nameOnly{globalOptions: g}} }},
		{name: "check", args: "NAME", summary: "recover dead processes, then report every problem (exit 1 if any)",
			newOpts: func(g globalOptions) commandOptions { return &checkOptions{nameOnly{globalOptions: g}} }},
		{name: "rm", args: "NAME", summary: "remove a store (refused while live processes are attached)",
			newOpts: func(g globalOptions) commandOptions { return &rmOptions{globalOptions: g} }},
		{name: "get", args: "NAME PATH", summary: "print the value or subtree at PATH (keys from the root: accounts/alice; / for all) as JSON",
			details: getHelp,
			newOpts: func(g globalOptions) commandOptions { return &getOptions{globalOptions: g} }},
		{name: "dump", args: "NAME", summary: "write the whole store (the root Dict) as JSON or msgpack", details: dumpHelp,
			newOpts: func(g globalOptions) commandOptions { return &dumpOptions{globalOptions: g} }},
		{name: "load", args: "NAME FILE", summary: "set each top-level key of a JSON or msgpack object in FILE, in one transaction",
			details: loadHelp,
			newOpts: func(g globalOptions) commandOptions { return &loadOptions{globalOptions: g} }},
		{name: "watch", args: "NAME PATH", summary: "print the value at PATH now and after each commit that changes it, until interrupted",
			details: watchHelp,
			newOpts: func(g globalOptions) commandOptions { return &watchOptions{globalOptions: g} }},
		{name: "txns", args: "NAME", summary: "list the transaction slots: owner, state, locks, waits, commits, aborts, retired memory",
			details: txnsHelp,
			newOpts: func(g globalOptions) commandOptions { return &txnsOptions{nameOnly{globalOptions: g}} }},
		{name: "procs", args: "NAME", summary: "list the attached processes: pid, alive, dead or recovering, slots",
			details: procsHelp,
			newOpts: func(g globalOptions) commandOptions { return &procsOptions{nameOnly{globalOptions: g}} }},
		{name: "bench", args: "NAME", summary: "run the allocator churn workload in worker processes",
			newOpts: func(g globalOptions) commandOptions { return newBenchOptions(g) }},
		{name: "bank", args: "NAME", summary: "move money between accounts from worker processes, checking that the total never changes",
			details: bankHelp,
			newOpts: func(g globalOptions) commandOptions { return newBankOptions(g) }},
		{name: "help", args: "[COMMAND]", summary: "show help for shmctl or a command",
			newOpts: func(g globalOptions) commandOptions { return &helpOptions{globalOptions: g} }},
		{name: churnCommand, args: "NAME", summary: "one bench worker (internal)", hidden: true,
			newOpts: func(g globalOptions) commandOptions { return &churnOptions{globalOptions: g} }},
		{name: bankWorkerCommand, args: "NAME", summary: "one bank worker (internal)", hidden: true,
			newOpts: func(g globalOptions) commandOptions { return &bankWorkerOptions{globalOptions: g} }},
	}
}

// lookupCommand finds a command by name, or returns nil.
func lookupCommand(name string) *command {
	for _, c := range commandTable() {
		if c.name == name {
			return c
		}
	}
	return nil
}

// newFlagSet makes a flag set that reports errors instead of printing or
// exiting.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// dispatch parses the global flags, finds the command, parses its flags
// and arguments, validates them and runs it.
func dispatch(args []string, stdout io.Writer) error {
	var g globalOptions
	fs := newFlagSet("shmctl")
	g.addGlobalFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			writeMainHelp(stdout)
			return errHelpShown
		}
		return usagef("%v", err)
	}
	if fs.NArg() == 0 {
		return usagef("no command given; run 'shmctl help' for the list")
	}
	name := fs.Arg(0)
	cmd := lookupCommand(name)
	if cmd == nil {
		return usagef("unknown command %q; run 'shmctl help' for the list", name)
	}
	opts := cmd.newOpts(g)
	cfs := newFlagSet(name)
	opts.addFlags(cfs)
	pos, err := parseInterspersed(cfs, fs.Args()[1:])
	if errors.Is(err, flag.ErrHelp) {
		writeCommandHelp(stdout, cmd)
		return errHelpShown
	}
	if err != nil {
		return usagef("%s: %v", name, err)
	}
	if err := opts.setArgs(pos); err != nil {
		return usagef("%s: %v", name, err)
	}
	if err := opts.Validate(); err != nil {
		return usagef("%s: %v", name, err)
	}
	if err := opts.run(stdout); err != nil {
		if ue := (*usageError)(nil); errors.As(err, &ue) {
			return usagef("%s: %v", name, err)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments, which it returns in order. After "--"
// everything is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// storeNameArg takes the one positional argument, a store name, into dst.
func storeNameArg(dst *string, args []string) error {
	switch len(args) {
	case 0:
		return errors.New("missing store NAME")
	case 1:
		*dst = args[0]
		return nil
	}
	return fmt.Errorf("want one store NAME, got %d arguments (%s)", len(args), strings.Join(args, " "))
}

// validStoreName checks a store name with shm's rule, worded for the
// command line.
func validStoreName(name string) error {
	if shm.ValidName(name) != nil {
		return fmt.Errorf("bad store name %q: use 1 to 200 letters, digits, '.', '_' or '-', not starting with '.'", name)
	}
	return nil
}

// writeJSON writes v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newTable makes a tabwriter for aligned, space-separated columns. Rows
// are written with tabs between cells and flushed at the end.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}
