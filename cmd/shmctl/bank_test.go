//go:build linux && (amd64 || arm64)

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
)

// requireBankReport checks the report of a bank run that went well.
func requireBankReport(t *testing.T, rep bankReport, procs int, created bool) {
	t.Helper()
	require.True(t, rep.OK)
	require.Zero(t, rep.Wrong)
	require.Equal(t, created, rep.Created)
	if created {
		require.Equal(t, int64(rep.Accounts)*rep.Initial, rep.Expected)
	}
	require.NotEmpty(t, rep.Samples)
	for i, s := range rep.Samples {
		require.Equal(t, bankSample{Seconds: s.Seconds, Total: rep.Expected, Accounts: rep.Accounts,
			TransfersPerSec: s.TransfersPerSec, AbortsPerSec: s.AbortsPerSec, Final: i == len(rep.Samples)-1, OK: true}, s)
	}
	require.Len(t, rep.Workers, procs)
	for i, w := range rep.Workers {
		require.Equal(t, i+1, w.Worker)
		require.NotZero(t, w.PID)
		require.NotZero(t, w.Transfers)
		require.Greater(t, w.Seconds, 0.0)
	}
	require.Greater(t, rep.Total.Transfers, uint64(0))
	require.Greater(t, rep.Total.TransfersPerSec, 0.0)
	require.NotZero(t, rep.Seed)
}

// requireBalancesSum reads the accounts with get and checks their sum.
func requireBalancesSum(t *testing.T, dir, name string, n int, want int64) {
	t.Helper()
	var accounts map[string]int64
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, "--dir", dir, "get", name, bankDict)), &accounts))
	require.Len(t, accounts, n)
	var sum int64
	for _, b := range accounts {
		require.GreaterOrEqual(t, b, int64(0), "a transfer never overdraws")
		sum += b
	}
	require.Equal(t, want, sum)
}

// TestBankBinary runs the built shmctl as a real process: bank starts two
// real workers (the binary re-executed); the store checks clean after.
func TestBankBinary(t *testing.T) {
	t.Parallel()
	bin := buildShmctl(t)
	dir := testDir(t)
	createBenchStore(t, dir, "bank")

	cmd := exec.Command(bin, "--dir", dir, "bank", "bank", "--procs", "2", "--duration", "1s", "--json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "stderr: %s", stderr.String())
	require.Empty(t, stderr.String())
	var rep bankReport
	require.NoError(t, decodeStrict(stdout.String(), &rep), stdout.String())
	requireBankReport(t, rep, 2, true)
	require.Equal(t, bankReport{Store: "bank", Procs: 2, Accounts: 100, Initial: 1000, Duration: 1, Seed: rep.Seed,
		Created: true, Expected: 100000, Samples: rep.Samples, Workers: rep.Workers, Total: rep.Total, OK: true}, rep)
	require.InDelta(t, 1.0, rep.Total.Seconds, 0.5)

	var chk checkReport
	runJSON(t, &chk, "--dir", dir, "check", "bank")
	require.Equal(t, checkReport{Name: "bank", LiveProcs: []int{}, Problems: []string{}, OK: true}, chk)
	var procs procsReport
	runJSON(t, &procs, "--dir", dir, "procs", "bank")
	require.Empty(t, procs.Processes, "workers and bank detached")
	requireBalancesSum(t, dir, "bank", 100, 100000)
}

// TestBankText runs bank in-process (its workers are this test binary,
// see TestMain) and checks its lines; a second run takes the accounts it
// finds.
func TestBankText(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createBenchStore(t, dir, "bt")
	out := mustRun(t, "--dir", dir, "bank", "bt", "--procs", "2", "--duration", "600ms", "--interval", "200ms",
		"--accounts", "20", "--initial", "50", "--seed", "7")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Equal(t, `bank "bt": 2 workers for 600ms, seed 7; total 1000 (set up now: 20 accounts of 50)`, lines[0])
	require.Empty(t, lines[1])
	require.Regexp(t, `^ +TIME +TOTAL +TRANSFERS/S +ABORTS/S$`, lines[2])
	i := 3
	for ; i < len(lines) && !strings.Contains(lines[i], "end"); i++ {
		require.Regexp(t, `^ +\d+\.\ds +1000 +\d+ +\d+  ok$`, lines[i])
	}
	require.Greater(t, i, 3, "samples every 200ms for 600ms:\n%s", out)
	require.Regexp(t, `^ +end +1000 +ok$`, lines[i])
	rest := lines[i+1:]
	require.Len(t, rest, 7, out)
	require.Empty(t, rest[0])
	require.Regexp(t, `^WORKER +PID +TRANSFERS +DECLINED +RETRIES +SECONDS +TRANSFERS/S$`, rest[1])
	require.Regexp(t, `^1 +\d+ +[1-9]\d* +\d+ +\d+ +\d+\.\d\d +[1-9]\d*$`, rest[2])
	require.Regexp(t, `^2 +\d+ +[1-9]\d* +\d+ +\d+ +\d+\.\d\d +[1-9]\d*$`, rest[3])
	require.Regexp(t, `^total +[1-9]\d* +\d+ +\d+ +\d+\.\d\d +[1-9]\d*$`, rest[4])
	require.Empty(t, rest[5])
	require.Regexp(t, `^all \d+ totals were 1000: ok$`, rest[6])
	requireBalancesSum(t, dir, "bt", 20, 1000)

	// Again: the accounts are there; --initial no longer matters.
	var rep bankReport
	runJSON(t, &rep, "--dir", dir, "bank", "bt", "--procs", "1", "--duration", "200ms", "--accounts", "20", "--initial", "7")
	requireBankReport(t, rep, 1, false)
	require.Equal(t, int64(1000), rep.Expected)

	r := shmctl(t, "--dir", dir, "bank", "bt", "--procs", "1", "--duration", "200ms")
	requireOneLineError(t, r, 1, `bank: store "bt": the Dict "accounts" already holds 20 accounts, not 100: pass --accounts 20`)
	require.Equal(t, "store \"bt\": ok\n", mustRun(t, "--dir", dir, "check", "bt"))
}

// TestBankSeesWrongTotals: a total that is not the expected one (here an
// account changed behind bank's back) is caught and makes bank fail.
func TestBankSeesWrongTotals(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "bw")
	o := newBankOptions(globalOptions{Dir: dir})
	o.name, o.JSON = "bw", true
	st := openAttached(t, dir, "bw")
	rep := bankReport{Store: "bw", Accounts: o.accounts}
	var err error
	rep.Expected, rep.Created, err = o.setup(st)
	require.NoError(t, err)
	require.True(t, rep.Created)
	require.Equal(t, int64(100000), rep.Expected)

	o.record(nil, &rep, o.sample(st, &rep, time.Second))
	require.NoError(t, st.Set(bankDict+"/"+accountKey(3), 999))
	o.record(nil, &rep, o.sample(st, &rep, 2*time.Second))
	require.NoError(t, st.Set(bankDict+"/"+accountKey(3), "a String"))
	o.record(nil, &rep, o.sample(st, &rep, 3*time.Second))
	require.Len(t, rep.Samples, 3)
	require.True(t, rep.Samples[0].OK)
	require.False(t, rep.Samples[1].OK)
	require.Equal(t, int64(99999), rep.Samples[1].Total)
	require.False(t, rep.Samples[2].OK)
	require.Contains(t, rep.Samples[2].Error, `account "acct-00003"`)
	require.Equal(t, 2, rep.Wrong)
	require.EqualError(t, rep.wrongError(), `store "bw": 2 of 3 totals were not 100000`)

	// A store that already has other things under "accounts".
	require.NoError(t, st.Set(bankDict+"/x", 1))
	o.accounts = 101
	_, _, err = o.setup(st)
	require.ErrorContains(t, err, `the Dict "accounts" is not a bank's accounts: acct-00003`)
	require.ErrorIs(t, err, shmstore.ErrTypeMismatch)
}

