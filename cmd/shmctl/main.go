//go:build linux && (amd64 || arm64)

// Command shmctl creates, lists, inspects, checks, removes and benchmarks
// shmstore stores, and reads and writes what they hold.
//
//	shmctl [--dir DIR] [--json] COMMAND [FLAGS] [ARGS]
//
// Commands: create, ls, info, check, rm, get, watch, dump, load, put, take,
// txns, procs, bench, bank, completion, help. Every command takes --dir (the directory
// that holds stores; default $SHMSTORE_DIR, else /dev/shm/shmstore) and
// --json (machine-readable output with stable snake_case field names).
// Flags go anywhere on the line, before or after the command name and its
// arguments; "--" ends them. shmctl help lists the commands (exit 0);
// shmctl alone, a mistake, lists them on stderr (exit 2).
// cobra dispatches, parses the flags (pflag) and calls writeHelp for
// 'shmctl help COMMAND' and 'shmctl COMMAND --help'; 'shmctl completion
// SHELL' prints a completion script (commands, flags, store names).
//
// The directory that holds stores must exist when chosen with --dir or
// $SHMSTORE_DIR: ls says so if not (exit 1), and create makes only the
// store's own directory in it. The default one is made by the first
// create (in /dev/shm); ls lists nothing until then.
//
// Inspection (ls, info, txns, procs) opens stores read-only and never
// writes. get and dump attach, because a transaction needs a slot, and
// read in one View; load writes in one Update (values.go says how values
// map to JSON and msgpack); put and take use a Queue, one transaction per
// value or item (queue.go). Only create makes a store: the commands that
// write into one (load, put, take, bench, bank) need it to exist, and a
// missing one's error says how to make it. check attaches, recovers dead
// processes, then reports every problem it finds and exits 1 if there is
// any. Errors are one line on stderr, prefixed "shmctl: ": exit status 2
// for a mistake in the command line, 1 for a failure at run time.
package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/shm"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line (without the program name), writing
// results to stdout and the error, if any, as one line to stderr. It
// returns the exit status: 0 on success, 1 on a runtime error, 2 on a
// usage error, 130 for a wait (put, take) ended by Ctrl-C or SIGTERM.
// Tests call it in-process.
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
	if args == nil {
		args = []string{} // cobra reads os.Args when given nil
	}
	root := newRootCommand(stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err == nil {
		return 0
	}
	msg := err.Error()
	if cmd != nil && cmd != root {
		msg = strings.TrimPrefix(cmd.CommandPath(), root.Name()+" ") + ": " + msg
	}
	if errors.Is(err, errNoCommand) {
		return 2 // the list of commands is on stderr already
	}
	fmt.Fprintf(stderr, "shmctl: %s\n", oneLine(msg))
	if errors.Is(err, errInterrupted) {
		return 130 // as a shell reports a command ended by SIGINT
	}
	if re := (*runError)(nil); errors.As(err, &re) {
		return 1
	}
	return 2 // a usage error, ours or one that cobra or pflag found
}

// oneLine folds a multi-line message into one line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	s = strings.ReplaceAll(s, "\r", "")
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

// errNoCommand is the usage error of a command line without a command,
// for which the root wrote the list of commands to stderr: run adds no
// line of its own.
var errNoCommand = errors.New("no command")

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

// Error returns the message.
func (e *usageError) Error() string { return e.msg }

// usagef makes a usageError.
func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// flagError is the usage error for what pflag refused while parsing the
// flags of any command (cobra hands every command's to the root's flag
// error function). pflag's own values of numbers, durations and bools
// report strconv's or time's message ("strconv.ParseInt: parsing "abc":
// invalid syntax"); that one is replaced by what the flag wants. Values
// of shmctl's own types (sizes, modes, --int-key) say so themselves.
func flagError(err error) error {
	ive := (*pflag.InvalidValueError)(nil)
	if !errors.As(err, &ive) {
		return &usageError{err.Error()}
	}
	f := ive.GetFlag()
	ne := (*strconv.NumError)(nil)
	isNum := errors.As(ive, &ne)
	want := ""
	switch typ := f.Value.Type(); {
	case isNum && (typ == "int" || typ == "int64") && errors.Is(ne, strconv.ErrRange):
		want = fmt.Sprintf("want an integer from %d to %d", math.MinInt64, math.MaxInt64)
	case isNum && (typ == "int" || typ == "int64"):
		want = "want an integer"
	case isNum && typ == "uint64":
		want = fmt.Sprintf("want an integer from 0 to %d", uint64(math.MaxUint64))
	case isNum && typ == "bool":
		want = "want true or false"
	case typ == "duration":
		want = "want a duration with a unit, such as 500ms, 5s or 1m"
	default:
		return &usageError{err.Error()}
	}
	return usagef("invalid argument %q for \"--%s\" flag: %s", ive.GetValue(), f.Name, want)
}

