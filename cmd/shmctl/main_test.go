//go:build linux && (amd64 || arm64)

package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shmstore/shmstore/internal/layers"
	"github.com/shmstore/shmstore/internal/proctest"
	"github.com/shmstore/shmstore/shm/shmtest"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
)

// Environment of the helper process the tests start (see holdStore).
const (
	dirEnv   = "SHMCTL_TEST_DIR"
	storeEnv = "SHMCTL_TEST_STORE"
)

// TestMain lets this test binary stand in for shmctl's own processes: a
// bench or bank worker (bench and bank, run in-process, re-execute
// os.Executable), a fleet's test worker and a helper that attaches and
// waits to be killed.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && (os.Args[1] == churnCommand || os.Args[1] == bankWorkerCommand) {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == fleetTestCommand {
		os.Exit(fleetTestWorker(os.Args[2:]))
	}
	proctest.Register("hold", holdStore)
	proctest.Main(m)
}

// holdStore attaches to the store named in the environment, leases a slot,
// allocates without handing the blocks over, says "ready" and waits for
// standard input to close (or to be killed).
func holdStore() int {
	st, err := shmstore.Open(os.Getenv(storeEnv), shmstore.Options{Dir: os.Getenv(dirEnv), Create: shmstore.MustExist})
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 1
	}
	h, err := layers.Of(st).Alloc.Lease()
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 1
	}
	for _, n := range []int{100, 5000, 100 << 10} {
		if _, _, err := h.Alloc(n); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			return 1
		}
	}
	os.Stdout.WriteString("ready\n")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// testDir is shmtest.Dir: a tmpfs directory removed when the test ends.
func testDir(t *testing.T) string { return shmtest.Dir(t) }

// result is what one run of shmctl produced.
type result struct {
	code           int
	stdout, stderr string
}

// shmctl runs a command line in-process.
func shmctl(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return result{code, out.String(), errb.String()}
}

// mustRun runs a command line that must succeed and returns its output.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	r := shmctl(t, args...)
	require.Equal(t, 0, r.code, "shmctl %s: stderr %q", strings.Join(args, " "), r.stderr)
	require.Empty(t, r.stderr)
	return r.stdout
}

// runJSON runs a command line that must succeed with --json and decodes
// its output into v.
func runJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := mustRun(t, append(args, "--json")...)
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(v), "output %q", out)
}

// requireOneLineError checks a failure: the exit status, nothing on
// stdout, and one line on stderr, prefixed, mentioning each of want.
func requireOneLineError(t *testing.T, r result, code int, want ...string) {
	t.Helper()
	require.Equal(t, code, r.code, "stderr %q", r.stderr)
	require.Empty(t, r.stdout)
	require.True(t, strings.HasPrefix(r.stderr, "shmctl: "), "stderr %q", r.stderr)
	require.Equal(t, 1, strings.Count(r.stderr, "\n"), "one line: %q", r.stderr)
	require.True(t, strings.HasSuffix(r.stderr, "\n"))
	for _, w := range want {
		require.Contains(t, r.stderr, w)
	}
	require.NotContains(t, r.stderr, "goroutine")
	require.NotContains(t, r.stderr, "Usage")
}

// createStore creates a small store for a test.
func createStore(t *testing.T, dir, name string) {
	t.Helper()
	mustRun(t, "--dir", dir, "create", name, "--region-size", "1MiB", "--max-size", "16MiB")
}

// openAttached attaches the test process to a store; closed at cleanup.
func openAttached(t *testing.T, dir, name string) *shmstore.Store {
	t.Helper()
	st, err := shmstore.Open(name, shmstore.Options{Dir: dir, Create: shmstore.MustExist})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	attachedMu.Lock()
	attached[t] = append(attached[t], st)
	attachedMu.Unlock()
	t.Cleanup(func() {
		attachedMu.Lock()
		delete(attached, t)
		attachedMu.Unlock()
	})
	return st
}

