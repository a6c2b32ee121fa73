//go:build linux && (amd64 || arm64)

package abi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/bindings/capi/abi"
	"github.com/shmstore/shmstore/internal/proctest"
)

func TestOpen(t *testing.T) {
	en := newEnv(t)
	l := en.l
	var h uint64
	for _, c := range []struct {
		name string
		run  func() int32
		want int32
	}{
		{"NULL name", func() int32 { return l.Open(nil, en.opts(0), &h, en.e()) }, abi.ErrBadArg},
		{"NULL out", func() int32 { return l.Open(cs("t"), en.opts(0), nil, en.e()) }, abi.ErrBadArg},
		{"bad name", func() int32 { return l.Open(cs("../x"), en.opts(0), &h, en.e()) }, abi.ErrBadArg},
		{"empty name", func() int32 { return l.Open(cs(""), en.opts(0), &h, en.e()) }, abi.ErrBadArg},
		{"bad create", func() int32 { o := en.opts(3); return l.Open(cs("t"), o, &h, en.e()) }, abi.ErrBadArg},
		{"negative create", func() int32 { o := en.opts(-1); return l.Open(cs("t"), o, &h, en.e()) }, abi.ErrBadArg},
		{"bad mode", func() int32 { o := en.opts(0); o.Mode = 0o1777; return l.Open(cs("t"), o, &h, en.e()) }, abi.ErrBadArg},
		{"mode without 0600", func() int32 { o := en.opts(0); o.Mode = 0o400; return l.Open(cs("new1"), o, &h, en.e()) }, abi.ErrBadArg},
		{"bad region size", func() int32 { o := en.opts(0); o.RegionSize = 12345; return l.Open(cs("new2"), o, &h, en.e()) }, abi.ErrBadArg},
		{"negative max size", func() int32 { o := en.opts(0); o.MaxSize = -1; return l.Open(cs("new3"), o, &h, en.e()) }, abi.ErrBadArg},
		{"must exist", func() int32 { return l.Open(cs("none"), en.opts(abi.OpenMustExist), &h, en.e()) }, abi.ErrNoStore},
		{"must create", func() int32 { return l.Open(cs("t"), en.opts(abi.OpenMustCreate), &h, en.e()) }, abi.ErrExists},
	} {
		t.Run(c.name, func(t *testing.T) { en.t = t; en.is(c.run(), c.want) })
	}
	en.t = t

	// A second attachment of the same store, then the defaults (NULL
	// options, $SHMSTORE_DIR).
	h2 := en.open("t", abi.OpenMustExist)
	if h2 == en.st || h2 == 0 {
		t.Fatalf("second handle %#x (first %#x)", h2, en.st)
	}
	en.ok(l.Close(h2, en.e()))
	t.Setenv("SHMSTORE_DIR", en.dir)
	en.ok(l.Open(cs("t"), nil, &h2, en.e()))
	en.ok(l.Close(h2, en.e()))

	// Read-only: no transactions.
	en.ok(l.Open(cs("t"), &abi.Options{Dir: cs(en.dir), ReadOnly: 1}, &h2, en.e()))
	var tx uint64
	if rc := l.TxBegin(h2, 0, &tx, en.e()); rc >= 0 {
		t.Fatalf("a transaction on a read-only store: %s", abi.CodeName(rc))
	}
	en.ok(l.Close(h2, en.e()))

	// Permission: files this process cannot open (root opens anything).
	if os.Getuid() != 0 {
		h := en.open("locked", abi.OpenMustCreate)
		en.ok(l.Close(h, en.e()))
		locked := filepath.Join(en.dir, "locked")
		require.NoError(t, os.Chmod(locked, 0))
		t.Cleanup(func() { _ = os.Chmod(locked, 0o700) })
		en.is(l.Open(cs("locked"), en.opts(0), &h, en.e()), abi.ErrPermission)
	}
}

func TestClose(t *testing.T) {
	en := newEnv(t)
	l := en.l
	en.is(l.Close(0, en.e()), abi.ErrBadArg)
	en.is(l.Close(1<<60|1<<32|77, en.e()), abi.ErrBadArg)
	tx := en.begin(0)
	en.is(l.Close(tx, en.e()), abi.ErrBadArg) // a transaction handle
	en.is(l.Close(en.st, en.e()), abi.ErrInUse)
	en.says("transactions")
	en.ok(l.TxRollback(tx))
	h := en.open("t", abi.OpenMustExist)
	en.ok(l.Close(h, en.e()))
	en.is(l.Close(h, en.e()), abi.ErrClosed)
	en.is(l.Check(h, en.e()), abi.ErrClosed)
	en.is(l.TxBegin(h, 0, &tx, en.e()), abi.ErrClosed)

	// A new store handle never equals a closed one, even in its slot.
	h2 := en.open("t", abi.OpenMustExist)
	if h2 == h {
		t.Fatalf("handle %#x reused", h)
	}
	en.is(l.Check(h, en.e()), abi.ErrClosed)
	en.ok(l.Close(h2, en.e()))
}

