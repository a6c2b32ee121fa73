package shm

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Remove used to look for live processes, then delete, while a process
// could attach in between: it ended up attached to a store that no longer
// existed, and the next opener made a new one under the same name.
// Now either Remove sees it attached and refuses, or it attaches to
// nothing (ErrNotFound).
func TestRemoveRacingAttach(t *testing.T) {
	dir := testDir(t)
	removed, refused := 0, 0
	for it := 0; it < 400; it++ {
		s, err := Open("r", smallOpts(dir))
		require.NoError(t, err)
		require.NoError(t, s.Close())
		type opened struct {
			s   *Store
			err error
		}
		done := make(chan opened)
		go func() {
			s2, err := Open("r", Options{Dir: dir, Create: MustExist})
			done <- opened{s2, err}
		}()
		time.Sleep(time.Duration(it%50) * time.Microsecond)
		rerr := Remove("r", Options{Dir: dir}, false)
		o := <-done
		s2 := o.s
		if o.err != nil {
			require.ErrorIs(t, o.err, ErrNotFound)
		}
		if rerr == nil {
			removed++
			require.Nil(t, s2, "iteration %d: a process attached to a store Remove deleted", it)
		} else {
			refused++
			require.ErrorIs(t, rerr, ErrInUse)
			require.NotNil(t, s2)
		}
		if s2 != nil {
			require.NoError(t, s2.Close())
		}
		_ = os.RemoveAll(filepath.Join(dir, "r"))
	}
	t.Logf("%d removed, %d refused because the opener got there first", removed, refused)
	require.Positive(t, removed, "some removals won the race: the test looked at both outcomes")
}

// A store too damaged to open is removed only with force.
func TestRemoveDamagedStore(t *testing.T) {
	dir := testDir(t)
	s, err := Open("d", smallOpts(dir))
	require.NoError(t, err)
	require.NoError(t, s.Close())
	ctl := filepath.Join(dir, "d", "control")
	f, err := os.OpenFile(ctl, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte("garbage!"), 0) // bad magic
	require.NoError(t, err)
	require.NoError(t, f.Close())
	err = Remove("d", Options{Dir: dir}, false)
	require.ErrorIs(t, err, ErrLayout)
	require.Contains(t, err.Error(), "use force")
	require.FileExists(t, ctl)
	require.NoError(t, Remove("d", Options{Dir: dir}, true))
	require.NoDirExists(t, filepath.Join(dir, "d"))
	require.ErrorIs(t, Remove("d", Options{Dir: dir}, true), ErrNotFound)
}
