//go:build linux && (amd64 || arm64)

package shm

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Lock tokens: the process index plus one in the low bits, the low bits of
// the incarnation above them. 31 bits, so that Mutex can shift in a flag.
const (
	tokenProcBits = 10
	tokenSeqBits  = 21
	tokenProcMask = 1<<tokenProcBits - 1
	tokenSeqMask  = 1<<tokenSeqBits - 1
)

func makeToken(proc int, seq uint64) uint32 {
	return uint32(seq&tokenSeqMask)<<tokenProcBits | uint32(proc+1)
}

// TokenProc is the process index a lock token names (-1 for none).
func TokenProc(tok uint32) int { return int(tok&tokenProcMask) - 1 }

// Layer is what a layer above shm plugs in so that shm can drive the
// recovery of a dead process and the release of a closing one's slots.
// The essay that opens txn/recover.go tells the whole of recovery: who
// calls RecoverDead and when, the order of the layers, and why each step
// can run again.
type Layer interface {
	// Recover repairs this layer's shared state after the process whose
	// lock token was deadToken died: its part of each of slots, and
	// anything guarded by a Mutex the process held. It must be idempotent:
	// a recoverer can die too, and the next one starts over.
	Recover(deadToken uint32, slots []int) error
	// Release tidies this layer's part of a slot that a live process gives
	// back when it closes the store.
	Release(slot int) error
}

type layerEntry struct {
	rank  int
	name  string
	layer Layer
}

// AddLayer registers a layer. Recovery and release run the layers from the
// highest rank down (txn.Rank 30, reclaim.Rank 20, alloc.Rank 10; ipc
// keeps nothing to recover and registers none), so each layer finds the
// ones below it intact.
func (s *Store) AddLayer(rank int, name string, l Layer) {
	s.layersMu.Lock()
	defer s.layersMu.Unlock()
	s.layers = append(s.layers, layerEntry{rank, name, l})
	sort.SliceStable(s.layers, func(i, j int) bool { return s.layers[i].rank > s.layers[j].rank })
}

func (s *Store) layerList() []layerEntry {
	s.layersMu.Lock()
	defer s.layersMu.Unlock()
	return append([]layerEntry(nil), s.layers...)
}

// attach takes a free entry of the process table. The order matters: the
// lock byte first, State last, so that whoever sees ProcAlive with a free
// lock byte knows the process is dead.
func (s *Store) attach() error {
	seq := s.hdr.AttachSeq.Add(1)
	start := procStartTime(os.Getpid())
	for i := 0; i < s.NumProcs(); i++ {
		e := s.Proc(i)
		if e.State.Load() != ProcFree {
			continue
		}
		if ofdLock(s.lockFile, 1+int64(i), unix.F_WRLCK, false) != nil {
			continue // another process is attaching at i
		}
		if e.State.Load() != ProcFree {
			_ = ofdUnlock(s.lockFile, 1+int64(i))
			continue
		}
		e.PID.Store(uint32(os.Getpid()))
		e.Start.Store(start)
		e.Attached.Store(time.Now().UnixNano())
		e.Seq.Store(seq)
		e.State.Store(ProcAlive)
		s.proc, s.token = i, makeToken(i, seq)
		s.leases.init(int(s.hdr.SlotsPerProc), s.NumSlots())
		return nil
	}
	return fmt.Errorf("shm: attach to %q: %d entries in use (dead ones are freed by recovery): %w",
		s.name, s.NumProcs(), ErrTooManyProcs)
}

// detach gives back the slots (each layer tidies its part, highest first)
// and the process entry. A crash midway leaves a dead entry, which
// recovery finishes.
func (s *Store) detach(owned []int) error {
	var errs []error
	for _, slot := range owned {
		for _, l := range s.layerList() {
			if err := l.layer.Release(slot); err != nil {
				errs = append(errs, fmt.Errorf("shm: release slot %d (%s): %w", slot, l.name, err))
			}
		}
		h := s.Slot(slot)
		h.LeasedAt.Store(0)
		h.Owner.Store(0)
	}
	if len(errs) > 0 {
		// Leave the entry for recovery to finish once we are gone.
		return errors.Join(errs...)
	}
	e := s.Proc(s.proc)
	e.PID.Store(0)
	e.Start.Store(0)
	e.Attached.Store(0)
	e.State.Store(ProcFree)
	return nil
}

// TokenAlive reports whether the process a lock token names is attached
// and alive.
func (s *Store) TokenAlive(tok uint32) bool {
	i := TokenProc(tok)
	if i < 0 || i >= s.NumProcs() {
		return false
	}
	e := s.Proc(i)
	if e.State.Load() != ProcAlive || uint32(e.Seq.Load()&tokenSeqMask) != tok>>tokenProcBits {
		return false
	}
	return s.procLockHeld(i)
}

// ProcAlive reports whether process-table entry i is an attached, living
// process.
func (s *Store) ProcAlive(i int) bool {
	if i < 0 || i >= s.NumProcs() || s.Proc(i).State.Load() != ProcAlive {
		return false
	}
	return s.procLockHeld(i)
}

// ProcToken is the lock token of entry i's current incarnation.
func (s *Store) ProcToken(i int) uint32 { return makeToken(i, s.Proc(i).Seq.Load()) }

func (s *Store) procLockHeld(i int) bool {
	if i == s.proc {
		return true
	}
	held, err := ofdHeld(s.lockFile, 1+int64(i))
	return err != nil || held // when in doubt, alive: never repair a live process
}

// LiveProcs returns the pids of the live attached processes.
func (s *Store) LiveProcs() []int {
	var pids []int
	for i := 0; i < s.NumProcs(); i++ {
		if s.ProcAlive(i) {
			pids = append(pids, int(s.Proc(i).PID.Load()))
		}
	}
	return pids
}

