//go:build linux && (amd64 || arm64)

package shmstore

import (
	"github.com/shmstore/shmstore/objects"
)

// Counter is a shared int64. AddBlind is applied at commit without
// reading the Counter, so any number of transactions add to one Counter
// at once without conflicting; Add and Get read it, like any other read.
//
// A Counter is valid only inside the transaction function that produced
// it; afterwards every method fails with ErrTxClosed.
type Counter struct {
	txRef
	c *objects.Counter
}

func (r txRef) counter(c *objects.Counter, err error) (Counter, error) {
	if err != nil {
		return Counter{}, err
	}
	return Counter{txRef: r.ref(), c: c}, nil
}

// Value is the Counter as a Value (to store it in another container too).
func (c Counter) Value() Value {
	if c.c == nil {
		return None
	}
	return c.val(c.c.Value())
}

// Add adds n and returns the new value as this transaction sees it (an ID
// sequence, like bbolt's NextSequence or Redis INCR). It reads the
// Counter, so transactions that Add to one Counter at once conflict and
// run one after another; Store.Add returns the new value without that.
func (c Counter) Add(n int64) (int64, error) {
	if err := c.live("Counter"); err != nil {
		return 0, err
	}
	return c.c.Add(n)
}

// AddBlind adds n at commit without reading the Counter: it never makes
// the transaction conflict with other adds.
func (c Counter) AddBlind(n int64) error {
	if err := c.live("Counter"); err != nil {
		return err
	}
	return c.c.AddBlind(n)
}

// Get reads the Counter: its committed value plus this transaction's
// adds.
func (c Counter) Get() (int64, error) {
	if err := c.live("Counter"); err != nil {
		return 0, err
	}
	return c.c.Get()
}