// runError is a failure of a command at run time: exit status 1. Every
// other error (a usageError, or what cobra and pflag refuse) is a mistake
// in the command line: exit status 2.
type runError struct{ err error }

// Error returns the command's error.
func (e *runError) Error() string { return e.err.Error() }

// Unwrap returns the command's error.
func (e *runError) Unwrap() error { return e.err }

// globalOptions are the flags every command takes.
type globalOptions struct {
	// Dir is the directory that holds stores; empty means $SHMSTORE_DIR,
	// else shm.DefaultDir.
	Dir string
	// JSON selects machine-readable output.
	JSON bool
}

// addGlobalFlags registers --dir and --json on fs (the root command's
// persistent flags, which every command inherits).
func (g *globalOptions) addGlobalFlags(fs *pflag.FlagSet) {
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

// dirFrom says where the directory that holds stores came from, for
// messages: "--dir", "$SHMSTORE_DIR", or "" for the default.
func (g *globalOptions) dirFrom() string {
	switch {
	case g.Dir != "":
		return "--dir"
	case os.Getenv("SHMSTORE_DIR") != "":
		return "$SHMSTORE_DIR"
	}
	return ""
}

// statDir reports whether the directory that holds stores exists; it is
// an error for it to be something else than a directory, or for it not
// to be looked at.
func (g *globalOptions) statDir() (bool, error) {
	base := g.baseDir()
	fi, err := os.Stat(base)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case !fi.IsDir():
		return false, fmt.Errorf("%s (%s) is not a directory", base, cmp.Or(g.dirFrom(), "the default"))
	}
	return true, nil
}

// global returns the options' global flags, for the command to fill in
// from the root's before it runs (every options struct embeds them).
func (g *globalOptions) global() *globalOptions { return g }

// nameOnly is the options of a command that takes a store name and only
// the global flags (check, info, procs, txns).
type nameOnly struct {
	globalOptions
	name string
}

// addFlags registers nothing: the command has no flags of its own.
func (o *nameOnly) addFlags(*pflag.FlagSet) {}

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

// storeError rewords an error from opening or removing store name for
// people: a missing or existing store is said plainly; anything else is
// passed on.
func (g *globalOptions) storeError(name string, err error) error {
	switch {
	case errors.Is(err, shmstore.ErrNotFound):
		if _, serr := os.Stat(filepath.Join(g.baseDir(), name, "control")); serr != nil {
			return &noStoreError{name: name, dir: g.baseDir()}
		}
	case errors.Is(err, shmstore.ErrExists):
		return fmt.Errorf("store %q already exists in %s", name, g.baseDir())
	}
	return err
}

// noStoreError is storeError's error for a store that does not exist (a
// command that writes adds how to make it: missingStoreHint).
type noStoreError struct{ name, dir string }

// Error says which store is missing from which directory.
func (e *noStoreError) Error() string { return fmt.Sprintf("no store %q in %s", e.name, e.dir) }

// createCommand is the command line that creates store name in the
// directory these options select (--dir, if that is how it was chosen).
func (g *globalOptions) createCommand(name string) string {
	if g.dirFrom() == "--dir" {
		return fmt.Sprintf("shmctl --dir %s create %s", g.baseDir(), name)
	}
	return "shmctl create " + name
}

// missingStoreHint adds to a noStoreError from command, which writes into
// an existing store and makes none, how to make the store; other errors
// are returned as they are.
func (g *globalOptions) missingStoreHint(command string, err error) error {
	nse := (*noStoreError)(nil)
	if !errors.As(err, &nse) {
		return err
	}
	return fmt.Errorf("%w; %s writes into an existing store: make it first with '%s'", err, command, g.createCommand(nse.name))
}