// attached holds the stores each test opened with openAttached, for
// fingerprint to wait until they are idle.
var (
	attachedMu sync.Mutex
	attached   = map[testing.TB][]*shmstore.Store{}
)

// settle waits (up to 10 s) until the engines of the stores t opened with
// openAttached have stopped their tickers: 200 ms after a process's last
// transaction, its ticker hands back what its idle slots' heaps hold (a
// write to the store) and stops; after that the process writes nothing
// until its next transaction.
func settle(t testing.TB) {
	t.Helper()
	attachedMu.Lock()
	sts := append([]*shmstore.Store(nil), attached[t]...)
	attachedMu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for _, st := range sts {
		for layers.Of(st).Engine.Ticking() {
			if time.Now().After(deadline) {
				t.Fatalf("the test's own store engine still ticks after 10 s")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// startHolder starts a helper process attached to the store, holding
// unhanded allocations, and returns once it is ready. The harness kills
// it (by pid) at cleanup if the test has not.
func startHolder(t *testing.T, dir, name string) *proctest.Proc {
	t.Helper()
	p := proctest.Start(t, "hold", proctest.Options{Env: []string{dirEnv + "=" + dir, storeEnv + "=" + name}})
	require.Equal(t, "ready", p.Line())
	return p
}

// fingerprint hashes every file of a store with its size and mtime, to
// show that a command wrote nothing (once this test's own attached stores
// are idle: settle).
func fingerprint(t *testing.T, dir string) map[string]string {
	t.Helper()
	settle(t)
	fp := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		v := fi.Mode().String() + " " + fi.ModTime().Format(time.RFC3339Nano)
		if d.Type().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			v += " " + hex.EncodeToString(sum[:])
		}
		fp[path] = v
		return nil
	})
	require.NoError(t, err)
	return fp
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "s")
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"frob"}, []string{`unknown command "frob"`}},
		{[]string{"chek", "s"}, []string{`unknown command "chek" (did you mean check?)`}},
		{[]string{"--dir"}, []string{"flag needs an argument: --dir"}},
		{[]string{"completion", "tcsh"}, []string{"completion:", `unknown command "tcsh"`}},
		{[]string{"--bogus", "ls"}, []string{"-bogus"}},
		{[]string{"--dir", dir, "ls", "--bogus"}, []string{"ls:", "-bogus"}},
		{[]string{"--dir", dir, "ls", "extra"}, []string{"ls:", "no arguments"}},
		{[]string{"--dir", dir, "info"}, []string{"info:", "missing store NAME"}},
		{[]string{"--dir", dir, "info", "a", "b"}, []string{"info:", "one store NAME"}},
		{[]string{"--dir", dir, "info", "a/b"}, []string{`bad store name "a/b"`}},
		{[]string{"--dir", dir, "check", ".hidden"}, []string{`bad store name ".hidden"`}},
		{[]string{"--dir", dir, "create", "x", "--region-size", "12XB"}, []string{"create:", `bad size "12XB"`}},
		{[]string{"--dir", dir, "create", "x", "--max-size", "64MB"}, []string{"ambiguous"}},
		{[]string{"--dir", dir, "create", "x", "--region-size", "3000000"}, []string{"region size 3000000"}},
		{[]string{"--dir", dir, "create", "x", "--region-size", "8MiB", "--max-size", "4MiB"}, []string{"below the region size"}},
		{[]string{"--dir", dir, "create", "x", "--mode", "0400"}, []string{"mode 0400"}},
		{[]string{"--dir", dir, "create", "x", "--mode", "rw"}, []string{`bad mode "rw"`}},
		{[]string{"--dir", dir, "bench", "s", "--procs", "0"}, []string{"procs 0"}},
		{[]string{"--dir", dir, "bench", "s", "--duration", "soon"}, []string{"-duration"}},
		{[]string{"--dir", dir, "bench", "s", "--min-size", "8"}, []string{"min size 8"}},
		{[]string{"--dir", dir, "bench", "s", "--min-size", "1KiB", "--max-size", "512"}, []string{"below the min size"}},
		{[]string{"--dir", dir, "get", "s"}, []string{"get:", "missing PATH"}},
		{[]string{"--dir", dir, "get"}, []string{"get:", "missing store NAME and PATH"}},
		{[]string{"--dir", dir, "get", "s", "a//b"}, []string{`path "a//b" has an empty key`}},
		{[]string{"--dir", dir, "get", "s", "a", "b"}, []string{"get:", "got 3 arguments"}},
		{[]string{"--dir", dir, "get", "s", "a", "--format", "xml"}, []string{"get:", `format "xml": want json or msgpack`}},
		{[]string{"--dir", dir, "dump", "s", "--format", "xml"}, []string{"dump:", `format "xml": want json or msgpack`}},
		{[]string{"--dir", dir, "dump", "s", "t"}, []string{"dump:", "one store NAME"}},
		{[]string{"--dir", dir, "load", "s"}, []string{"load:", "missing FILE"}},
		{[]string{"--dir", dir, "load", "s", "f", "--format", "yaml"}, []string{"load:", `format "yaml"`}},
		{[]string{"--dir", dir, "load", "s", "f", "--path", "a//b"}, []string{"load:", "empty key"}},
		{[]string{"--dir", dir, "put", "s", "q"}, []string{"put:", "missing VALUE", "--string"}},
		{[]string{"--dir", dir, "put", "s"}, []string{"put:", "missing PATH"}},
		{[]string{"--dir", dir, "put", "s", "q", "1", "hello"}, []string{"put:", "value 2 (hello): bad JSON", `'"hello"'`, "--string"}},
		{[]string{"--dir", dir, "put", "s", "q", ""}, []string{"put:", "value 1 is empty", `'""'`}},
		{[]string{"--dir", dir, "put", "s", "q", "1e999999"}, []string{"put:", "value 1 (1e999999)", "out of range"}},
		{[]string{"--dir", dir, "put", "s", "/", "1"}, []string{"put:", `path "/" is the root`}},
		{[]string{"--dir", dir, "put", "s", "q", "1", "--maxsize", "-1"}, []string{"put:", "maxsize -1"}},
		{[]string{"--dir", dir, "put", "s", "q", "1", "--timeout", "-1s"}, []string{"put:", "timeout -1s"}},
		{[]string{"--dir", dir, "take", "s"}, []string{"take:", "missing PATH"}},
		{[]string{"--dir", dir, "take", "s", "q", "r"}, []string{"take:", "got 3 arguments"}},
		{[]string{"--dir", dir, "take", "s", "q", "--count", "-1"}, []string{"take:", "count -1"}},
		{[]string{"--dir", dir, "take", "s", "a//b"}, []string{"take:", "empty key"}},
		{[]string{"--dir", dir, "txns"}, []string{"txns:", "missing store NAME"}},
		{[]string{"--dir", dir, "procs", "s", "t"}, []string{"procs:", "one store NAME"}},
		{[]string{"--dir", dir, "bank", "s", "--procs", "0"}, []string{"bank:", "procs 0"}},
		{[]string{"--dir", dir, "bank", "s", "--accounts", "1"}, []string{"accounts 1: want 2 to 100000"}},
		{[]string{"--dir", dir, "bank", "s", "--initial", "0"}, []string{"initial 0"}},
		{[]string{"--dir", dir, "bank", "s", "--accounts", "100000", "--initial", "100000000000000000"}, []string{"initial 100000000000000000"}},
		{[]string{"--dir", dir, "bank", "s", "--duration", "0s"}, []string{"duration 0s"}},
		{[]string{"--dir", dir, "bank", "s", "--interval", "1ms"}, []string{"interval 1ms"}},
		{[]string{"--dir", dir, bankWorkerCommand, "s", "--worker", "1", "--accounts", "5"}, []string{"max amount 0"}},
		{[]string{"help", "frob"}, []string{`unknown command "frob"`}},
	} {
		t.Run(strings.Join(tc.args, "_"), func(t *testing.T) {
			requireOneLineError(t, shmctl(t, tc.args...), 2, tc.want...)
		})
	}
	// Nothing of the above created anything.
	names, err := shmstore.ListStores(shmstore.Options{Dir: dir})
	require.NoError(t, err)
	require.Equal(t, []string{"s"}, names)
}

