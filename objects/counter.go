//go:build linux && (amd64 || arm64)

package objects

import (
	"fmt"
	"unsafe"

	"github.com/shmstore/shmstore/handle"
)

// Counter is a shared int64 whose blind adds commute: AddBlind is buffered
// and applied at commit under the Counter's lock, without reading it
// first, so concurrent adders never conflict (Block-STM's aggregators).
// Reading it (Get, or Add, which returns the new value) is an ordinary
// read.
type Counter struct {
	tx *Tx
	h  handle.Handle
	p  unsafe.Pointer
}

type counterOverlay struct {
	c      Counter // a copy: the caller's Counter may stay on its stack (Tx.OpenCounter)
	delta  int64
	report *int64 // where prepare writes the value it commits (AddReporting), or nil
}

func (tx *Tx) counterAt(h handle.Handle) (*Counter, error) {
	p, err := tx.s.object(h, KindCounter)
	if err != nil {
		return nil, tx.doom(fmt.Errorf("objects: counter %v: %w", h, err))
	}
	return &Counter{tx: tx, h: h, p: p}, nil
}

// NewCounter makes a Counter holding zero (alive once linked).
func (tx *Tx) NewCounter() (*Counter, error) {
	h, p, err := tx.newObject(KindCounter, headerSize)
	if err != nil {
		return nil, err
	}
	return &Counter{tx: tx, h: h, p: p}, nil
}

// Handle is the Counter's handle.
func (c *Counter) Handle() handle.Handle { return c.h }

// Value is the Counter as a value.
func (c *Counter) Value() Value { return Value{kind: KindCounter, n: uint64(c.h)} }

// Add adds n and returns the Counter's new value as this transaction
// sees it (an ID sequence: bbolt's NextSequence, Redis INCR); ErrOverflow,
// and nothing added, if the value does not fit in an int64. It reads the
// Counter, so concurrent adders of it conflict; AddBlind does not.
func (c *Counter) Add(n int64) (int64, error) {
	if err := c.AddBlind(n); err != nil {
		return 0, err
	}
	return c.Get()
}

// AddReporting is AddBlind that also writes the value the commit stores
// into *out (when the transaction commits; the last successful attempt's
// value stands). A single add that wants its result without conflicting
// with other adders (Store.Add) uses it.
func (c *Counter) AddReporting(n int64, out *int64) error {
	if err := c.AddBlind(n); err != nil {
		return err
	}
	c.tx.counters[c.h].report = out
	return nil
}

// AddBlind adds n at commit without reading the Counter: it never makes
// the transaction conflict with other adds. A sum beyond int64 fails with
// ErrOverflow: here if this transaction's adds overflow, else at commit,
// which then writes nothing.
func (c *Counter) AddBlind(n int64) error {
	tx := c.tx
	if err := tx.write(); err != nil {
		return err
	}
	o, ok := tx.counters[c.h]
	if !ok {
		if err := tx.lockObject(c.h, c.p, false); err != nil {
			return err
		}
		if tx.counters == nil {
			tx.counters = map[handle.Handle]*counterOverlay{}
		}
		if n := len(tx.freeCtrs); n > 0 { // an overlay of an earlier attempt
			o, tx.freeCtrs = tx.freeCtrs[n-1], tx.freeCtrs[:n-1]
			o.c = *c
		} else {
			o = &counterOverlay{c: *c}
		}
		tx.counters[c.h] = o
		tx.ctrList = append(tx.ctrList, o)
	}
	d, ok := addInt64(o.delta, n)
	if !ok {
		return fmt.Errorf("objects: counter: add %d to the %d this transaction added: %w", n, o.delta, ErrOverflow)
	}
	o.delta = d
	return nil
}

// addInt64 is a+b, and whether it fits in an int64.
func addInt64(a, b int64) (int64, bool) {
	s := a + b
	return s, (a^s)&(b^s) >= 0 // overflow: a and b of one sign, s of the other
}

// Get reads the Counter (its committed value plus this transaction's
// adds).
func (c *Counter) Get() (int64, error) {
	tx := c.tx
	hd := hdrAt(c.p)
	a := addr(c.h, offLock)
	for {
		w, err := tx.t.ReadBegin(&hd.lock, a)
		if err != nil {
			return 0, err
		}
		v := int64(hd.aux.Load())
		if tx.t.ReadEnd(&hd.lock, a, w) {
			if o, ok := tx.counters[c.h]; ok {
				s, fits := addInt64(v, o.delta)
				if !fits {
					return 0, fmt.Errorf("objects: counter: %d plus this transaction's %d: %w", v, o.delta, ErrOverflow)
				}
				v = s
			}
			return v, nil
		}
	}
}

func (o *counterOverlay) prepare(tx *Tx) error {
	hd := hdrAt(o.c.p)
	old := int64(hd.aux.Load()) // stable: the Counter is locked
	v, fits := addInt64(old, o.delta)
	if !fits {
		// A blind add never read the value: the commit finds the
		// overflow, and fails with nothing written.
		return fmt.Errorf("objects: counter: %d plus %d: %w", old, o.delta, ErrOverflow)
	}
	if o.report != nil {
		*o.report = v
	}
	if o.delta == 0 {
		return nil
	}
	return tx.storeWord(tx.created[o.c.h], o.c.h, o.c.p, offAux, uint64(v))
}

// IntOf is the integer a value holds: an Int's, or a Counter's current
// value (read in this transaction).
func (tx *Tx) IntOf(v Value) (int64, error) {
	if v.kind != KindCounter {
		return v.AsInt()
	}
	c, err := tx.counterAt(v.hd())
	if err != nil {
		return 0, err
	}
	return c.Get()
}

// Counter returns the Counter under key, creating one (at zero) if key is
// absent.
func (d *Dict) Counter(key any) (*Counter, error) {
	v, err := d.container(key, KindCounter, func() (Value, error) {
		c, err := d.tx.NewCounter()
		if err != nil {
			return None, err
		}
		return c.Value(), nil
	})
	if err != nil {
		return nil, err
	}
	return d.tx.counterAt(v.hd())
}
