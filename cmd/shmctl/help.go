//go:build linux && (amd64 || arm64)

package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// helpOptions are the arguments of `shmctl help [COMMAND]`.
type helpOptions struct {
	globalOptions
	topic string
}

// addFlags registers the global flags (help has none of its own).
func (o *helpOptions) addFlags(fs *flag.FlagSet) { o.addGlobalFlags(fs) }

// setArgs takes the optional command name.
func (o *helpOptions) setArgs(args []string) error {
	switch len(args) {
	case 0:
	case 1:
		o.topic = args[0]
	default:
		return fmt.Errorf("want at most one COMMAND, got %d arguments", len(args))
	}
	return nil
}

// Validate checks that the topic names a command.
func (o *helpOptions) Validate() error {
	if o.topic != "" && lookupCommand(o.topic) == nil {
		return fmt.Errorf("unknown command %q; run 'shmctl help' for the list", o.topic)
	}
	return nil
}

// run prints the help.
func (o *helpOptions) run(w io.Writer) error {
	if o.topic == "" {
		writeMainHelp(w)
	} else {
		writeCommandHelp(w, lookupCommand(o.topic))
	}
	return nil
}

// writeMainHelp prints the list of commands and the global flags.
func writeMainHelp(w io.Writer) {
	fmt.Fprint(w, `shmctl creates, inspects, checks, removes and benchmarks shmstore stores,
and reads and writes what they hold.

Usage:
  shmctl [--dir DIR] [--json] COMMAND [FLAGS] [ARGS]

Commands:
`)
	t := newTable(w)
	for _, c := range commandTable() {
		if !c.hidden {
			fmt.Fprintf(t, "  %s %s\t%s\n", c.name, c.args, c.summary)
		}
	}
	_ = t.Flush()
	fmt.Fprint(w, "\nGlobal flags (before or after the command):\n")
	var g globalOptions
	fs := newFlagSet("shmctl")
	g.addGlobalFlags(fs)
	writeFlags(w, fs)
	fmt.Fprint(w, `
Sizes take binary units: 4096, 512KiB, 64MiB (or 64M), 1GiB (or 1G).
Exit status: 0 success, 1 runtime error or problems found, 2 usage error.
Run 'shmctl help COMMAND' for a command's flags.
`)
}

// writeCommandHelp prints a command's synopsis and flags.
func writeCommandHelp(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: shmctl %s [FLAGS] %s\n\n%s.\n\n", c.name, c.args, upperFirst(c.summary))
	if c.details != "" {
		fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(c.details))
	}
	fmt.Fprint(w, "Flags:\n")
	fs := newFlagSet(c.name)
	c.newOpts(globalOptions{}).addFlags(fs)
	writeFlags(w, fs)
}

// writeFlags lists the flags of fs, GNU style, aligned.
func writeFlags(w io.Writer, fs *flag.FlagSet) {
	t := newTable(w)
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		if arg != "" {
			arg = " " + strings.ToUpper(arg)
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(t, "  --%s%s\t%s%s\n", f.Name, arg, usage, def)
	})
	_ = t.Flush()
}

// upperFirst capitalizes the first letter of s.
func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// jsonRulesHelp says how store values look in JSON (see values.go).
const jsonRulesHelp = `
In JSON, a Dict key that is not a String is written as Int 5 -> "5",
Bool -> "true", None -> "None", Bytes -> b"\x00ab" (Go-quoted); two keys
of one Dict that would read alike (Int 5 and String "5") are refused.
Bytes values are base64 strings. A Float always has a '.' or an exponent
(1.0, not 1); NaN and Inf are refused. A Counter is written as its value,
a Record as an object of its fields.
`

// Details of the commands, for 'shmctl help COMMAND'.
const (
	getHelp = `
PATH is a chain of String keys from the root Dict, separated by '/':
accounts/alice is key "alice" of the Dict under key "accounts"; / is the
whole store. get reads in one transaction and changes no data (it
attaches, though: a transaction needs a slot, and attaching recovers dead
processes). The output is always JSON, indented.
` + jsonRulesHelp

	dumpHelp = `
The root Dict and everything under it, read in one transaction (one
consistent snapshot), encoded whole, then written to standard output or
to FILE. msgpack keeps what JSON cannot: Bytes (as bin) and keys of every
kind. shmctl load reads a dump back. With --out, dump says what it wrote
(with --json, as an object). Like get, it attaches and changes no data.
` + jsonRulesHelp

	loadHelp = `
FILE (- for standard input) holds one object. Each of its top-level keys
is set, replacing what was there, in the root Dict, or in the Dict at
--path (made if missing), all in one transaction: all of them or, on an
error, none. Objects become Dicts, arrays Lists. A JSON number without
'.' or exponent that fits 64 bits becomes an Int, any other a Float.
A dump loads back as it was, except: Counters become Ints and Records
Dicts; from JSON, Bytes become Strings (their base64) and non-String
keys String keys.
`

	watchHelp = `
PATH is as for get. watch prints one line at once (the value now, as
compact JSON, or (absent)) and one more after each commit that changes
the value or anything under it, until Ctrl-C (or --count lines). Changes
that come faster than it prints are seen as one, the latest. Between
changes it sleeps in a transaction's Retry: no polling, nothing held.
With --json each line is an object: time, absent, value.
`

	txnsHelp = `
Every slot that has an owner or holds retired memory, read without locks
(a snapshot that may be mid-change), and the global version clock (the
version of the last commit). Columns:
  SLOT             the slot's index
  PROC, PID        the owner's process-table entry and pid (- for none)
  ALIVE            whether the owner is alive (a dead one awaits recovery)
  LEASED           whether a goroutine of the owner holds the slot now
  STATE            idle; active (running or taking its locks); committing
                   (redo record complete: applied even if the owner dies);
                   releasing (applied, unlocking)
  RV               the running transaction's snapshot version
  AGE, ATTEMPTS    since the running transaction's first attempt; attempts
                   so far (a conflict runs it again)
  LOCKS            lock words held by the commit under way
  WAITS ON         the address of the lock word it waits for
  COMMITS, ABORTS  since the slot was made, over all its owners
  RETIRED, OLDEST  retired entries (memory that commits unlinked, freed
                   once no older snapshot can read it) the slot holds
                   back, and the oldest epoch among them
txns opens the store read-only and writes nothing.
`

	procsHelp = `
The used entries of the process table: index, pid, state (alive; dead:
not yet recovered; recovering), when it attached and for how long, and
the slots it owns. procs opens the store read-only, so it does not list
itself; the next process to attach recovers the dead.
`

	bankHelp = `
The Dict "accounts" of the root holds --accounts Ints (acct-00000, ...);
bank makes them, each with --initial, if the Dict is missing or empty,
and otherwise takes the total they hold. --procs worker processes (this
program, re-executed) then run transactions for --duration, each reading
two random balances and moving a random amount from 1 to --initial when
the source holds it. Every --interval, bank reads all balances in one
View and prints their total, with the workers' commits and aborts per
second from their slots' counters; it reads once more after the workers
end. Every total must be the same: if one is not, bank exits 1. Ctrl-C
stops the workers between transactions, and bank checks as usual.
`
)