func TestHelp(t *testing.T) {
	t.Parallel()
	// shmctl alone, or with global flags only, is a mistake: the list of
	// commands goes to stderr, exit 2, and nothing else is said (help,
	// --help and -h print it to stdout, exit 0).
	for _, args := range [][]string{{}, {"--json"}, {"--dir", t.TempDir()}} {
		r := shmctl(t, args...)
		require.Equal(t, 2, r.code, args)
		require.Empty(t, r.stdout, args)
		require.Equal(t, mustRun(t, "help"), r.stderr, args)
	}
	require.Contains(t, mustRun(t, "help"), "shmctl alone prints it to stderr (exit 2)")
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		out := mustRun(t, args...)
		for _, c := range []string{"create", "ls", "info", "check", "rm", "get NAME PATH", "dump", "load NAME FILE",
			"put NAME PATH VALUE...", "take NAME PATH",
			"txns", "procs", "bench", "bank", "completion", "help", "--dir", "--json"} {
			require.Contains(t, out, c)
		}
		require.NotContains(t, out, churnCommand)
		require.NotContains(t, out, bankWorkerCommand)
	}
	for cmd, want := range map[string][]string{
		"get":   {"Usage: shmctl get [FLAGS] NAME PATH", "accounts/alice", "Int 5 -> \"5\"", "base64"},
		"dump":  {"Usage: shmctl dump [FLAGS] NAME", "--format FORMAT", "--out FILE", "msgpack keeps", "(default json)"},
		"load":  {"Usage: shmctl load [FLAGS] NAME FILE", "--path PATH", "one transaction", "Counters become Ints"},
		"put":   {"Usage: shmctl put [FLAGS] NAME PATH VALUE...", "--string", "--maxsize N", "--timeout DURATION", "own transaction", `after "--"`},
		"take":  {"Usage: shmctl take [FLAGS] NAME PATH", "--count N", "(default 1)", "--timeout DURATION", "loses", "Int 5 -> \"5\""},
		"txns":  {"Usage: shmctl txns [FLAGS] NAME", "WAITS ON", "RETIRED, OLDEST", "read-only"},
		"procs": {"Usage: shmctl procs [FLAGS] NAME", "recovering", "read-only"},
		"bank":  {"Usage: shmctl bank [FLAGS] NAME", "--procs N", "--accounts N", "--duration DURATION", "--initial AMOUNT", "Ctrl-C"},
	} {
		out := mustRun(t, "help", cmd)
		require.Equal(t, out, mustRun(t, cmd, "--help"))
		for _, w := range want {
			require.Contains(t, out, w, cmd)
		}
		require.Contains(t, out, "\n\nFlags:\n", cmd)
	}
	for _, args := range [][]string{{"help", "bench"}, {"bench", "--help"}, {"bench", "-h"}} {
		out := mustRun(t, args...)
		require.Contains(t, out, "Usage: shmctl bench")
		for _, f := range []string{"--procs N", "--duration DURATION", "--min-size SIZE", "--max-size SIZE", "--mailbox N", "--json"} {
			require.Contains(t, out, f)
		}
	}
}