// TestBankInterrupt: SIGINT to bank (the real binary) stops its workers
// between transactions; bank still reads the total and checks it.
func TestBankInterrupt(t *testing.T) {
	t.Parallel()
	bin := buildShmctl(t)
	dir := testDir(t)
	createBenchStore(t, dir, "bi")
	cmd := exec.Command(bin, "--dir", dir, "bank", "bi", "--procs", "2", "--duration", "1m", "--interval", "100ms")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // ours: harmless once it exited
		_ = cmd.Wait()
	})
	start := time.Now()
	sc := bufio.NewScanner(stdout)
	var out strings.Builder
	sample := regexp.MustCompile(`^ +\d+\.\ds +100000 `)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if sample.MatchString(sc.Text()) {
			break
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
	}
	require.NoError(t, cmd.Wait(), "stdout:\n%s\nstderr: %s", out.String(), stderr.String())
	require.Less(t, time.Since(start), 30*time.Second)
	require.Empty(t, stderr.String())
	require.Regexp(t, `(?m)^ +end +100000 +ok\ninterrupted: the workers stopped early\n`, out.String())
	require.Regexp(t, `(?m)^total +[1-9]\d* `, out.String())
	require.Regexp(t, `(?m)^all \d+ totals were 100000: ok$`, out.String())
	require.Equal(t, "store \"bi\": ok\n", mustRun(t, "--dir", dir, "check", "bi"))
	requireBalancesSum(t, dir, "bi", 100, 100000)
}

// TestBankWorkerKilled: a worker killed mid-run fails bank (exit 1, the
// worker named), but every total bank read, after it too, is right: the
// dead worker's transaction is all or nothing.
func TestBankWorkerKilled(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createBenchStore(t, dir, "bd")
	done := make(chan result, 1)
	go func() {
		var out, errb bytes.Buffer
		code := run([]string{"--dir", dir, "bank", "bd", "--procs", "2", "--duration", "2s", "--interval", "100ms"}, &out, &errb)
		done <- result{code, out.String(), errb.String()}
	}()
	// A worker (a child of this process) that has committed transfers.
	victim := 0
	require.Eventually(t, func() bool {
		var out, errb bytes.Buffer
		if run([]string{"--dir", dir, "txns", "bd", "--json"}, &out, &errb) != 0 {
			return false
		}
		var rep txnsReport
		if json.Unmarshal(out.Bytes(), &rep) != nil {
			return false
		}
		for _, s := range rep.Slots {
			if s.Proc >= 0 && s.Alive && int(s.PID) != os.Getpid() && s.Commits > 0 {
				victim = int(s.PID)
				return true
			}
		}
		return false
	}, 20*time.Second, 10*time.Millisecond)
	require.NoError(t, syscall.Kill(victim, syscall.SIGKILL))

	r := <-done
	require.Equal(t, 1, r.code, "stdout:\n%s", r.stdout)
	require.Regexp(t, fmt.Sprintf(`^shmctl: bank: worker \d \(pid %d\) failed: signal: killed\n$`, victim), r.stderr)
	require.Regexp(t, `(?m)^ +end +100000 +ok$`, r.stdout)
	require.Regexp(t, `(?m)^all \d+ totals were 100000: ok$`, r.stdout)
	require.NotContains(t, r.stdout, "WRONG")
	var chk checkReport
	runJSON(t, &chk, "--dir", dir, "check", "bd")
	require.True(t, chk.OK, "%+v", chk)
	requireBalancesSum(t, dir, "bd", 100, 100000)
}
