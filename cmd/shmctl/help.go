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
	fmt.Fprint(w, `shmctl creates, inspects, checks, removes and benchmarks shmstore stores.

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
	fmt.Fprintf(w, "Usage: shmctl %s [FLAGS] %s\n\n%s.\n\nFlags:\n", c.name, c.args, upperFirst(c.summary))
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
