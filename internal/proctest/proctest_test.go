//go:build linux

package proctest_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/internal/proctest"
)

func TestMain(m *testing.M) { proctest.Main(m) }

func init() {
	// "echo" prints "hello", then $PROCTEST_MSG as JSON.
	proctest.Register("echo", func() int {
		fmt.Println("hello")
		if err := proctest.Emit(map[string]string{"msg": os.Getenv("PROCTEST_MSG")}); err != nil {
			return proctest.Fail(err)
		}
		return 0
	})
	// "fail" fails.
	proctest.Register("fail", func() int { return proctest.Fail(errors.New("on purpose")) })
	// "sleep" says "ready" and sleeps until killed.
	proctest.Register("sleep", func() int {
		fmt.Println("ready")
		time.Sleep(time.Hour)
		return 0
	})
	// "cat" echoes its stdin line by line until EOF.
	proctest.Register("cat", func() int {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			fmt.Println(sc.Text())
		}
		return 0
	})
}

func TestLineAndResult(t *testing.T) {
	p := proctest.Start(t, "echo", proctest.Options{Env: []string{"PROCTEST_MSG=hi there"}})
	require.Equal(t, "hello", p.Line())
	var out struct{ Msg string }
	p.Result(&out)
	require.Equal(t, "hi there", out.Msg)
	require.True(t, p.Exited())
	require.False(t, p.Killed())
	require.NoError(t, p.Wait())
	require.ErrorIs(t, p.Signal(syscall.SIGKILL), os.ErrProcessDone, "a reaped worker cannot be signalled")
}

func TestFailAndUnknownRole(t *testing.T) {
	p := proctest.Start(t, "fail", proctest.Options{Name: "the failing one"})
	var ee *exec.ExitError
	require.ErrorAs(t, p.Wait(), &ee)
	require.Equal(t, 1, ee.ExitCode())
	require.Equal(t, fmt.Sprintf("fail (pid %d): on purpose\n", p.Pid()), p.Stderr())
	require.Equal(t, "the failing one", p.Name())

	q := proctest.Start(t, "no-such-role", proctest.Options{})
	require.ErrorAs(t, q.Wait(), &ee)
	require.Equal(t, 2, ee.ExitCode())
	require.Contains(t, q.Stderr(), "no such role")
}

func TestWaitTimeoutAndKill(t *testing.T) {
	p := proctest.Start(t, "sleep", proctest.Options{})
	require.Equal(t, "ready", p.Line())
	exited, err := p.WaitTimeout(50 * time.Millisecond)
	require.False(t, exited)
	require.NoError(t, err)
	require.NoError(t, p.Signal(syscall.SIGSTOP))
	require.NoError(t, p.Signal(syscall.SIGCONT))
	killed, err := p.Kill()
	require.NoError(t, err)
	require.True(t, killed)
	require.True(t, p.Killed())
	require.True(t, proctest.KilledBy(p.Wait(), syscall.SIGKILL))
	killed, err = p.Kill() // reaped already: nothing is signalled
	require.NoError(t, err)
	require.True(t, killed, "its status stands")

	q := proctest.Start(t, "echo", proctest.Options{})
	require.NoError(t, q.Wait())
	killed, err = q.Kill()
	require.NoError(t, err)
	require.False(t, killed, "it had exited on its own")
}

func TestStdin(t *testing.T) {
	p := proctest.Start(t, "cat", proctest.Options{})
	for _, s := range []string{"one", "two"} {
		_, err := io.WriteString(p.Stdin(), s+"\n")
		require.NoError(t, err)
		require.Equal(t, s, p.Line())
	}
	require.NoError(t, p.Stdin().Close())
	require.NoError(t, p.Wait())
	require.Equal(t, "one\ntwo\n", p.Stdout())
}

// TestCleanupKills: a worker still running when its test ends is killed
// and reaped by then.
func TestCleanupKills(t *testing.T) {
	var p *proctest.Proc
	t.Run("sub", func(t *testing.T) {
		p = proctest.Start(t, "sleep", proctest.Options{})
		require.Equal(t, "ready", p.Line())
	})
	require.True(t, p.Exited(), "reaped when the subtest ended")
	require.True(t, p.Killed())
}
