//go:build linux && (amd64 || arm64)

package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// newHelpCommand makes 'shmctl help [COMMAND]', which replaces cobra's
// own: an unknown COMMAND is a usage error, not the list of commands.
func newHelpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "help [COMMAND]",
		Short: "show help for shmctl or a command",
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			target, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 {
				return unknownCommand(root, strings.Join(args, " "))
			}
			writeHelp(cmd.OutOrStdout(), target)
			return nil
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var names []cobra.Completion
			for _, c := range cmd.Root().Commands() {
				if c.IsAvailableCommand() {
					names = append(names, cobra.CompletionWithDesc(c.Name(), c.Short))
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
	}
}

// writeHelp is every command's help (cobra's help function): the list of
// commands for the root, else the command's synopsis and flags.
func writeHelp(w io.Writer, cmd *cobra.Command) {
	if !cmd.HasParent() {
		writeMainHelp(w, cmd)
	} else {
		writeCommandHelp(w, cmd)
	}
}

// writeMainHelp prints the list of commands and the global flags.
func writeMainHelp(w io.Writer, root *cobra.Command) {
	fmt.Fprint(w, `shmctl creates, inspects, checks, removes and benchmarks shmstore stores,
and reads and writes what they hold.

Usage:
  shmctl [--dir DIR] [--json] COMMAND [FLAGS] [ARGS]

Commands:
`)
	writeCommands(w, root)
	fmt.Fprint(w, "\nGlobal flags (before or after the command):\n")
	writeFlags(w, root.PersistentFlags())
	fmt.Fprint(w, `
Flags and arguments go in any order; after "--" everything is an argument.
Sizes take binary units: 4096, 512KiB, 64MiB (or 64M), 1GiB (or 1G).
Exit status: 0 success, 1 runtime error or problems found, 2 usage error,
130 a wait (put, take) ended by Ctrl-C or SIGTERM.
'shmctl help' prints this list; shmctl alone prints it to stderr (exit 2).
Run 'shmctl help COMMAND' or 'shmctl COMMAND --help' for a command's flags.
`)
}

// writeCommands lists the commands under cmd that help shows, with their
// arguments and summaries.
func writeCommands(w io.Writer, cmd *cobra.Command) {
	t := newTable(w)
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() || c.Name() == "help" {
			fmt.Fprintf(t, "  %s\t%s\n", c.Use, c.Short)
		}
	}
	_ = t.Flush()
}

// writeCommandHelp prints a command's synopsis and flags.
func writeCommandHelp(w io.Writer, c *cobra.Command) {
	args := strings.TrimSpace(strings.TrimPrefix(c.Use, c.Name()))
	if c.HasAvailableSubCommands() {
		args = "COMMAND"
	}
	usage := c.CommandPath() + " [FLAGS]"
	if args != "" {
		usage += " " + args
	}
	fmt.Fprintf(w, "Usage: %s\n\n%s.\n\n", usage, upperFirst(strings.TrimSuffix(c.Short, ".")))
	if d := strings.TrimSpace(c.Long); d != "" {
		fmt.Fprintf(w, "%s\n\n", d)
	}
	if c.HasAvailableSubCommands() {
		fmt.Fprint(w, "Commands:\n")
		writeCommands(w, c)
		fmt.Fprint(w, "\n")
	}
	fmt.Fprint(w, "Flags:\n")
	fs := pflag.NewFlagSet(c.Name(), pflag.ContinueOnError)
	fs.AddFlagSet(c.LocalFlags())
	fs.AddFlagSet(c.InheritedFlags())
	writeFlags(w, fs)
}

