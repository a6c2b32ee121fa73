//go:build linux && (amd64 || arm64)

package shm

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/shmstore/shmstore/shm/shmtest"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// withUmask runs the rest of the test with the process umask set to mask
// (the usual 022 by default), so that file modes do not depend on the
// environment the tests run in.
func withUmask(t *testing.T, mask int) {
	old := unix.Umask(mask)
	t.Cleanup(func() { unix.Umask(old) })
}

func requireMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, want, fi.Mode().Perm(), "mode of %s", path)
}

func TestOpenCloseReopen(t *testing.T) {
	withUmask(t, 0o022)
	dir := testDir(t)
	o := smallOpts(dir)

	s, err := Open("st", o)
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "st"), s.Dir())
	require.False(t, s.ReadOnly())
	require.Equal(t, 0, s.ProcIndex())
	require.NotZero(t, s.Token())
	require.Equal(t, 0, TokenProc(s.Token()))
	require.NoError(t, s.Guard())
	created := s.Header().Created
	require.NotZero(t, created)
	_, err = s.Grow(0)
	require.NoError(t, err)

	// Default modes: files 0600, directory 0700.
	requireMode(t, s.Dir(), 0o700)
	for _, f := range []string{"control", "lock", "region-00001"} {
		requireMode(t, filepath.Join(s.Dir(), f), 0o600)
	}
	require.Equal(t, []int{os.Getpid()}, s.LiveProcs())
	require.NoError(t, s.Close())

	// Closed: every entry point says so; a second Close too.
	require.ErrorIs(t, s.Guard(), ErrClosed)
	require.ErrorIs(t, s.Close(), ErrClosed)
	_, err = s.Lease()
	require.ErrorIs(t, err, ErrClosed)
	_, err = s.Grow(1)
	require.ErrorIs(t, err, ErrClosed)
	_, err = s.RecoverDead()
	require.ErrorIs(t, err, ErrClosed)

	// Reopen: the same store, nobody attached, our old entry free.
	s = openT(t, "st", Options{Dir: dir, Create: MustExist})
	require.Equal(t, created, s.Header().Created)
	require.Equal(t, uint32(1), s.Regions())
	require.Equal(t, 0, s.ProcIndex(), "the closed process's entry is free again")
	require.Len(t, s.Procs(), 1)
	require.Empty(t, s.DeadProcs())
	require.Empty(t, s.Check())
	for j := 0; j < s.NumSlots(); j++ {
		require.Zero(t, s.Slot(j).Owner.Load(), "slot %d", j)
	}
}

func TestFileModes(t *testing.T) {
	withUmask(t, 0o022)
	dir := testDir(t)
	o := smallOpts(dir)
	o.Mode = 0o660
	s := openT(t, "group", o)
	_, err := s.Grow(0)
	require.NoError(t, err)
	require.Equal(t, uint32(0o660), s.Header().Mode)
	requireMode(t, s.Dir(), 0o770)
	for _, f := range []string{"control", "lock", "region-00001"} {
		requireMode(t, filepath.Join(s.Dir(), f), 0o660)
	}

	o.Mode = 0o644
	s2 := openT(t, "world-readable", o)
	requireMode(t, s2.Dir(), 0o755)
	requireMode(t, filepath.Join(s2.Dir(), "control"), 0o644)
}

func TestCreateModes(t *testing.T) {
	dir := testDir(t)
	o := smallOpts(dir)

	o.Create = MustExist
	_, err := Open("missing", o)
	require.ErrorIs(t, err, ErrNotFound)
	require.Contains(t, err.Error(), `"missing"`)
	_, err = os.Stat(filepath.Join(dir, "missing"))
	require.ErrorIs(t, err, fs.ErrNotExist, "MustExist must not create the directory")

	o.Create = MustCreate
	s := openT(t, "new", o)
	require.Equal(t, Magic, s.Header().Magic.Load())
	_, err = Open("new", o)
	require.ErrorIs(t, err, ErrExists)
	require.Contains(t, err.Error(), `"new"`)
	// Still intact after the refused MustCreate.
	require.Empty(t, s.Check())
	require.Len(t, s.Procs(), 1)

	o.Create = MustExist
	s2 := openT(t, "new", o)
	require.Equal(t, s.Header().Created, s2.Header().Created)
	require.NotEqual(t, s.ProcIndex(), s2.ProcIndex())

	o.Create = CreateIfMissing
	s3 := openT(t, "new", o)
	require.Equal(t, s.Header().Created, s3.Header().Created)
}