// DeadProcs returns the indexes of entries whose process died and has not
// been recovered yet.
func (s *Store) DeadProcs() []int {
	var dead []int
	for i := 0; i < s.NumProcs(); i++ {
		switch s.Proc(i).State.Load() {
		case ProcRecovering:
			dead = append(dead, i)
		case ProcAlive:
			if !s.ProcAlive(i) {
				dead = append(dead, i)
			}
		}
	}
	return dead
}

// NeedsRecovery reports whether this process saw a dead lock holder since
// the last RecoverDead. Layers call RecoverDead at a point where they hold
// no Mutex.
func (s *Store) NeedsRecovery() bool { return s.deadSeen.Load() }

// RecoverDead repairs what every dead process left behind: each registered
// layer, highest first, repairs its part of the dead process's slots and
// the locks it held; then the slots and the entry are freed. It returns how
// many processes it recovered. It must be called holding no Mutex.
func (s *Store) RecoverDead() (int, error) {
	if err := s.Guard(); err != nil {
		return 0, err
	}
	if s.proc < 0 {
		return 0, fmt.Errorf("shm: recover %q: store opened read-only: %w", s.name, ErrBadOption)
	}
	s.deadSeen.Store(false)
	if len(s.DeadProcs()) == 0 {
		return 0, nil
	}
	s.Lock(&s.hdr.recoverLock) // stolen or not: recovery is idempotent
	defer s.Unlock(&s.hdr.recoverLock)
	// A dead holder seen so far (recoverLock's own, too) is dead before
	// the scan below, which recovers it.
	s.deadSeen.Store(false)
	n := 0
	for _, i := range s.DeadProcs() { // again, under the lock
		if err := s.recoverProc(i); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// TryRecoverDead is RecoverDead for a caller that noticed a death in
// passing (an allocator that stole a lock): when a live process is
// recovering already it returns at once instead of waiting behind it, and
// the flag NeedsRecovery reads stays set for a later try.
func (s *Store) TryRecoverDead() (int, error) {
	if h := s.hdr.recoverLock.Holder(); h != 0 && s.TokenAlive(h) {
		return 0, nil
	}
	return s.RecoverDead()
}

func (s *Store) recoverProc(i int) error {
	e := s.Proc(i)
	tok := makeToken(i, e.Seq.Load())
	e.State.Store(ProcRecovering)
	var slots []int
	for j := 0; j < s.NumSlots(); j++ {
		if s.Slot(j).Owner.Load() == uint32(i+1) {
			slots = append(slots, j)
		}
	}
	for _, l := range s.layerList() {
		if err := l.layer.Recover(tok, slots); err != nil {
			return fmt.Errorf("shm: recover process %d (pid %d), layer %s: %w", i, e.PID.Load(), l.name, err)
		}
	}
	for _, j := range slots {
		h := s.Slot(j)
		h.LeasedAt.Store(0)
		h.Owner.Store(0)
	}
	e.PID.Store(0)
	e.Start.Store(0)
	e.Attached.Store(0)
	e.State.Store(ProcFree)
	s.hdr.Recovered.Add(1)
	return nil
}

// ProcInfo describes one process-table entry for inspection.
type ProcInfo struct {
	Index    int       `json:"index"`
	PID      int       `json:"pid"`
	Alive    bool      `json:"alive"`
	State    string    `json:"state"`
	Attached time.Time `json:"attached"`
	Slots    []int     `json:"slots"`
}

// Procs lists the used entries of the process table.
func (s *Store) Procs() []ProcInfo {
	var out []ProcInfo
	for i := 0; i < s.NumProcs(); i++ {
		e := s.Proc(i)
		st := e.State.Load()
		if st == ProcFree {
			continue
		}
		p := ProcInfo{Index: i, PID: int(e.PID.Load()), Alive: s.ProcAlive(i), State: "alive",
			Attached: time.Unix(0, e.Attached.Load())}
		if st == ProcRecovering {
			p.State = "recovering"
		} else if !p.Alive {
			p.State = "dead"
		}
		for j := 0; j < s.NumSlots(); j++ {
			if s.Slot(j).Owner.Load() == uint32(i+1) {
				p.Slots = append(p.Slots, j)
			}
		}
		out = append(out, p)
	}
	return out
}

// ofdLock takes an open-file-description lock on one byte of f. OFD locks
// belong to the open file, not the process (unlike POSIX record locks, a
// second open in the same process does not share them) and are released
// when the last descriptor of the open file closes: when the process dies.
func ofdLock(f *os.File, off int64, typ int16, wait bool) error {
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: off, Len: 1}
	cmd := unix.F_OFD_SETLK
	if wait {
		cmd = unix.F_OFD_SETLKW
	}
	for {
		err := unix.FcntlFlock(f.Fd(), cmd, &lk)
		if err == unix.EINTR {
			continue
		}
		return err
	}
}

func ofdUnlock(f *os.File, off int64) error {
	lk := unix.Flock_t{Type: unix.F_UNLCK, Whence: 0, Start: off, Len: 1}
	return unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
}

// ofdHeld reports whether another open file holds a write lock on byte off.
// Asking for a read lock works on a read-only descriptor too.
func ofdHeld(f *os.File, off int64) (bool, error) {
	lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: 0, Start: off, Len: 1}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
		return false, err
	}
	return lk.Type != unix.F_UNLCK, nil
}

// procStartTime reads field 22 of /proc/pid/stat (start time in clock ticks
// after boot); 0 if unreadable. Stored in the process entry beside the
// pid; nothing in shmstore reads it back (shmctl procs shows the pid
// only): liveness rests on the lock byte alone.
func procStartTime(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}