// commandOptions is what each command's options struct provides, in the
// manner of bbolt's cmd/bbolt: flags, arguments, validation, then run.
type commandOptions interface {
	// global returns the embedded global flags.
	global() *globalOptions
	// addFlags registers the command's own flags.
	addFlags(fs *pflag.FlagSet)
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
	// writes: the command writes into an existing store and makes none
	// (create's flags choose how one is made, and a mistyped NAME should
	// not make a store). Its help says the store must exist, and a
	// missing one's error says how to make it (see missingStoreHint).
	writes  bool
	newOpts func(g globalOptions) commandOptions
}

// commandTable lists the commands in the order help shows them.
func commandTable() []*command {
	return []*command{
		{name: "create", args: "NAME", summary: "create a store",
			newOpts: func(g globalOptions) commandOptions { return &createOptions{globalOptions: g} }},
		{name: "ls", summary: "list the stores in the directory, with their size and attached processes", details: lsHelp,
			newOpts: func(g globalOptions) commandOptions { return &lsOptions{globalOptions: g} }},
		{name: "info", args: "NAME", summary: "describe a store: regions, bytes, size classes, processes",
			newOpts: func(g globalOptions) commandOptions { return &infoOptions{nameOnly{globalOptions: g}} }},
		{name: "check", args: "NAME", summary: "recover dead processes, then report every problem (exit 1 if any)",
			newOpts: func(g globalOptions) commandOptions { return &checkOptions{nameOnly{globalOptions: g}} }},
		{name: "rm", args: "NAME", summary: "remove a store (refused while live processes are attached)",
			newOpts: func(g globalOptions) commandOptions { return &rmOptions{globalOptions: g} }},
		{name: "get", args: "NAME PATH", summary: "print the value or subtree at PATH (keys from the root: accounts/alice; / for all) as JSON or msgpack",
			details: getHelp,
			newOpts: func(g globalOptions) commandOptions { return &getOptions{globalOptions: g} }},
		{name: "dump", args: "NAME", summary: "write the whole store (the root Dict) as JSON or msgpack", details: dumpHelp,
			newOpts: func(g globalOptions) commandOptions { return &dumpOptions{globalOptions: g} }},
		{name: "load", args: "NAME FILE", summary: "set each top-level key of a JSON or msgpack object in FILE, in one transaction",
			details: loadHelp, writes: true,
			newOpts: func(g globalOptions) commandOptions { return &loadOptions{globalOptions: g} }},
		{name: "watch", args: "NAME PATH", summary: "print the value at PATH now and after each commit that changes it, until interrupted",
			details: watchHelp,
			newOpts: func(g globalOptions) commandOptions { return &watchOptions{globalOptions: g} }},
		{name: "put", args: "NAME PATH VALUE...", summary: "append each VALUE (JSON, or a String with --string) to the Queue at PATH, waiting while it is full",
			details: putHelp, writes: true,
			newOpts: func(g globalOptions) commandOptions {
				return &putOptions{queueOptions: queueOptions{globalOptions: g, command: "put"}}
			}},
		{name: "take", args: "NAME PATH", summary: "take items from the Queue at PATH, waiting while it is empty, and print each as a line of JSON",
			details: takeHelp, writes: true,
			newOpts: func(g globalOptions) commandOptions {
				return &takeOptions{queueOptions: queueOptions{globalOptions: g, command: "take"}}
			}},
		{name: "txns", args: "NAME", summary: "list the transaction slots: owner, state, locks, waits, commits, aborts, retired memory",
			details: txnsHelp,
			newOpts: func(g globalOptions) commandOptions { return &txnsOptions{nameOnly{globalOptions: g}} }},
		{name: "procs", args: "NAME", summary: "list the attached processes: pid, alive, dead or recovering, slots",
			details: procsHelp,
			newOpts: func(g globalOptions) commandOptions { return &procsOptions{nameOnly{globalOptions: g}} }},
		{name: "bench", args: "NAME", summary: "run the allocator churn workload in worker processes", writes: true,
			newOpts: func(g globalOptions) commandOptions { return newBenchOptions(g) }},
		{name: "bank", args: "NAME", summary: "move money between accounts from worker processes, checking that the total never changes",
			details: bankHelp, writes: true,
			newOpts: func(g globalOptions) commandOptions { return newBankOptions(g) }},
		{name: churnCommand, args: "NAME", summary: "one bench worker (internal)", hidden: true,
			newOpts: func(g globalOptions) commandOptions { return &churnOptions{globalOptions: g} }},
		{name: bankWorkerCommand, args: "NAME", summary: "one bank worker (internal)", hidden: true,
			newOpts: func(g globalOptions) commandOptions { return &bankWorkerOptions{globalOptions: g} }},
	}
}