func TestRunRuntimeErrorIsOneLine(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	empty := writeFile(t, "empty.json", []byte("{}"))
	for _, args := range [][]string{{"info"}, {"check"}, {"rm"}, {"bench"}, {"get", "nosuch", "a/b"}, {"dump"},
		{"load", "nosuch", empty}, {"put", "nosuch", "q", "1"}, {"take", "nosuch", "q"}, {"txns"}, {"procs"}, {"bank"}} {
		if len(args) == 1 {
			args = append(args, "nosuch")
		}
		r := shmctl(t, append([]string{"--dir", dir}, args...)...)
		requireOneLineError(t, r, 1, args[0]+":", `"nosuch"`, dir)
	}
}

// TestFlagsAfterName: flags, global ones included, go before or after
// the command and its arguments.
func TestFlagsAfterName(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "fa")
	want := mustRun(t, "--dir", dir, "--json", "check", "fa")
	require.Equal(t, want, mustRun(t, "check", "fa", "--json", "--dir", dir))
	require.Equal(t, want, mustRun(t, "check", "--dir="+dir, "fa", "--json"))
	require.Equal(t, want, mustRun(t, "--json", "check", "--dir", dir, "--", "fa"))
	var rep checkReport
	require.NoError(t, decodeStrict(want, &rep))
	require.True(t, rep.OK)
	// After "--" a flag is an argument.
	requireOneLineError(t, shmctl(t, "--dir", dir, "check", "--", "fa", "--json"), 2, "check:", "one store NAME")
}

