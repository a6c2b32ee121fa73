//go:build linux && (amd64 || arm64)

package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/internal/layers"
	"github.com/shmstore/shmstore/shm"
)

// infoOptions are the flags and arguments of `shmctl info NAME`.
type infoOptions struct{ nameOnly }

// infoReport is what info prints with --json.
type infoReport struct {
	Name            string         `json:"name"`
	Dir             string         `json:"dir"`
	Created         time.Time      `json:"created"`
	RegionSize      uint64         `json:"region_size"`
	Regions         int            `json:"regions"`
	MaxRegions      int            `json:"max_regions"`
	MaxSize         uint64         `json:"max_size"`
	ControlBytes    uint64         `json:"control_bytes"`
	MappedBytes     uint64         `json:"mapped_bytes"`
	MetaBytes       uint64         `json:"meta_bytes"`
	ReservedBytes   uint64         `json:"reserved_bytes"`
	UsedBytes       uint64         `json:"used_bytes"`
	FreeBytes       uint64         `json:"free_bytes"`
	FreeSuperblocks int            `json:"free_superblocks"`
	LargeBlocks     int            `json:"large_blocks"`
	LargeBytes      uint64         `json:"large_bytes"`
	Slots           int            `json:"slots"`
	SlotsPerProc    int            `json:"slots_per_proc"`
	ProcTable       int            `json:"proc_table"`
	Recovered       uint64         `json:"recovered"`
	RegionList      []infoRegion   `json:"region_list"`
	Classes         []infoClass    `json:"classes"`
	Processes       []shm.ProcInfo `json:"processes"`
}

// infoRegion is one region file.
type infoRegion struct {
	ID      int       `json:"id"`
	Created time.Time `json:"created"`
	Path    string    `json:"path"`
}

// infoClass is one size class with superblocks. Classes of large blocks
// live in spans of several superblocks; Owned and Global count spans.
type infoClass struct {
	Class           int     `json:"class"`
	Size            uint32  `json:"size"`
	SpanSuperblocks int     `json:"span_superblocks"` // superblocks per span (1 up to 16 KiB)
	Spans           int     `json:"spans"`
	Superblocks     int     `json:"superblocks"` // spans x span_superblocks
	Owned           int     `json:"owned"`       // spans held by a heap
	Global          int     `json:"global"`      // spans in the global heap's bins
	BlocksUsed      uint64  `json:"blocks_used"`
	BlocksFree      uint64  `json:"blocks_free"`
	Fragmentation   float64 `json:"fragmentation"`
}

// run opens the store read-only and describes it.
func (o *infoOptions) run(w io.Writer) error {
	st, err := o.openReadOnly(o.name)
	if err != nil {
		return err
	}
	defer st.Close()
	rep := collectInfo(st)
	return o.emit(w, &rep)
}

// collectInfo reads everything info shows. It only reads.
func collectInfo(st *shmstore.Store) infoReport {
	s := layers.Of(st).Shm
	h := s.Header()
	stats := layers.Of(st).Alloc.Stats()
	rep := infoReport{
		Name:            st.Name(),
		Dir:             s.Dir(),
		Created:         time.Unix(0, h.Created),
		RegionSize:      s.RegionSize(),
		Regions:         stats.Regions,
		MaxRegions:      int(s.MaxRegions()),
		MaxSize:         s.RegionSize() * uint64(s.MaxRegions()),
		ControlBytes:    s.ControlBytes(),
		MappedBytes:     stats.RegionBytes,
		MetaBytes:       stats.MetaBytes,
		ReservedBytes:   stats.ReservedBytes,
		UsedBytes:       stats.UsedBytes,
		FreeBytes:       stats.FreeBytes,
		FreeSuperblocks: stats.FreeSuperblocks,
		LargeBlocks:     stats.LargeBlocks,
		LargeBytes:      stats.LargeBytes,
		Slots:           s.NumSlots(),
		SlotsPerProc:    int(h.SlotsPerProc),
		ProcTable:       s.NumProcs(),
		Recovered:       h.Recovered.Load(),
		RegionList:      []infoRegion{},
		Classes:         []infoClass{},
		Processes:       []shm.ProcInfo{},
	}
	for id := 1; id <= stats.Regions; id++ {
		rep.RegionList = append(rep.RegionList, infoRegion{ID: id,
			Created: s.RegionCreated(uint16(id)), Path: s.RegionPath(uint16(id))})
	}
	for _, c := range stats.Classes {
		span := 1
		if c.Class >= 1 && c.Class <= alloc.NumClasses {
			span = int(alloc.Classes[c.Class].Span)
		}
		rep.Classes = append(rep.Classes, infoClass{Class: c.Class, Size: c.Size, SpanSuperblocks: span,
			Spans: c.Superblocks, Superblocks: c.Superblocks * span, Owned: c.Owned, Global: c.Global,
			BlocksUsed: c.BlocksUsed, BlocksFree: c.BlocksFree, Fragmentation: c.Frag})
	}
	for _, p := range s.Procs() {
		if p.Slots == nil {
			p.Slots = []int{} // [] rather than null in JSON
		}
		rep.Processes = append(rep.Processes, p)
	}
	return rep
}

