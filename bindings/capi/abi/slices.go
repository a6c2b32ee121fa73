//go:build linux && (amd64 || arm64)

package abi

import (
	"context"
	"sync"
	"time"
)

// A caller that must check for signals between waits (Python: Ctrl-C)
// waits in slices: calls with a timeout of some 100 ms, again and again.
// A timer per call costs more than the operation it bounds (a
// context.WithTimeout and the engine's watch on it: some 1.4 us, where a
// queue's put costs 1), so a wait of sliceLen to twice that is bounded
// instead by a context shared by every such call of the Lib, which a
// ticker ends every sliceLen (and replaces): it ends such a wait within
// sliceLen, early rather than late (the caller calls again; its error is
// context.Canceled, a Timeout too). Longer waits have timers of their
// own: they end when asked. The ticker runs while calls hold slices, and
// stops after idleTicks ticks without any.

// sliceLen is the clock of the shared contexts.
const sliceLen = 100 * time.Millisecond

// idleTicks is how many ticks the ticker runs on without a call holding a
// slice before it stops.
const idleTicks = 10

// slices hands out the shared contexts.
type slices struct {
	mu    sync.Mutex
	cur   context.Context // the context that ends at the next tick; nil: no ticker runs
	end   context.CancelFunc
	users int // calls holding a slice
}

// get returns the current shared context and the function that gives it
// back, starting the ticker if it does not run.
func (s *slices) get() (context.Context, func()) {
	s.mu.Lock()
	if s.cur == nil {
		s.cur, s.end = context.WithCancel(context.Background())
		go s.tick()
	}
	ctx := s.cur
	s.users++
	s.mu.Unlock()
	return ctx, s.put
}

// put gives a slice back.
func (s *slices) put() {
	s.mu.Lock()
	s.users--
	s.mu.Unlock()
}

// tick ends the current context every sliceLen, making the next one, and
// stops once no call has held a slice for idleTicks ticks.
func (s *slices) tick() {
	t := time.NewTicker(sliceLen)
	defer t.Stop()
	for idle := 0; ; {
		<-t.C
		s.mu.Lock()
		end := s.end
		if s.users == 0 {
			idle++
		} else {
			idle = 0
		}
		if idle >= idleTicks {
			s.cur, s.end = nil, nil
			s.mu.Unlock()
			end()
			return
		}
		s.cur, s.end = context.WithCancel(context.Background())
		s.mu.Unlock()
		end()
	}
}

// waitContext is the context of a wait of at most timeoutMs milliseconds
// (negative or beyond maxWait: without limit; 0: 1 ms): a shared slice
// (which may end it early) for sliceLen to twice that, else a timer of
// its own.
func (l *Lib) waitContext(timeoutMs int64) (context.Context, func()) {
	d := time.Duration(timeoutMs) * time.Millisecond
	switch {
	case timeoutMs < 0 || timeoutMs > maxWait:
		return context.Background(), func() {}
	case d >= sliceLen && d < 2*sliceLen:
		return l.slices.get()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(max(timeoutMs, 1))*time.Millisecond)
	return ctx, cancel
}