// TestCompletion: the completion command prints each shell's script, and
// the scripts' hidden helper completes commands, flags and store names.
func TestCompletion(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "alpha")
	createStore(t, dir, "beta")
	for shell, want := range map[string]string{"bash": "# bash completion V2 for shmctl", "zsh": "#compdef shmctl",
		"fish": "# fish completion for shmctl", "powershell": "# powershell completion for shmctl"} {
		require.Contains(t, mustRun(t, "completion", shell), want, shell)
	}
	require.Contains(t, mustRun(t, "help", "completion"), "Usage: shmctl completion [FLAGS] COMMAND")
	require.Contains(t, mustRun(t, "completion", "bash", "--help"), "Usage: shmctl completion bash [FLAGS]\n")

	complete := func(args ...string) []string {
		t.Helper()
		r := shmctl(t, append([]string{cobra.ShellCompNoDescRequestCmd}, args...)...)
		require.Equal(t, 0, r.code, r.stderr) // stderr has cobra's note on the directive
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		return lines[:len(lines)-1] // the last is the directive, ":4"
	}
	require.Equal(t, []string{"check"}, complete("ch"))
	require.Equal(t, []string{"alpha", "beta"}, complete("--dir", dir, "info", ""))
	require.Equal(t, []string{"alpha", "beta"}, complete("check", "--dir", dir, "--json", "b")) // the shell picks
	require.Empty(t, complete("--dir", dir, "get", "alpha", ""))
	require.Contains(t, complete("--dir", dir, "dump", "alpha", "--f"), "--format")
	require.NotContains(t, complete(""), churnCommand)
}