// writeFlags lists the flags of fs, GNU style, aligned; not --help, which
// every command takes.
func writeFlags(w io.Writer, fs *pflag.FlagSet) {
	t := newTable(w)
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" || f.Hidden {
			return
		}
		arg, usage := pflag.UnquoteUsage(f)
		if arg != "" {
			arg = " " + strings.ToUpper(arg)
		}
		def := ""
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "false" {
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
whole store; an empty key (a//b) is a mistake. A key that PATH cannot
say goes in a flag, appended to PATH's keys in the order given (without
PATH, to the root's): --key K is the String K as it is, '/' and all;
--int-key N is the Int N.
  shmctl get NAME --key a/b            key "a/b" of the root
  shmctl get NAME scores --int-key 5   Int key 5 of the Dict "scores"
Keys of other kinds (Bool, None, Bytes) are reached through their Dict.

get reads in one transaction and changes no data (it attaches, though:
a transaction needs a slot, and attaching recovers dead processes). The
value is written whole, as indented JSON or, with --format msgpack, as
msgpack (which keeps Bytes and keys of every kind), to standard output
or to --out FILE. msgpack, being binary, is not written to a terminal:
give --out or redirect standard output.
` + jsonRulesHelp

	dumpHelp = `
The root Dict and everything under it, read in one transaction (one
consistent snapshot), encoded whole, then written to standard output or
to FILE. msgpack keeps what JSON cannot: Bytes (as bin) and keys of every
kind; it is not written to a terminal (give --out). shmctl load reads a
dump back, as data: Counters, Records and Queues come back as Ints,
Dicts and Lists. With --out, dump says what it wrote (with --json, as an
object). Like get, it attaches and changes no data.
` + jsonRulesHelp

	loadHelp = `
FILE (- for standard input) holds one object. Each of its top-level keys
is set, replacing what was there, in the root Dict, or in the Dict at
--path (made if missing), all in one transaction: all of them or, on an
error, none. Objects become Dicts, arrays Lists. A JSON number without
'.' or exponent becomes an Int (one beyond int64 is refused: write it
as 1e20 or as a string), any other a Float. A key that is twice in one
object is refused, with its line (JSON decoders disagree on which one
wins). A file of the other format than --format says is said to be so.
A dump loads back as it was, except: Counters become Ints, Records
Dicts (their class name lost) and Queues Lists (their bound lost); from
JSON, Bytes become Strings (their base64) and non-String keys String
keys.
`

	watchHelp = `
PATH, --key and --int-key are as for get. watch prints one line at once (the value now, as
compact JSON, or (absent)) and one more after each commit that changes
the value or anything under it, until Ctrl-C (or --count lines). Changes
that come faster than it prints are seen as one, the latest. Between
changes it sleeps in a transaction's Retry: no polling, nothing held.
With --json each line is an object: time, absent, value.
`

	putHelp = `
PATH, --key and --int-key name the Queue as they name a value for get
(PATH is required: / when --key gives every key). The Queue, and Dicts
on the way, are made if missing: unbounded, or holding at most
--maxsize items. Each VALUE is one JSON value, read as load reads a
file: objects become Dicts, arrays Lists, 7 an Int, 7.0 a Float; a
String needs JSON's quotes ('"a.csv"'), or --string takes every VALUE
as a String as it is. Each value is put in its own transaction, in
order, waiting while the Queue is full (at most --timeout each), so
consumers may take the first before the last is in. Python's
Queue.get, Go's Queue.Get and shmctl take get them.
A negative number would read as a flag: put values after "--".
  shmctl put NAME jobs '{"id": 7, "file": "a.csv"}' 8 null
  shmctl put NAME jobs --string a.csv b.csv --maxsize 100
  shmctl put NAME deltas -- -5 3
`

	takeHelp = `
PATH, --key and --int-key name the Queue as for put (made if missing,
as put makes it). take takes --count items (default 1), each in its own
transaction, waiting while the Queue is empty (sleeping in Retry: no
polling, nothing held), and prints each, once taken, as one line of
compact JSON by get's rules (below): Bytes are base64 Strings, which read
like any String. With --json, Bytes are tagged instead, so that they
read apart: b"hi" is {"$bytes":"aGk="} (the base64 of the Bytes), at any
depth; a Dict whose only key is "$bytes" then has no JSON form. An item
with no JSON form (NaN, say) is left in the Queue, and take fails.
PATH must be a Queue (or missing): anything else is an error that says
what PATH is, and takes nothing; put's likewise.
--timeout bounds each wait: then take stops, exit 1 if fewer than
--count items came. --count 0 takes until a wait of --timeout finds
nothing, or until Ctrl-C, and then exits 0. An item is taken when its
transaction commits and printed after: a take killed in between loses
it (a program that takes and records in one transaction loses nothing).
  shmctl take NAME jobs --count 0 --timeout 1s | jq -r .file
  shmctl take NAME blobs --json | jq -r '."$bytes" // empty' | base64 -d
` + jsonRulesHelp

	lsHelp = `
Each store is opened read-only: ls writes nothing. A store that cannot be
opened is listed with the reason. A directory given with --dir or
$SHMSTORE_DIR must exist (exit 1 if not); the default one is made by the
first create, and until then ls lists nothing.
`

	txnsHelp = `
Every slot that has an owner or holds retired memory, read without locks
(a snapshot that may be mid-change), and the global version clock (where
every snapshot starts; commits stamp versions past it, and move it only
when they retire memory). Columns:
  SLOT             the slot's index
  PROC, PID        the owner's process-table entry and pid (- for none)
  ALIVE            whether the owner is alive (a dead one awaits recovery)
  LEASED           whether a goroutine of the owner holds the slot now
  STATE            the commit's step: idle (no commit under way, also while
                   a transaction's function runs: RV and AGE say that one
                   runs); active (taking its locks); committing (redo
                   record complete: applied even if the owner dies);
                   releasing (applied, unlocking)
  RV               the running transaction's snapshot version (- for none)
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
