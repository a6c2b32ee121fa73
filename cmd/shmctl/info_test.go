//go:build linux && (amd64 || arm64)

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/internal/layers"
)

func TestInfo(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "inf")

	// A new store holds only its root Dict, made at create: one region,
	// one block in the global heap, no processes.
	var rep infoReport
	runJSON(t, &rep, "--dir", dir, "info", "inf")
	require.Equal(t, 1, rep.Regions)
	require.Equal(t, 16, rep.MaxRegions)
	require.Len(t, rep.RegionList, 1)
	require.Len(t, rep.Classes, 1)
	root := rep.Classes[0]
	require.Equal(t, infoClass{Class: root.Class, Size: root.Size, SpanSuperblocks: 1, Spans: 1, Superblocks: 1,
		Global: 1, BlocksUsed: 1, BlocksFree: root.BlocksFree, Fragmentation: root.Fragmentation}, root)
	require.Equal(t, uint64(root.Size), rep.UsedBytes)
	require.Empty(t, rep.Processes)

	// Allocate from this process and keep a slot leased while info runs.
	st := openAttached(t, dir, "inf")
	h, err := layers.Of(st).Alloc.Lease()
	require.NoError(t, err)
	for range 10 {
		_, _, err = h.Alloc(100)
		require.NoError(t, err)
	}
	// A large block: a run of superblocks of its own.
	_, _, err = h.Alloc(alloc.MaxSmall + 1)
	require.NoError(t, err)
	// A block of a class that lives in spans of several superblocks.
	cs := alloc.ClassOf(alloc.MaxSmall)
	require.Greater(t, alloc.Classes[cs].Span, uint32(1))
	_, _, err = h.Alloc(alloc.MaxSmall)
	require.NoError(t, err)
	h.ForgetLog()
	defer h.Release()

	before := fingerprint(t, dir)
	runJSON(t, &rep, "--dir", dir, "info", "inf")
	require.Equal(t, "inf", rep.Name)
	require.Equal(t, filepath.Join(dir, "inf"), rep.Dir)
	require.Equal(t, 1, rep.Regions)
	require.Equal(t, uint64(1<<20), rep.RegionSize)
	require.Equal(t, uint64(1<<20), rep.MappedBytes)
	require.Equal(t, uint64(16<<20), rep.MaxSize)
	require.Len(t, rep.RegionList, 1)
	require.Equal(t, filepath.Join(dir, "inf", "region-00001"), rep.RegionList[0].Path)
	require.False(t, rep.RegionList[0].Created.IsZero())
	require.Equal(t, 1, rep.LargeBlocks)
	require.GreaterOrEqual(t, rep.LargeBytes, uint64(alloc.MaxSmall+1))
	c := alloc.ClassOf(100)
	classes := map[int]infoClass{}
	for _, k := range rep.Classes {
		classes[k.Class] = k
	}
	require.Len(t, classes, 3)
	require.NotContains(t, []int{c, cs}, root.Class)
	require.Equal(t, root, classes[root.Class], "the root's class is as it was")
	cl := classes[c]
	require.Equal(t, infoClass{Class: c, Size: alloc.Classes[c].Size, SpanSuperblocks: 1, Spans: 1, Superblocks: 1,
		Owned: 1, BlocksUsed: 10, BlocksFree: uint64(alloc.Classes[c].Blocks - 10),
		Fragmentation: cl.Fragmentation}, cl)
	require.InDelta(t, 1-float64(10*cl.Size)/float64(alloc.SuperblockSize), cl.Fragmentation, 1e-9)
	span := alloc.Classes[cs].Span
	require.Equal(t, infoClass{Class: cs, Size: alloc.Classes[cs].Size, SpanSuperblocks: int(span), Spans: 1,
		Superblocks: int(span), Owned: 1, BlocksUsed: 1, BlocksFree: uint64(alloc.Classes[cs].Blocks - 1),
		Fragmentation: classes[cs].Fragmentation}, classes[cs])
	require.Equal(t, uint64(root.Size)+uint64(10*cl.Size)+uint64(alloc.Classes[cs].Size)+rep.LargeBytes, rep.UsedBytes)
	require.Equal(t, rep.MappedBytes-rep.MetaBytes-rep.UsedBytes, rep.FreeBytes)
	require.Len(t, rep.Processes, 1)
	p := rep.Processes[0]
	require.Equal(t, os.Getpid(), p.PID)
	require.True(t, p.Alive)
	require.Equal(t, "alive", p.State)
	require.Equal(t, []int{h.Slot()}, p.Slots)

	out := mustRun(t, "--dir", dir, "info", "inf")
	for _, re := range []string{
		`(?m)^store +inf$`,
		`(?m)^regions +1 of 16, 1 MiB each \(max size 16 MiB\)$`,
		`(?m)^mapped +1 MiB$`,
		`(?m)^processes +1 live, 0 dead`,
		`(?m)^REGION +CREATED +FILE$`,
		`(?m)^1 +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +` + regexp.QuoteMeta(rep.RegionList[0].Path) + `$`,
		`(?m)^CLASS +SIZE +SPAN +SPANS +OWNED +GLOBAL +BLOCKS USED +BLOCKS FREE +FRAGMENTATION$`,
		fmt.Sprintf(`(?m)^%d +%d B +1 +1 +1 +0 +10 +%d +\d+\.\d%%$`, c, cl.Size, cl.BlocksFree),
		fmt.Sprintf(`(?m)^%d +%s +%d +1 +1 +0 +1 +%d +\d+\.\d%%$`, cs, regexp.QuoteMeta(formatSize(uint64(alloc.Classes[cs].Size))),
			span, alloc.Classes[cs].Blocks-1),
		`(?m)^PROC +PID +STATE +ATTACHED +SLOTS$`,
		fmt.Sprintf(`(?m)^0 +%d +alive +\d{4}-.* %d$`, os.Getpid(), h.Slot()),
	} {
		require.Regexp(t, re, out)
	}
	require.Equal(t, before, fingerprint(t, dir), "info wrote to the store")
}

func TestInfoDeadProcess(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	createStore(t, dir, "dead")
	holder := startHolder(t, dir, "dead")
	var rep infoReport
	runJSON(t, &rep, "--dir", dir, "info", "dead")
	require.Len(t, rep.Processes, 1)
	require.Equal(t, holder.Pid(), rep.Processes[0].PID)
	require.True(t, rep.Processes[0].Alive)

	killed, err := holder.Kill()
	require.NoError(t, err)
	require.True(t, killed)
	runJSON(t, &rep, "--dir", dir, "info", "dead")
	require.Len(t, rep.Processes, 1)
	require.Equal(t, holder.Pid(), rep.Processes[0].PID)
	require.False(t, rep.Processes[0].Alive)
	require.Equal(t, "dead", rep.Processes[0].State)
	require.Regexp(t, fmt.Sprintf(`(?m)^0 +%d +dead `, holder.Pid()), mustRun(t, "--dir", dir, "info", "dead"))
	require.Regexp(t, `(?m)^dead +\d+/16 .* 0 +1 +\d{4}-`, mustRun(t, "--dir", dir, "ls"))
}

func TestInfoUnknownStore(t *testing.T) {
	t.Parallel()
	dir := testDir(t)
	r := shmctl(t, "--dir", dir, "info", "nosuch")
	requireOneLineError(t, r, 1, `shmctl: info: no store "nosuch" in `+dir)
	r = shmctl(t, "--dir", dir, "info", "nosuch", "--json")
	requireOneLineError(t, r, 1, `"nosuch"`)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "info created nothing")
}