func TestReadOnlyDoesNotAttach(t *testing.T) {
	dir := testDir(t)
	s := openT(t, "ro", smallOpts(dir))
	_, err := s.Grow(0)
	require.NoError(t, err)
	p, err := regionBytes(s, 1)
	require.NoError(t, err)
	p[100] = 42
	before := s.Procs()
	seq := s.Header().AttachSeq.Load()

	_, err = Open("absent", Options{Dir: dir, ReadOnly: true})
	require.ErrorIs(t, err, ErrNotFound, "ReadOnly never creates")

	ro, err := Open("ro", Options{Dir: dir, ReadOnly: true})
	require.NoError(t, err)
	defer ro.Close()
	require.True(t, ro.ReadOnly())
	require.Equal(t, -1, ro.ProcIndex())
	require.Zero(t, ro.Token())
	require.Equal(t, before, s.Procs(), "a read-only open takes no process entry")
	require.Equal(t, seq, s.Header().AttachSeq.Load())
	require.Equal(t, s.Header().Created, ro.Header().Created)
	require.Equal(t, []int{os.Getpid()}, ro.LiveProcs(), "a read-only store sees the attached process")
	require.Empty(t, ro.Check())

	rp, err := regionBytes(ro, 1)
	require.NoError(t, err)
	require.Equal(t, byte(42), rp[100])

	_, err = ro.Lease()
	require.ErrorIs(t, err, ErrBadOption)
	_, err = ro.RecoverDead()
	require.ErrorIs(t, err, ErrBadOption)
	_, err = ro.Grow(1)
	require.ErrorIs(t, err, ErrBadOption, "a read-only store cannot grow")
	require.Equal(t, uint32(1), s.Regions())

	require.NoError(t, ro.Close())
	require.Equal(t, before, s.Procs())
}

func TestTooManyProcs(t *testing.T) {
	dir := testDir(t)
	o := smallOpts(dir)
	o.Procs = 2
	s1 := openT(t, "full", o)
	s2, err := Open("full", o)
	require.NoError(t, err)
	_, err = Open("full", o)
	require.ErrorIs(t, err, ErrTooManyProcs)
	require.Len(t, s1.Procs(), 2, "a refused attach leaves no entry behind")
	require.NoError(t, s2.Close())
	s3 := openT(t, "full", o)
	require.Equal(t, 1, s3.ProcIndex())
	require.NotEqual(t, s2.Token(), s3.Token(), "a reused entry gets a new token")
}

// hdrProbe locates the header fields in the control file (Offsetof).
var hdrProbe Header

func patchFile(t *testing.T, path string, off uintptr, v any) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer f.Close()
	var b bytes.Buffer
	require.NoError(t, binary.Write(&b, binary.LittleEndian, v))
	_, err = f.WriteAt(b.Bytes(), int64(off))
	require.NoError(t, err)
}

