//go:build linux && (amd64 || arm64) && cgo

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/shmstore/shmstore/shm/shmtest"
)

// TestC builds libshmstore.so into a temporary directory, compiles
// test/abi_test.c against shmstore.h and that library with the C
// compiler ($CC, else cc), and runs it with GODEBUG=cgocheck=1: the
// header's loop, a conflict, a queue between two threads, OrElse,
// errors with their messages, a forked child. Without a C compiler it
// is skipped (make test says so).
func TestC(t *testing.T) {
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		t.Skipf("no C compiler (%s): the C test of libshmstore.so is skipped", cc)
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH to build libshmstore.so")
	}
	tmp := t.TempDir()
	lib := filepath.Join(tmp, "libshmstore.so")
	run(t, exec.Command(gobin, "build", "-buildmode=c-shared", "-o", lib, "."))
	bin := filepath.Join(tmp, "abi_test")
	run(t, exec.Command(cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-I.", "-o", bin, "test/abi_test.c",
		"-L"+tmp, "-lshmstore", "-lpthread", "-Wl,-rpath,"+tmp))

	cmd := exec.Command(bin, shmtest.Dir(t))
	cmd.Env = append(os.Environ(), "GODEBUG=cgocheck=1")
	out := run(t, cmd)
	if !bytes.Contains(out, []byte("abi_test: ok")) {
		t.Fatalf("abi_test did not finish:\n%s", out)
	}
	t.Logf("%s", out)
}

// run runs cmd and returns its output, failing the test with it if the
// command fails.
func run(t *testing.T, cmd *exec.Cmd) []byte {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
	return out
}