func TestRemove(t *testing.T) {
	en := newEnv(t)
	l := en.l
	en.is(l.Remove(nil, cs(en.dir), 0, en.e()), abi.ErrBadArg)
	en.is(l.Remove(cs("none"), cs(en.dir), 0, en.e()), abi.ErrNoStore)
	en.is(l.Remove(cs("t"), cs(en.dir), 0, en.e()), abi.ErrInUse)
	h := en.open("other", abi.OpenMustCreate)
	en.ok(l.Close(h, en.e()))
	en.ok(l.Remove(cs("other"), cs(en.dir), 0, en.e()))
	en.is(l.Open(cs("other"), en.opts(abi.OpenMustExist), &h, en.e()), abi.ErrNoStore)
	// A directory that is not a store's.
	require.NoError(t, os.MkdirAll(filepath.Join(en.dir, "foreign"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(en.dir, "foreign", "x"), nil, 0o600))
	en.is(l.Remove(cs("foreign"), cs(en.dir), 1, en.e()), abi.ErrNoStore)
	// NULL dir: $SHMSTORE_DIR.
	t.Setenv("SHMSTORE_DIR", en.dir)
	h = en.open("third", abi.OpenMustCreate)
	en.ok(l.Close(h, en.e()))
	en.ok(l.Remove(cs("third"), nil, 0, en.e()))
}

// envDir passes the store's directory to a worker process.
const envDir = "SHMSTORE_ABI_TEST_DIR"

// The role "hold": open the store "t" in $SHMSTORE_ABI_TEST_DIR through a
// Lib, write "held" in a transaction left running, say "ready" and wait
// (to be killed).
func init() {
	proctest.Register("hold", func() int {
		l := abi.New(abi.Config{})
		var e abi.Error
		var st, tx, r uint64
		o := &abi.Options{Dir: cs(os.Getenv(envDir))}
		for _, rc := range []func() int32{
			func() int32 { return l.Open(cs("t"), o, &st, &e) },
			func() int32 { return l.TxBegin(st, 0, &tx, &e) },
			func() int32 { return l.TxRoot(tx, &r, &e) },
			func() int32 { return l.DictSet(tx, r, str("held"), num(1), &e) },
		} {
			if rc() != abi.OK {
				return proctest.Fail(errors.New(e.Message()))
			}
		}
		fmt.Println("ready")
		_, _ = io.Copy(io.Discard, os.Stdin) // until killed
		return 0
	})
}

// TestRecover: a process killed in the middle of a transaction is
// recovered once, by shm_recover, which says so; what it wrote is gone.
func TestRecover(t *testing.T) {
	en := newEnv(t)
	l := en.l
	var n int64
	en.ok(l.Recover(en.st, &n, en.e()))
	if n != 0 {
		t.Fatalf("recovered %d on a store without dead processes", n)
	}
	w := proctest.Start(t, "hold", proctest.Options{Env: []string{envDir + "=" + en.dir}})
	if line := w.Line(); line != "ready" {
		t.Fatalf("worker: %q", line)
	}
	if killed, err := w.Kill(); err != nil || !killed {
		t.Fatalf("kill: %v, %v", killed, err)
	}
	en.ok(l.Recover(en.st, &n, en.e()))
	if n != 1 {
		t.Fatalf("recovered %d processes, want 1", n)
	}
	en.ok(l.Recover(en.st, &n, en.e()))
	if n != 0 {
		t.Fatalf("recovered %d again", n)
	}
	_, rc := en.update(func(tx uint64) int32 {
		var v abi.Value
		return l.DictGet(tx, en.root(tx), str("held"), &v, en.e())
	})
	en.is(rc, abi.ErrNotFound)
	en.ok(l.Check(en.st, en.e()))
	en.is(l.Recover(en.st, nil, en.e()), abi.ErrBadArg)
	en.is(l.Recover(0, &n, en.e()), abi.ErrBadArg)
	h := en.open("t", abi.OpenMustExist)
	en.ok(l.Close(h, en.e()))
	en.is(l.Recover(h, &n, en.e()), abi.ErrClosed)
}

func TestStorePathAndStats(t *testing.T) {
	en := newEnv(t)
	l := en.l
	buf := make([]byte, 4096)
	p := unsafe.Pointer(&buf[0])
	en.is(l.StorePath(en.st, nil, 10, en.e()), abi.ErrBadArg)
	en.is(l.StorePath(en.st, p, 0, en.e()), abi.ErrBadArg)
	en.is(l.StorePath(0, p, 10, en.e()), abi.ErrBadArg)
	en.ok(l.StorePath(en.st, p, uintptr(len(buf)), en.e()))
	path := string(buf[:strings.IndexByte(string(buf), 0)])
	if want := filepath.Join(en.dir, "t"); path != want {
		t.Fatalf("path %q, want %q", path, want)
	}
	// The path reopens the store.
	var h uint64
	en.ok(l.Open(cs(filepath.Base(path)), &abi.Options{Dir: cs(filepath.Dir(path)), Create: abi.OpenMustExist}, &h, en.e()))
	en.ok(l.Close(h, en.e()))
	// Truncated, NUL-terminated, nothing written beyond capacity.
	for i := range buf {
		buf[i] = 'x'
	}
	en.ok(l.StorePath(en.st, p, 5, en.e()))
	if got := string(buf[:6]); got != path[:4]+"\x00x" {
		t.Fatalf("truncated path %q", got)
	}
	buf[1] = 'x'
	en.ok(l.StorePath(en.st, p, 1, en.e()))
	if buf[0] != 0 || buf[1] != 'x' {
		t.Fatalf("capacity 1: %q", buf[:2])
	}
	// A relative directory comes back absolute.
	t.Chdir(en.dir)
	en.ok(l.Open(cs("t"), &abi.Options{Dir: cs("."), Create: abi.OpenMustExist}, &h, en.e()))
	en.ok(l.StorePath(h, p, uintptr(len(buf)), en.e()))
	if got := string(buf[:strings.IndexByte(string(buf), 0)]); got != path {
		t.Fatalf("relative dir: path %q, want %q", got, path)
	}
	en.ok(l.Close(h, en.e()))

	var used, maxb int64
	en.is(l.StoreStats(en.st, nil, &maxb, en.e()), abi.ErrBadArg)
	en.is(l.StoreStats(en.st, &used, nil, en.e()), abi.ErrBadArg)
	en.ok(l.StoreStats(en.st, &used, &maxb, en.e()))
	if used <= 0 || maxb != 16<<20 {
		t.Fatalf("stats: used %d, max %d", used, maxb)
	}
	en.ok(l.Check(en.st, en.e()))
}

func TestCode(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int32
	}{
		{nil, abi.OK},
		{shmstore.ErrKeyNotFound, abi.ErrNotFound},
		{shmstore.ErrOutOfRange, abi.ErrRange},
		{shmstore.ErrTypeMismatch, abi.ErrType},
		{shmstore.ErrConflict, abi.ErrConflict},
		{shmstore.ErrRetry, abi.ErrRetry},
		{shmstore.ErrRetryNothing, abi.ErrRetryNothing},
		{shmstore.ErrTxClosed, abi.ErrTxClosed},
		{shmstore.ErrStaleHandle, abi.ErrStale},
		{shmstore.ErrBadHandle, abi.ErrStale},
		{shmstore.ErrOutOfMemory, abi.ErrNoMemory},
		{shmstore.ErrTooLarge, abi.ErrTooLarge},
		{shmstore.ErrReadOnly, abi.ErrReadOnly},
		{shmstore.ErrNotFound, abi.ErrNoStore},
		{shmstore.ErrNotStore, abi.ErrNoStore},
		{shmstore.ErrExists, abi.ErrExists},
		{shmstore.ErrLayout, abi.ErrDamaged},
		{shmstore.ErrDamaged, abi.ErrDamaged},
		{shmstore.ErrCorrupt, abi.ErrDamaged},
		{shmstore.ErrClosed, abi.ErrClosed},
		{shmstore.ErrForked, abi.ErrForked},
		{shmstore.ErrPermission, abi.ErrPermission},
		{shmstore.ErrBadOption, abi.ErrBadArg},
		{shmstore.ErrInUse, abi.ErrInUse},
		{shmstore.ErrCheck, abi.ErrOther},
		{shmstore.ErrTooManyProcs, abi.ErrOther},
		{context.DeadlineExceeded, abi.Timeout},
		{context.Canceled, abi.Timeout},
		{errors.New("something else"), abi.ErrOther},
	} {
		err := c.err
		if err != nil {
			err = fmt.Errorf("context: %w", err)
		}
		if got := abi.Code(err); got != c.want {
			t.Errorf("%v: %s, want %s", c.err, abi.CodeName(got), abi.CodeName(c.want))
		}
	}
}

func TestErrorMessage(t *testing.T) {
	var e abi.Error
	abi.SetError(&e, abi.ErrOther, strings.Repeat("é", 400)) // 800 bytes
	m := e.Message()
	if len(m) > abi.MsgSize-1 || !utf8.ValidString(m) || len(m) < abi.MsgSize-2 {
		t.Fatalf("truncated message of %d bytes, valid UTF-8 %v", len(m), utf8.ValidString(m))
	}
	if e.Msg[len(m)] != 0 || e.Code != abi.ErrOther {
		t.Fatal("no NUL or code")
	}
	abi.SetError(&e, abi.ErrType, "short")
	if e.Message() != "short" || e.Code != abi.ErrType {
		t.Fatalf("%q", e.Message())
	}
	abi.SetError(nil, abi.ErrType, "nowhere") // NULL err: nothing written
	for c := int32(-200); c < 10; c++ {
		if abi.Defined(c) != !strings.HasPrefix(abi.CodeName(c), "code ") {
			t.Fatalf("code %d: defined %v, name %s", c, abi.Defined(c), abi.CodeName(c))
		}
	}
}