func TestLayoutErrors(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("random seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))

	hdrSize := int(unsafe.Sizeof(Header{}))
	cases := []struct {
		name   string
		damage func(t *testing.T, path string, size int64)
		msg    string
	}{
		{"truncated to 100 bytes", func(t *testing.T, path string, size int64) {
			require.NoError(t, os.Truncate(path, 100))
		}, fmt.Sprintf("control file is 100 bytes, want at least %d: the store is damaged", hdrSize)},
		{"truncated to half", func(t *testing.T, path string, size int64) {
			require.NoError(t, os.Truncate(path, size/2))
		}, "its header wants"},
		{"other control size", func(t *testing.T, path string, size int64) {
			patchFile(t, path, unsafe.Offsetof(hdrProbe.ControlSize), uint64(size+4096))
		}, fmt.Sprintf("header records a control size of %d", int(computeLayout(4, 8, 8).size)+4096)},
		{"garbage", func(t *testing.T, path string, size int64) {
			b := make([]byte, size)
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			if binary.LittleEndian.Uint64(b) == 0 || binary.LittleEndian.Uint64(b) == Magic {
				b[0] ^= 0xff
			}
			require.NoError(t, os.WriteFile(path, b, 0))
		}, "not a shmstore control file"},
		{"other version", func(t *testing.T, path string, size int64) {
			patchFile(t, path, unsafe.Offsetof(hdrProbe.Version), LayoutVersion+1)
		}, fmt.Sprintf("layout version %d, this build reads version %d", LayoutVersion+1, LayoutVersion)},
		{"other stamp", func(t *testing.T, path string, size int64) {
			patchFile(t, path, unsafe.Offsetof(hdrProbe.Stamp), layoutStamp()^0x8000)
		}, fmt.Sprintf("layout stamp %#x, this build's is %#x", layoutStamp()^0x8000, layoutStamp())},
		{"other header size", func(t *testing.T, path string, size int64) {
			patchFile(t, path, unsafe.Offsetof(hdrProbe.HeaderSize), uint32(hdrSize+64))
		}, "layout stamp"},
		{"sizes out of range", func(t *testing.T, path string, size int64) {
			patchFile(t, path, unsafe.Offsetof(hdrProbe.Procs), uint32(0))
		}, "header sizes out of range"},
		{"too many regions published", func(t *testing.T, path string, size int64) {
			patchFile(t, path, unsafe.Offsetof(hdrProbe.Regions), uint32(1000))
		}, "1000 regions published"},
	}
	dir := testDir(t)
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := fmt.Sprintf("layout-%d", i)
			o := smallOpts(dir)
			s, err := Open(name, o)
			require.NoError(t, err)
			require.NoError(t, s.Close())
			path := filepath.Join(dir, name, "control")
			fi, err := os.Stat(path)
			require.NoError(t, err)
			c.damage(t, path, fi.Size())
			damaged, err := os.ReadFile(path)
			require.NoError(t, err)

			msg := c.msg
			if c.name == "truncated to half" {
				msg = fmt.Sprintf("control file is %d bytes, its header wants %d: the store is damaged", fi.Size()/2, fi.Size())
			}
			for _, mode := range []struct {
				what string
				o    Options
			}{
				{"create if missing", o},
				{"must exist", Options{Dir: dir, Create: MustExist}},
				{"read-only", Options{Dir: dir, ReadOnly: true}},
			} {
				s, err := Open(name, mode.o)
				require.ErrorIs(t, err, ErrLayout, mode.what)
				require.Nil(t, s)
				require.Contains(t, err.Error(), msg, mode.what)
				require.Contains(t, err.Error(), `"`+name+`"`, mode.what)
			}
			_, err = Open(name, Options{Dir: dir, Create: MustCreate})
			require.ErrorIs(t, err, ErrExists)

			// A refused open never rewrites what it refused.
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			require.True(t, bytes.Equal(damaged, after), "control file changed by a refused open")
		})
	}
}

