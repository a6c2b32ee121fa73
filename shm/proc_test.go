//go:build linux && (amd64 || arm64)

package shm

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/internal/proctest"
)

// TestConcurrentCreate: processes that open a new store at the same moment
// all succeed and share one store.
func TestConcurrentCreate(t *testing.T) {
	const n = 4
	bin := testBinary(t)
	dir := testDir(t)
	for round := 0; round < 2; round++ {
		name := fmt.Sprintf("race-%d", round)
		o := Options{Dir: dir, RegionSize: 1 << 20, MaxSize: 8 << 20, Procs: 8, Slots: 16, SlotsPerProc: 2}
		goFile := filepath.Join(dir, name+".go")
		exitFile := filepath.Join(dir, name+".exit")
		var kids []*proctest.Proc
		for i := 0; i < n; i++ {
			kids = append(kids, startChild(t, bin, "create",
				childArgs{Name: name, Opts: []Options{o}, Index: i, GoFile: goFile, ExitFile: exitFile}, nil))
		}
		for _, c := range kids {
			require.Equal(t, `"ready"`, c.Line())
		}
		require.NoError(t, os.WriteFile(goFile, nil, 0o600)) // start together
		var reps []childReport
		for _, c := range kids {
			reps = append(reps, report(c))
		}
		// All attached at once: distinct entries, one header.
		procs := map[int]bool{}
		for i, r := range reps {
			require.NotZero(t, r.Created)
			require.Equal(t, reps[0].Created, r.Created, "child %d saw another store", i)
			require.GreaterOrEqual(t, r.Regions, uint32(i+1))
			require.LessOrEqual(t, r.Regions, uint32(n))
			require.False(t, procs[r.Proc], "two children in process entry %d", r.Proc)
			procs[r.Proc] = true
			require.Equal(t, r.Proc, TokenProc(r.Token))
		}
		s := openT(t, name, Options{Dir: dir, Create: MustExist})
		live := s.LiveProcs()
		for _, r := range reps {
			require.Contains(t, live, r.PID)
		}
		require.NoError(t, os.WriteFile(exitFile, nil, 0o600))
		for i, c := range kids {
			require.NoError(t, waitChild(t, c), "child %d; stderr:\n%s", i, c.Stderr())
		}

		require.Equal(t, reps[0].Created, s.Header().Created)
		require.Equal(t, uint32(n), s.Regions())
		for id := uint16(1); id <= n; id++ {
			fi, err := os.Stat(s.RegionPath(id))
			require.NoError(t, err)
			require.Equal(t, int64(1<<20), fi.Size())
		}
		_, err := os.Stat(s.RegionPath(n + 1))
		require.ErrorIs(t, err, os.ErrNotExist)
		require.Equal(t, []int{os.Getpid()}, s.LiveProcs(), "the children detached")
		require.Len(t, s.Procs(), 1)
		require.Empty(t, s.DeadProcs())
		require.Empty(t, s.Check())
		require.Equal(t, uint64(n+1), s.Header().AttachSeq.Load())
	}
}

// TestPermission: another user cannot open a 0600 store, and the error
// says why; with a group mode a member of the group can.
func TestPermission(t *testing.T) {
	withUmask(t, 0o022)
	dir := testDir(t)
	o := smallOpts(dir)
	s := openT(t, "private", o)
	_, err := s.Grow(0)
	require.NoError(t, err)

	if os.Geteuid() != 0 {
		// Without root we cannot switch users: take the permission away
		// from ourselves instead.
		require.NoError(t, os.Chmod(filepath.Join(s.Dir(), "control"), 0))
		_, err := Open("private", o)
		require.ErrorIs(t, err, ErrPermission)
		require.ErrorIs(t, err, fs.ErrPermission)
		require.Contains(t, err.Error(), "permission denied")
		require.Contains(t, err.Error(), "is mode")
		require.Contains(t, err.Error(), fmt.Sprintf("this process is uid %d", os.Getuid()))
		return
	}

	require.NoError(t, os.Chmod(dir, 0o755)) // let the child reach the store directory
	bin := publicTestBinary(t)
	nobody := &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{65534}}
	attempts := []Options{
		{Dir: dir},
		{Dir: dir, Create: MustExist},
		{Dir: dir, ReadOnly: true},
	}
	c := startChild(t, bin, "open", childArgs{Name: "private", Opts: attempts}, nobody)
	for i := range attempts {
		r := report(c)
		require.NotEmpty(t, r.Err, "attempt %d: the other user opened a 0600 store", i)
		require.True(t, r.IsPerm, "attempt %d: want ErrPermission, got %s", i, r.Err)
		require.True(t, r.IsFSPerm, "attempt %d: want fs.ErrPermission wrapped, got %s", i, r.Err)
		require.Contains(t, r.Err, "permission denied")
		require.Contains(t, r.Err, fmt.Sprintf("directory %s is mode %v, owner uid 0", s.Dir(), os.FileMode(0o700)))
		require.Contains(t, r.Err, "this process is uid 65534")
	}
	require.NoError(t, waitChild(t, c))
	require.Equal(t, []int{os.Getpid()}, s.LiveProcs())
	require.Empty(t, s.Check())
	ents, err := os.ReadDir(s.Dir())
	require.NoError(t, err)
	require.Len(t, ents, 3, "the refused user created nothing")

	// Mode 0660: a member of the owning group (gid 0 here) may attach and
	// write to the regions; the other user still may not.
	o.Mode = 0o660
	g := openT(t, "shared", o)
	_, err = g.Grow(0)
	require.NoError(t, err)
	member := &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{0}}
	c = startChild(t, bin, "open", childArgs{Name: "shared", Opts: []Options{{Dir: dir}}, Region: true}, member)
	r := report(c)
	require.Empty(t, r.Err)
	require.True(t, r.Wrote)
	require.NoError(t, waitChild(t, c))
	p, err := regionBytes(g, 1)
	require.NoError(t, err)
	require.Equal(t, byte(0x5a), p[1], "the group member's write is visible")
	require.Empty(t, g.Check())

	c = startChild(t, bin, "open", childArgs{Name: "shared", Opts: []Options{{Dir: dir}}}, nobody)
	r = report(c)
	require.True(t, r.IsPerm, "non-member: want ErrPermission, got %q", r.Err)
	require.NoError(t, waitChild(t, c))
}