// writeText prints the report as a summary and three aligned tables:
// regions, size classes, processes.
func (r *infoReport) writeText(w io.Writer) error {
	live, dead := 0, 0
	for _, p := range r.Processes {
		if p.Alive {
			live++
		} else {
			dead++
		}
	}
	t := newTable(w)
	fmt.Fprintf(t, "store\t%s\n", r.Name)
	fmt.Fprintf(t, "directory\t%s\n", r.Dir)
	fmt.Fprintf(t, "created\t%s\n", r.Created.Format(time.DateTime))
	fmt.Fprintf(t, "regions\t%d of %d, %s each (max size %s)\n", r.Regions, r.MaxRegions,
		formatSize(r.RegionSize), formatSize(r.MaxSize))
	fmt.Fprintf(t, "control\t%s\n", formatSize(r.ControlBytes))
	fmt.Fprintf(t, "mapped\t%s\n", formatSize(r.MappedBytes))
	fmt.Fprintf(t, "metadata\t%s\n", formatSize(r.MetaBytes))
	fmt.Fprintf(t, "reserved\t%s in superblocks\n", formatSize(r.ReservedBytes))
	fmt.Fprintf(t, "used\t%s\n", formatSize(r.UsedBytes))
	fmt.Fprintf(t, "free\t%s (%d free superblocks)\n", formatSize(r.FreeBytes), r.FreeSuperblocks)
	fmt.Fprintf(t, "large blocks\t%d (%s)\n", r.LargeBlocks, formatSize(r.LargeBytes))
	fmt.Fprintf(t, "slots\t%d, at most %d per process\n", r.Slots, r.SlotsPerProc)
	fmt.Fprintf(t, "processes\t%d live, %d dead (table of %d; %d recovered so far)\n",
		live, dead, r.ProcTable, r.Recovered)
	if err := t.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	t = newTable(w)
	fmt.Fprintln(t, "REGION\tCREATED\tFILE")
	for _, g := range r.RegionList {
		fmt.Fprintf(t, "%d\t%s\t%s\n", g.ID, g.Created.Format(time.DateTime), g.Path)
	}
	if err := t.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	t = newTable(w)
	// SPAN is superblocks per span; SPANS, OWNED and GLOBAL count spans.
	fmt.Fprintln(t, "CLASS\tSIZE\tSPAN\tSPANS\tOWNED\tGLOBAL\tBLOCKS USED\tBLOCKS FREE\tFRAGMENTATION")
	for _, c := range r.Classes {
		fmt.Fprintf(t, "%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f%%\n", c.Class, formatSize(uint64(c.Size)),
			c.SpanSuperblocks, c.Spans, c.Owned, c.Global, c.BlocksUsed, c.BlocksFree, 100*c.Fragmentation)
	}
	if err := t.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(w)
	t = newTable(w)
	fmt.Fprintln(t, "PROC\tPID\tSTATE\tATTACHED\tSLOTS")
	for _, p := range r.Processes {
		fmt.Fprintf(t, "%d\t%d\t%s\t%s\t%s\n", p.Index, p.PID, p.State, p.Attached.Format(time.DateTime), intList(p.Slots))
	}
	return t.Flush()
}

// intList formats a list of ints as "1,2,3", or "-" when empty.
func intList(v []int) string {
	if len(v) == 0 {
		return "-"
	}
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}