func init() {
	// Commands are listed in commandTable's order, then completion and
	// help.
	cobra.EnableCommandSorting = false
}

// newRootCommand builds the command tree for one run: cobra dispatches to
// the commands, parses the flags (pflag: GNU style, anywhere on the line,
// "--" ends them) and shows help through writeHelp. Output goes to stdout;
// errors are returned, not printed (run prints them).
func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "shmctl",
		Short: "create, inspect, check, remove and benchmark shmstore stores, and read and write what they hold",
		// No command: the list of commands, as 'shmctl help' prints it,
		// but on stderr, and exit status 2 (a mistake in the command
		// line; --help and help are asked for, exit 0).
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return unknownCommand(cmd, args[0])
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			writeHelp(cmd.ErrOrStderr(), cmd)
			return errNoCommand
		},
		SilenceErrors:     true,
		SilenceUsage:      true,
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	g.addGlobalFlags(root.PersistentFlags())
	_ = root.MarkPersistentFlagDirname("dir")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return flagError(err) })
	root.SetHelpFunc(func(cmd *cobra.Command, _ []string) { writeHelp(cmd.OutOrStdout(), cmd) })
	for _, c := range commandTable() {
		root.AddCommand(c.cobraCommand(g))
	}
	root.SuggestionsMinimumDistance = 2
	// cobra's completion command, made now to be worded and listed
	// before help; its subcommands print the scripts.
	root.InitDefaultCompletionCmd()
	if comp, _, err := root.Find([]string{"completion"}); err == nil && comp != root {
		comp.Short = "print a script for bash, zsh, fish or powershell that completes commands, flags and store names"
		comp.RunE = func(cmd *cobra.Command, _ []string) error {
			writeHelp(cmd.OutOrStdout(), cmd)
			return nil
		}
	}
	root.SetHelpCommand(newHelpCommand())
	return root
}

// cobraCommand makes the cobra command that runs c: its flags go into a
// fresh options struct, the global ones into g, which the options take
// when the command runs.
func (c *command) cobraCommand(g *globalOptions) *cobra.Command {
	opts := c.newOpts(globalOptions{})
	long := c.details
	if c.writes {
		long = fmt.Sprintf("\nThe store must exist: %s makes none (shmctl create NAME does).%s", c.name, c.details)
	}
	cmd := &cobra.Command{
		Use:    strings.TrimSpace(c.name + " " + c.args),
		Short:  c.summary,
		Long:   long,
		Hidden: c.hidden,
		RunE: func(cmd *cobra.Command, args []string) error {
			*opts.global() = *g
			if err := opts.setArgs(args); err != nil {
				return &usageError{err.Error()}
			}
			if err := opts.Validate(); err != nil {
				return &usageError{err.Error()}
			}
			err := opts.run(cmd.OutOrStdout())
			if c.writes {
				err = g.missingStoreHint(c.name, err)
			}
			if ue := (*usageError)(nil); err == nil || errors.As(err, &ue) {
				return err
			}
			return &runError{err}
		},
	}
	if strings.HasPrefix(c.args, "NAME") {
		cmd.ValidArgsFunction = g.completeStoreName
	}
	opts.addFlags(cmd.Flags())
	return cmd
}

// completeStoreName completes a command's first argument with the names
// of the stores in the directory (--dir is parsed by then).
// A FILE after it is completed as a file name; anything else is not.
func (g *globalOptions) completeStoreName(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
	if len(args) > 0 {
		if strings.Contains(cmd.Use, "FILE") {
			return nil, cobra.ShellCompDirectiveDefault
		}
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	names, err := shmstore.ListStores(g.storeOptions())
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// unknownCommand is the usage error for a name that is not one of cmd's
// commands, with cobra's suggestions.
func unknownCommand(cmd *cobra.Command, name string) error {
	hint := ""
	if s := cmd.SuggestionsFor(name); len(s) > 0 {
		hint = " (did you mean " + strings.Join(s, " or ") + "?)"
	}
	help := strings.Replace(cmd.CommandPath(), "shmctl", "shmctl help", 1)
	return usagef("unknown command %q%s; run '%s' for the list", name, hint, help)
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
