//go:build linux && (amd64 || arm64)

package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore"
)

// lockedBuffer is a bytes.Buffer that a test reads while a command
// writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := strings.TrimSpace(l.b.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestWatch: watch prints the value now, then each change, and stops
// after --count lines.
func TestWatch(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "w")
	st := openAttached(t, dir, "w")
	require.NoError(t, st.Set("cfg/level", 1))
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"--dir", dir, "watch", "w", "cfg", "--count", "3", "--json"}, &out, &errb)
	}()
	// Each change waits until the line of the one before is out, so none
	// is folded into the next.
	printed := func(n int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for len(out.lines()) < n {
			require.True(t, time.Now().Before(deadline), "watch printed %d lines, want %d; stderr %q", len(out.lines()), n, errb.b.String())
			time.Sleep(time.Millisecond)
		}
	}
	printed(1)
	require.NoError(t, st.Set("cfg/level", 2))
	printed(2)
	require.NoError(t, st.Set("other", 1)) // not under cfg: no line
	require.NoError(t, st.Delete("cfg"))
	printed(3)
	select {
	case code := <-done:
		require.Equal(t, 0, code, errb.b.String())
	case <-time.After(30 * time.Second):
		t.Fatal("watch did not stop after --count lines")
	}
	var got []watchLine
	for _, l := range out.lines() {
		var wl watchLine
		require.NoError(t, json.Unmarshal([]byte(l), &wl))
		got = append(got, wl)
	}
	require.Len(t, got, 3)
	require.Equal(t, map[string]any{"level": float64(1)}, got[0].Value)
	require.Equal(t, map[string]any{"level": float64(2)}, got[1].Value)
	require.True(t, got[2].Absent)
}

func TestWatchErrors(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	requireOneLineError(t, shmctl(t, "--dir", dir, "watch", "nosuch", "a"), 1, `no store "nosuch"`)
	requireOneLineError(t, shmctl(t, "--dir", dir, "watch", "x"), 2, "missing PATH", "or --key")
	requireOneLineError(t, shmctl(t, "--dir", dir, "watch", "x", "a", "b"), 2, "want a store NAME and a PATH, got 3 arguments")
	createStore(t, dir, "w")
	requireOneLineError(t, shmctl(t, "--dir", dir, "watch", "w", "a//b"), 2, "empty key")
}

// TestWatchKeys: watch takes --key and --int-key as get does: an Int key
// and a key with '/' in it, absent at first.
func TestWatchKeys(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "wk")
	st := openAttached(t, dir, "wk")
	var out, errb lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"--dir", dir, "watch", "wk", "--key", "by/id", "--int-key", "7", "--count", "2", "--json"}, &out, &errb)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for len(out.lines()) < 1 {
		require.True(t, time.Now().Before(deadline), "stderr %q", errb.b.String())
		time.Sleep(time.Millisecond)
	}
	require.NoError(t, st.Update(func(tx *shmstore.Tx) error {
		d, err := tx.Root().Dict("by/id")
		if err != nil {
			return err
		}
		if err := d.Set("7", "the String: not watched"); err != nil {
			return err
		}
		return d.Set(int64(7), "seven")
	}))
	select {
	case code := <-done:
		require.Equal(t, 0, code, errb.b.String())
	case <-time.After(30 * time.Second):
		t.Fatal("watch did not stop after --count lines")
	}
	lines := out.lines()
	require.Len(t, lines, 2)
	var first, second watchLine
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &first))
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &second))
	require.True(t, first.Absent)
	require.False(t, second.Absent)
	require.Equal(t, "seven", second.Value)
}