// TestOpenWaitsForCreator: an opener waits for the create lock before it
// judges the control file. While a creator holds the lock there may be no
// control file yet (it is being written as control.new); once the lock is
// free nobody is creating, so no control file means create, and one
// without magic means damaged.
func TestOpenWaitsForCreator(t *testing.T) {
	dir := testDir(t)
	o := smallOpts(dir)
	for _, c := range []struct {
		name    string
		file    string // what the "creator" leaves behind
		content []byte
		wantErr error
	}{
		{"creator at work", "control.new", []byte("half a header"), nil},
		{"zeroed control", "control", make([]byte, 8192), ErrDamaged},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := strings.ReplaceAll(c.name, " ", "-")
			sdir := filepath.Join(dir, name)
			require.NoError(t, os.Mkdir(sdir, 0o700))
			require.NoError(t, os.WriteFile(filepath.Join(sdir, c.file), c.content, 0o600))
			// A "creator": another open file description holding byte 0.
			lf, err := os.OpenFile(filepath.Join(sdir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
			require.NoError(t, err)
			defer lf.Close()
			require.NoError(t, ofdLock(lf, 0, unix.F_WRLCK, false))

			type result struct {
				s   *Store
				err error
			}
			got := make(chan result, 1)
			go func() {
				s, err := Open(name, o)
				got <- result{s, err}
			}()
			select {
			case r := <-got:
				t.Fatalf("Open returned (%v) while the create lock was held", r.err)
			case <-time.After(100 * time.Millisecond):
			}
			require.NoError(t, ofdUnlock(lf, 0))
			select {
			case r := <-got:
				if c.wantErr != nil {
					require.ErrorIs(t, r.err, c.wantErr)
					require.True(t, r.s == nil)
					return
				}
				require.NoError(t, r.err)
				defer r.s.Close()
				require.Equal(t, Magic, r.s.Header().Magic.Load())
			case <-time.After(waitLong):
				t.Fatal("Open still blocked after the create lock was released")
			}
		})
	}
}

func TestRemoveAndList(t *testing.T) {
	dir := testDir(t)
	o := smallOpts(dir)
	names, err := List(o)
	require.NoError(t, err)
	require.Empty(t, names)

	for _, name := range []string{"b", "a", "c"} {
		s, err := Open(name, o)
		require.NoError(t, err)
		require.NoError(t, s.Close())
	}
	live := openT(t, "zz", o)
	// Things List must skip: a directory without control, a hidden
	// directory with one, a plain file.
	require.NoError(t, os.Mkdir(filepath.Join(dir, "junk"), 0o700))
	require.NoError(t, os.Mkdir(filepath.Join(dir, ".hidden"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".hidden", "control"), []byte("x"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "plain"), []byte("x"), 0o600))

	names, err = List(o)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b", "c", "zz"}, names)

	// A live attached process blocks Remove.
	err = Remove("zz", o, false)
	require.ErrorIs(t, err, ErrInUse)
	require.Contains(t, err.Error(), fmt.Sprint(os.Getpid()))
	_, err = os.Stat(filepath.Join(dir, "zz", "control"))
	require.NoError(t, err, "a refused Remove removes nothing")
	require.Equal(t, []int{os.Getpid()}, live.LiveProcs())

	// A second attachment in this process counts as live too.
	o2 := o
	o2.Create = MustExist
	live2 := openT(t, "c", o2)
	require.ErrorIs(t, Remove("c", o, false), ErrInUse)
	require.NoError(t, live2.Close())

	require.NoError(t, Remove("zz", o, true))
	_, err = os.Stat(filepath.Join(dir, "zz"))
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.NoError(t, live.Guard(), "a forced Remove leaves attached processes running")
	require.NoError(t, live.Close())

	require.NoError(t, Remove("a", o, false))
	_, err = os.Stat(filepath.Join(dir, "a"))
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.ErrorIs(t, Remove("a", o, false), ErrNotFound)

	names, err = List(o)
	require.NoError(t, err)
	require.Equal(t, []string{"b", "c"}, names)

	names, err = List(Options{Dir: filepath.Join(dir, "nonexistent")})
	require.NoError(t, err)
	require.Empty(t, names)
}

// TestOpenRefusesAMissingDir: a directory the caller names must exist;
// nothing is created for a typo.
func TestOpenRefusesAMissingDir(t *testing.T) {
	dir := filepath.Join(shmtest.Dir(t), "no", "such")
	_, err := Open("s", Options{Dir: dir})
	require.ErrorIs(t, err, ErrBadOption)
	require.Contains(t, err.Error(), "does not exist")
	_, serr := os.Stat(filepath.Dir(dir))
	require.ErrorIs(t, serr, fs.ErrNotExist, "nothing created")
}