// TestBadFlagValues: a value that a flag of a number, a duration, a size,
// a mode or a bool cannot take is a usage error (exit 2) of one line that
// names the flag and the value and says what it wants, for every such
// flag of every command (hidden ones too), not strconv's or time's
// message ("strconv.ParseInt: parsing "abc": invalid syntax").
func TestBadFlagValues(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	root := newRootCommand(io.Discard, io.Discard)
	var cmds []*cobra.Command
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		cmds = append(cmds, c)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	tried := map[string]bool{}
	for _, c := range cmds {
		path := strings.Fields(c.CommandPath())[1:]
		c.Flags().VisitAll(func(f *pflag.Flag) {
			var bad []string
			switch f.Value.Type() {
			case "int", "int64":
				bad = []string{"abc", "1.5", "99999999999999999999"}
			case "uint64":
				bad = []string{"abc", "-1"}
			case "duration":
				bad = []string{"abc", "5"} // 5: no unit
			case "size", "mode":
				bad = []string{"abc"}
			case "bool":
				bad = []string{"maybe"}
			case "string":
				return
			default:
				t.Errorf("%s --%s: a flag of type %s that this test does not know", c.CommandPath(), f.Name, f.Value.Type())
				return
			}
			tried[f.Value.Type()] = true
			for _, v := range bad {
				args := append(append([]string{"--dir", dir}, path...), "--"+f.Name+"="+v)
				r := shmctl(t, args...)
				requireOneLineError(t, r, 2, `"`+v+`"`, `"--`+f.Name+`"`, "want")
				for _, raw := range []string{"strconv", "parsing", "time:", "invalid syntax"} {
					require.NotContains(t, r.stderr, raw, args)
				}
			}
		})
	}
	require.Equal(t, map[string]bool{"int": true, "int64": true, "uint64": true, "duration": true, "size": true,
		"mode": true, "bool": true}, tried)
	for args, want := range map[string]string{
		"bench s --procs abc":                  `bench: invalid argument "abc" for "--procs" flag: want an integer`,
		"bench s --procs 99999999999999999999": `want an integer from -9223372036854775808 to 9223372036854775807`,
		"bench s --seed -1":                    `bench: invalid argument "-1" for "--seed" flag: want an integer from 0 to 18446744073709551615`,
		"take s q --timeout 5":                 `take: invalid argument "5" for "--timeout" flag: want a duration with a unit, such as 500ms, 5s or 1m`,
		"get s a --int-key abc":                `get: invalid argument "abc" for "--int-key" flag: want an integer from -9223372036854775808 to 9223372036854775807`,
		"ls --json=maybe":                      `ls: invalid argument "maybe" for "--json" flag: want true or false`,
	} {
		requireOneLineError(t, shmctl(t, append([]string{"--dir", dir}, strings.Fields(args)...)...), 2, want)
	}
}

// TestWritingIntoMissingStore: every command that writes into a store
// (load, put, take, bench, bank) makes none, and a missing one is a
// runtime error that says how to make it, with the --dir given (put,
// take, bench and bank used to end in a bare 'no store "X" in DIR', as
// load did); their help says the store must exist. Inspection keeps the
// bare message. Not parallel: it sets $SHMSTORE_DIR.
func TestWritingIntoMissingStore(t *testing.T) {
	dir := testDir(t)
	f := writeFile(t, "d.json", []byte(`{"a": 1}`))
	writers := map[string][]string{
		"load":  {"load", "nosuch", f},
		"put":   {"put", "nosuch", "q", "1"},
		"take":  {"take", "nosuch", "q", "--timeout", "1s"},
		"bench": {"bench", "nosuch", "--procs", "1", "--duration", "1s"},
		"bank":  {"bank", "nosuch", "--procs", "1", "--duration", "1s"},
	}
	for name, args := range writers {
		requireOneLineError(t, shmctl(t, append([]string{"--dir", dir}, args...)...), 1,
			"shmctl: "+name+`: no store "nosuch" in `+dir+"; "+name+
				" writes into an existing store: make it first with 'shmctl --dir "+dir+" create nosuch'\n")
		require.Contains(t, mustRun(t, "help", name), "The store must exist: "+name+" makes none (shmctl create NAME does).")
	}
	for _, args := range [][]string{{"info", "nosuch"}, {"check", "nosuch"}, {"get", "nosuch", "a"},
		{"dump", "nosuch"}, {"watch", "nosuch", "a", "--count", "1"}, {"txns", "nosuch"}, {"procs", "nosuch"}} {
		requireOneLineError(t, shmctl(t, append([]string{"--dir", dir}, args...)...), 1,
			"shmctl: "+args[0]+`: no store "nosuch" in `+dir+"\n")
		require.NotContains(t, mustRun(t, "help", args[0]), "The store must exist")
	}
	t.Setenv("SHMSTORE_DIR", dir) // the directory from the environment: the hint needs no --dir
	for name, args := range writers {
		requireOneLineError(t, shmctl(t, args...), 1,
			"shmctl: "+name+`: no store "nosuch" in `+dir+"; "+name+
				" writes into an existing store: make it first with 'shmctl create nosuch'\n")
	}
	names, err := shmstore.ListStores(shmstore.Options{Dir: dir})
	require.NoError(t, err)
	require.Empty(t, names, "no command made a store")
}