// testLayer records what shm asks of a layer.
type testLayer struct {
	name string
	log  *layerLog
}

type layerLog struct {
	mu      sync.Mutex
	entries []string
}

func (l *layerLog) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, fmt.Sprintf(format, args...))
}

func (l *layerLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.entries...)
}

func (l *testLayer) Recover(deadToken uint32, slots []int) error {
	l.log.add("%s recover %#x %v", l.name, deadToken, slots)
	return nil
}

func (l *testLayer) Release(slot int) error {
	l.log.add("%s release %d", l.name, slot)
	return nil
}

// TestLivenessAndRecovery: a SIGKILLed process is seen dead, reported, and
// recovered: the layers repair its slots, then its slots and entry are
// freed.
func TestLivenessAndRecovery(t *testing.T) {
	dir := testDir(t)
	o := smallOpts(dir)
	o.SlotsPerProc = 4
	s := openT(t, "live", o)
	log := &layerLog{}
	s.AddLayer(1, "low", &testLayer{"low", log})
	s.AddLayer(5, "high", &testLayer{"high", log})

	co := o
	co.Create = MustExist
	c := startChild(t, testBinary(t), "hold", childArgs{Name: "live", Opts: []Options{co}, Lease: 2}, nil)
	r := report(c)
	require.Equal(t, c.Pid(), r.PID)
	require.Len(t, r.Slots, 2)
	slices.Sort(r.Slots)

	// Alive.
	require.True(t, s.ProcAlive(r.Proc))
	require.True(t, s.TokenAlive(r.Token))
	require.Equal(t, r.Token, s.ProcToken(r.Proc))
	require.ElementsMatch(t, []int{os.Getpid(), r.PID}, s.LiveProcs())
	require.Empty(t, s.DeadProcs())
	require.Empty(t, s.Check())
	for _, j := range r.Slots {
		require.Equal(t, uint32(r.Proc+1), s.Slot(j).Owner.Load())
		require.NotZero(t, s.Slot(j).LeasedAt.Load())
		require.False(t, s.SlotOwned(j))
	}
	n, err := s.RecoverDead()
	require.NoError(t, err)
	require.Zero(t, n, "a live process is never recovered")
	require.Empty(t, log.get())

	killChild(t, c)

	// Dead, and said so everywhere.
	require.False(t, s.ProcAlive(r.Proc))
	require.False(t, s.TokenAlive(r.Token))
	require.Equal(t, []int{os.Getpid()}, s.LiveProcs())
	require.Equal(t, []int{r.Proc}, s.DeadProcs())
	var info *ProcInfo
	for _, p := range s.Procs() {
		if p.Index == r.Proc {
			info = &p
		}
	}
	require.NotNil(t, info)
	require.Equal(t, "dead", info.State)
	require.False(t, info.Alive)
	require.Equal(t, r.PID, info.PID)
	require.Equal(t, r.Slots, info.Slots)
	probs := s.Check()
	require.Equal(t, []string{fmt.Sprintf("process %d (pid %d) is dead and not recovered", r.Proc, r.PID)}, probs)
	// Its entry is not reused before recovery.
	other := openT(t, "live", co)
	require.NotEqual(t, r.Proc, other.ProcIndex())
	require.NoError(t, other.Close())

	n, err = s.RecoverDead()
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, []string{
		fmt.Sprintf("high recover %#x %v", r.Token, r.Slots),
		fmt.Sprintf("low recover %#x %v", r.Token, r.Slots),
	}, log.get(), "each layer once, highest first, with the dead token and exactly its slots")
	for _, j := range r.Slots {
		require.Zero(t, s.Slot(j).Owner.Load(), "slot %d", j)
		require.Zero(t, s.Slot(j).LeasedAt.Load(), "slot %d", j)
	}
	require.Equal(t, ProcFree, s.Proc(r.Proc).State.Load())
	require.Equal(t, uint64(1), s.Header().Recovered.Load())
	require.Empty(t, s.DeadProcs())
	require.Empty(t, s.Check())

	n, err = s.RecoverDead()
	require.NoError(t, err)
	require.Zero(t, n)
	require.Len(t, log.get(), 2)

	// The entry is reused with a new incarnation: the dead token stays dead.
	again := openT(t, "live", co)
	require.Equal(t, r.Proc, again.ProcIndex())
	require.NotEqual(t, r.Token, again.Token())
	require.False(t, s.TokenAlive(r.Token))
	require.True(t, s.TokenAlive(again.Token()))
}

