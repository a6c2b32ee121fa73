//go:build linux && (amd64 || arm64)

package objects

import (
	"errors"
	"fmt"

	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/txn"
)

// Accounting is what a walk of the object space found: every block that
// is reachable from the root, every block that is retired (and what
// retired objects still own), and the references to each container. It
// is exact on a quiet store; on a busy one it is a close snapshot.
type Accounting struct {
	Reachable map[handle.Handle]bool
	Retired   map[handle.Handle]bool
	Refs      map[handle.Handle]int64
	Problems  []string
}

// Account walks the object space: from the root, then from every retired
// entry. It checks each container's reference count against the
// references found. The walk runs inside a read-only transaction, whose
// published epoch keeps everything it can reach from being freed under
// it (the walk itself reads without version checks: on a busy store what
// it finds is a close snapshot, which the caller confirms by walking
// again); a store opened read-only is walked without one.
func (s *Space) Account() Accounting {
	var ac Accounting
	if s.e.Store().ReadOnly() {
		return s.account()
	}
	if err := s.e.Run(true, func(*txn.Tx) error { ac = s.account(); return nil }); err != nil {
		return Accounting{Problems: []string{fmt.Sprintf("walk the object space: %v", err)}}
	}
	return ac
}

func (s *Space) account() Accounting {
	ac := Accounting{Reachable: map[handle.Handle]bool{}, Retired: map[handle.Handle]bool{},
		Refs: map[handle.Handle]int64{}}
	report := func(f string, args ...any) { ac.Problems = append(ac.Problems, fmt.Sprintf(f, args...)) }
	rcs := map[handle.Handle]uint64{}
	// Retired objects may be half freed by a finalizer under way (or one
	// that died in its free phase, to be run again): their stale blocks
	// are skipped, not reported.
	walk := func(start handle.Handle, into map[handle.Handle]bool, mode resolveMode) {
		stack := []handle.Handle{start}
		for len(stack) > 0 {
			h := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if _, seen := rcs[h]; seen {
				continue
			}
			p, err := s.object(h, KindNone)
			if mode == freeingMode && errors.Is(err, handle.ErrStaleHandle) {
				continue
			}
			if err != nil {
				report("object %v: %v", h, err)
				continue
			}
			rcs[h] = hdrAt(p).rc.Load()
			into[h] = true
			err = s.ownedBy(h, p, mode, func(c Value) {
				ac.Refs[c.hd()]++
				stack = append(stack, c.hd())
			}, func(b handle.Handle) { into[b] = true })
			if err != nil {
				report("object %v: %v", h, err)
			}
		}
	}
	ac.Refs[s.root]++
	walk(s.root, ac.Reachable, strictMode)
	s.e.Reclaimer().Each(func(h handle.Handle, kind uint8) {
		if kind != retireObject {
			ac.Retired[h] = true
			return
		}
		walk(h, ac.Retired, freeingMode)
	})
	for h, rc := range rcs {
		if refs := ac.Refs[h]; int64(rc) != refs && !(rc == 0 && refs == 0) {
			report("object %v: reference count %d, %d references found", h, rc, refs)
		}
	}
	for h := range ac.Reachable {
		if ac.Retired[h] {
			report("block %v is both reachable and retired", h)
		}
	}
	return ac
}
