//go:build linux && (amd64 || arm64)

package shm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Check reports problems of the store's files and tables, one sentence
// each: processes that died and were not recovered, slots owned by free
// process entries, region files missing, of the wrong size, or present
// beyond the published count, held locks of dead processes. It only reads.
func (s *Store) Check() []string {
	var probs []string
	report := func(format string, args ...any) { probs = append(probs, fmt.Sprintf(format, args...)) }
	if _, err := os.Stat(filepath.Join(s.dir, controlName)); errors.Is(err, fs.ErrNotExist) {
		// Every file below is gone too: say why once.
		return []string{fmt.Sprintf("the store's files are gone (%s was removed, shmctl rm --force?) while this process was attached: what it writes now is lost when it closes", s.dir)}
	}
	for _, i := range s.DeadProcs() {
		e := s.Proc(i)
		report("process %d (pid %d) is dead and not recovered", i, e.PID.Load())
	}
	for j := 0; j < s.NumSlots(); j++ {
		o := s.Slot(j).Owner.Load()
		if o == 0 {
			continue
		}
		if int(o) > s.NumProcs() || s.Proc(int(o-1)).State.Load() == ProcFree {
			report("slot %d owned by process entry %d, which is free", j, int(o)-1)
		}
	}
	// The listing first, the count second: a region file is created
	// before the count that publishes it, so every file listed is at most
	// one past the count read afterwards (a grower still at work, or one
	// that died, whose file the next grower reuses).
	ents, _ := os.ReadDir(s.dir)
	n := s.hdr.Regions.Load()
	for i := uint32(1); i <= n; i++ { // a uint16 counter would wrap at 65535 regions
		id := uint16(i)
		fi, err := os.Stat(s.RegionPath(id))
		switch {
		case err != nil:
			report("region %d: %v", id, err)
		case fi.Size() != int64(s.hdr.RegionSize):
			report("region %d is %d bytes, want %d", id, fi.Size(), s.hdr.RegionSize)
		}
	}
	for _, e := range ents {
		var id int
		if _, err := fmt.Sscanf(e.Name(), "region-%05d", &id); err == nil && strings.HasPrefix(e.Name(), "region-") && uint32(id) > n+1 {
			report("region file %s beyond the %d published regions", filepath.Join(s.dir, e.Name()), n)
		}
	}
	for _, m := range []struct {
		name string
		mu   *Mutex
	}{{"grow", &s.hdr.growLock}, {"recovery", &s.hdr.recoverLock}} {
		if h := m.mu.Holder(); h != 0 && !s.TokenAlive(h) {
			report("%s lock held by dead process %d", m.name, TokenProc(h))
		}
	}
	return probs
}