// TestLeaseLimits: a process leases at most SlotsPerProc slots at once;
// Close refuses while slots are leased.
func TestLeaseLimits(t *testing.T) {
	dir := testDir(t)
	o := smallOpts(dir)
	o.Slots, o.SlotsPerProc = 4, 2
	s := openT(t, "lease", o)
	log := &layerLog{}
	s.AddLayer(1, "l", &testLayer{"l", log})

	a, err := s.Lease()
	require.NoError(t, err)
	b, err := s.Lease()
	require.NoError(t, err)
	require.NotEqual(t, a, b)
	require.True(t, s.SlotOwned(a))
	require.True(t, s.SlotOwned(b))

	type lease struct {
		slot int
		err  error
	}
	got := make(chan lease, 1)
	go func() {
		slot, err := s.Lease()
		got <- lease{slot, err}
	}()
	select {
	case l := <-got:
		t.Fatalf("third Lease returned (%d, %v) while both slots were leased", l.slot, l.err)
	case <-time.After(100 * time.Millisecond):
	}
	s.Release(a)
	var c int
	select {
	case l := <-got:
		require.NoError(t, l.err)
		require.Equal(t, a, l.slot, "the released slot is handed on")
		c = l.slot
	case <-time.After(waitLong):
		t.Fatal("third Lease still blocked after a Release")
	}
	owned := 0
	for j := 0; j < s.NumSlots(); j++ {
		if s.SlotOwned(j) {
			owned++
		}
	}
	require.Equal(t, 2, owned, "never more than SlotsPerProc slots claimed")

	// Close refuses while leased, and the store stays usable.
	err = s.Close()
	require.ErrorIs(t, err, ErrInUse)
	require.Contains(t, err.Error(), "2 slots still leased")
	require.NoError(t, s.Guard())
	s.Release(b)
	d, err := s.Lease()
	require.NoError(t, err)
	require.Equal(t, b, d)
	_, err = s.Grow(0)
	require.NoError(t, err)

	// Another attachment cannot take the slots this one owns.
	o2 := o
	o2.Create = MustExist
	s2 := openT(t, "lease", o2)
	x, err := s2.Lease()
	require.NoError(t, err)
	require.NotEqual(t, a, x)
	require.NotEqual(t, b, x)

	s.Release(c)
	s.Release(d)
	require.Empty(t, log.get())
	require.NoError(t, s.Close())
	require.ElementsMatch(t, []string{fmt.Sprintf("l release %d", a), fmt.Sprintf("l release %d", b)}, log.get())
	require.Zero(t, s2.Slot(a).Owner.Load())
	require.Zero(t, s2.Slot(b).Owner.Load())
	require.Len(t, s2.Procs(), 1)
	_, err = s.Lease()
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, s.Close(), ErrClosed)
	s2.Release(x)
	require.Empty(t, s2.Check())
}

// TestNoSlots: when live processes own every slot, Lease fails instead of
// waiting forever.
func TestNoSlots(t *testing.T) {
	dir := testDir(t)
	o := smallOpts(dir)
	o.Slots, o.SlotsPerProc = 2, 2
	s1 := openT(t, "few", o)
	s2 := openT(t, "few", o)
	for i := 0; i < 2; i++ {
		_, err := s1.Lease()
		require.NoError(t, err)
	}
	_, err := s2.Lease()
	require.ErrorIs(t, err, ErrNoSlots)
	require.Contains(t, err.Error(), "all 2 slots owned by other processes")
	for j := 0; j < 2; j++ {
		s1.Release(j)
	}
	_, err = s2.Lease()
	require.ErrorIs(t, err, ErrNoSlots, "released slots go back to s1's pool, not to the table")
	require.NoError(t, s1.Close())
	x, err := s2.Lease()
	require.NoError(t, err, "closing s1 gave its slots back to the table")
	s2.Release(x)
}
