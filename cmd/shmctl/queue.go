//go:build linux && (amd64 || arm64)

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/shmstore/shmstore"
)

// put and take: a Queue of the store from the command line. Each value
// goes in, and each item comes out, in its own transaction (a Queue.Put
// or Queue.Get, which wait in Retry while the Queue is full or empty), so
// other processes' producers and consumers interleave with them.

// Why a put or a take stopped before it was done.
var (
	// errTimedOut: --timeout passed while waiting for room or an item.
	errTimedOut = errors.New("timed out")
	// errInterrupted: Ctrl-C or SIGTERM while waiting.
	errInterrupted = errors.New("interrupted")
	// errQueueBound: --maxsize differs from the bound of the Queue there.
	errQueueBound = errors.New("the Queue has another bound")
)

// queueOptions are what put and take share: the store, the Queue's path
// (PATH, --key, --int-key, as get's), the bound a missing Queue is made
// with, and how long to wait for each value or item.
type queueOptions struct {
	globalOptions
	keyFlags
	command string // put or take, for errors
	name    string
	path    string
	keys    []shmstore.Value
	maxsize int
	timeout time.Duration
}

// addQueueFlags registers --key, --int-key, --maxsize and --timeout
// (waiting for what the command waits for: room, or an item).
func (o *queueOptions) addQueueFlags(fs *pflag.FlagSet, waitsFor string) {
	o.addKeyFlags(fs)
	fs.IntVar(&o.maxsize, "maxsize", 0,
		"make the Queue, if missing, holding at most `N` items (0: unbounded); a Queue that exists with another bound is an error")
	fs.DurationVar(&o.timeout, "timeout", 0, "wait at most `DURATION` for "+waitsFor+" (0: as long as it takes)")
}

// validateQueue checks the store name, the path (it must name a key: the
// root is a Dict), --maxsize and --timeout.
func (o *queueOptions) validateQueue() error {
	if err := validStoreName(o.name); err != nil {
		return err
	}
	var err error
	if o.keys, err = o.pathKeys(o.path); err != nil {
		return err
	}
	switch {
	case len(o.keys) == 0:
		return fmt.Errorf("path %q is the root, a Dict: give the Queue's key (jobs, or tasks/jobs)", o.path)
	case o.maxsize < 0:
		return fmt.Errorf("maxsize %d: want 0 (unbounded) or more", o.maxsize)
	case o.timeout < 0:
		return fmt.Errorf("timeout %v: want 0 (no limit) or more", o.timeout)
	}
	return nil
}

// queue returns the Queue at the path in tx, making it (and missing
// Dicts on the way) if absent.
func (o *queueOptions) queue(tx *shmstore.Tx) (shmstore.Queue, error) {
	last := len(o.keys) - 1
	d, err := dictAt(tx, o.keys[:last], true)
	if err != nil {
		return shmstore.Queue{}, err
	}
	q, err := d.Queue(o.keys[last], o.maxsize)
	if errors.Is(err, shmstore.ErrTypeMismatch) {
		if v, gerr := d.Get(o.keys[last]); gerr == nil {
			return shmstore.Queue{}, fmt.Errorf("%q is %s, not a Queue: %s needs a Queue (it makes one where PATH is missing): %w",
				pathString(o.keys), kindPhrase(v.Kind()), o.command, shmstore.ErrTypeMismatch)
		}
	}
	if err != nil {
		return shmstore.Queue{}, pathError(o.keys, err)
	}
	if o.maxsize > 0 && q.Cap() != o.maxsize {
		bound := "is unbounded"
		if q.Cap() > 0 {
			bound = fmt.Sprintf("holds at most %d items", q.Cap())
		}
		return shmstore.Queue{}, fmt.Errorf("%w: %q %s, not --maxsize %d", errQueueBound, pathString(o.keys), bound, o.maxsize)
	}
	return q, nil
}

// kindPhrase names a kind with its article: an Int, a Dict, None (a
// List here is one not made as a Queue, whose Value is of KindList too).
func kindPhrase(k shmstore.Kind) string {
	switch k {
	case shmstore.KindNone:
		return "None"
	case shmstore.KindInt:
		return "an Int"
	}
	return "a " + k.String()
}

// session opens the store and returns it with the context the command
// runs in, which Ctrl-C and SIGTERM end. Call done at the end.
func (o *queueOptions) session() (st *shmstore.Store, ctx context.Context, done func(), err error) {
	if st, err = o.openExisting(o.name); err != nil {
		return nil, nil, nil, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	return st, ctx, func() { stop(); _ = st.Close() }, nil
}

// transact runs fn in one transaction that waits (in fn's Retry) at most
// --timeout, and until ctx ends. A wait that ends so returns errTimedOut
// or errInterrupted; nothing fn did is then kept.
func (o *queueOptions) transact(ctx context.Context, st *shmstore.Store, fn func(tx *shmstore.Tx) error) error {
	tctx := ctx
	if o.timeout > 0 {
		var cancel context.CancelFunc
		tctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	err := st.UpdateContext(tctx, fn)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return errInterrupted
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w after %v", errTimedOut, o.timeout)
	}
	return err
}

// putOptions are the flags and arguments of
// `shmctl put NAME PATH VALUE... [--string] [--maxsize N] [--timeout D]`.
type putOptions struct {
	queueOptions
	asStrings bool
	args      []string
	values    []any // as readTree gives them: build stores them
}

// addFlags registers put's flags.
func (o *putOptions) addFlags(fs *pflag.FlagSet) {
	o.addQueueFlags(fs, "room in a full Queue, for each value")
	fs.BoolVar(&o.asStrings, "string", false, "take each VALUE as a String, as it is, instead of as JSON")
}

// setArgs takes the store name, the path and the values.
func (o *putOptions) setArgs(args []string) error {
	switch len(args) {
	case 0:
		return errors.New("missing store NAME, PATH and VALUE")
	case 1:
		return errors.New("missing PATH (the Queue's keys from the root, like jobs; / with --key) and VALUE")
	case 2:
		return errors.New("missing VALUE (JSON: 7, '\"text\"', '{\"id\": 7}'; or a String with --string)")
	}
	o.name, o.path, o.args = args[0], args[1], args[2:]
	return nil
}

// Validate checks the queue's options and decodes the values, each one
// JSON value by load's rules (unless --string).
func (o *putOptions) Validate() error {
	if err := o.validateQueue(); err != nil {
		return err
	}
	o.values = make([]any, len(o.args))
	for i, a := range o.args {
		if o.asStrings {
			o.values[i] = a
			continue
		}
		if a == "" {
			return fmt.Errorf("value %d is empty, which is no JSON value: the empty String is '\"\"' (or --string)", i+1)
		}
		g, err := readTree([]byte(a), formatJSON)
		if err != nil && !json.Valid([]byte(a)) {
			return fmt.Errorf("value %d (%s): %w; a String needs JSON's quotes ('\"%s\"'), or --string", i+1, a, err, a)
		}
		if err != nil {
			return fmt.Errorf("value %d (%s): %w", i+1, a, err)
		}
		o.values[i] = g
	}
	return nil
}

// putReport is what put prints with --json.
type putReport struct {
	Name   string `json:"name"`
	Path   string `json:"path"`
	Values int    `json:"values"` // values put
}

// run puts the values in order, each in its own transaction, waiting
// while the Queue is full.
func (o *putOptions) run(w io.Writer) error {
	st, ctx, done, err := o.session()
	if err != nil {
		return err
	}
	defer done()
	rep := putReport{Name: o.name, Path: pathString(o.keys)}
	for _, g := range o.values {
		err := o.transact(ctx, st, func(tx *shmstore.Tx) error {
			q, err := o.queue(tx)
			if err != nil {
				return err
			}
			v, err := build(tx, g)
			if err != nil {
				return err
			}
			return q.Put(v)
		})
		if err != nil {
			return fmt.Errorf("store %q: put %d of %d values into %q, then: %w", o.name, rep.Values, len(o.values), rep.Path, err)
		}
		rep.Values++
	}
	if o.JSON {
		return writeJSON(w, rep)
	}
	values := "values"
	if rep.Values == 1 {
		values = "value"
	}
	_, err = fmt.Fprintf(w, "put %d %s into %q of store %q\n", rep.Values, values, rep.Path, rep.Name)
	return err
}

// takeOptions are the flags and arguments of
// `shmctl take NAME PATH [--count N] [--maxsize N] [--timeout D]`.
type takeOptions struct {
	queueOptions
	count int // items to take (0: until --timeout finds none, or interrupted)
}

// addFlags registers take's flags.
func (o *takeOptions) addFlags(fs *pflag.FlagSet) {
	o.addQueueFlags(fs, "each item while the Queue is empty")
	fs.IntVar(&o.count, "count", 1, "take `N` items (0: until --timeout passes with none, or Ctrl-C)")
}

// setArgs takes the store name and the path (which --key or --int-key
// may stand for).
func (o *takeOptions) setArgs(args []string) error {
	return o.nameAndPath(args, &o.name, &o.path, "the Queue's keys from the root, like jobs")
}

// Validate checks the queue's options and --count.
func (o *takeOptions) Validate() error {
	if o.count < 0 {
		return fmt.Errorf("count %d: want 0 (until --timeout or Ctrl-C) or more", o.count)
	}
	return o.validateQueue()
}

// run takes --count items, each in its own transaction, waiting while
// the Queue is empty, and prints each as one line of JSON once its
// transaction has committed (with --json, Bytes tagged: tagBytes). An
// item that has no JSON form is not taken.
func (o *takeOptions) run(w io.Writer) error {
	st, ctx, done, err := o.session()
	if err != nil {
		return err
	}
	defer done()
	at := pathString(o.keys)
	for n := 0; o.count == 0 || n < o.count; n++ {
		var item any
		err := o.transact(ctx, st, func(tx *shmstore.Tx) error {
			q, err := o.queue(tx)
			if err != nil {
				return err
			}
			v, err := q.Get()
			if err != nil {
				return err
			}
			t, err := exportValue(tx, v)
			if err != nil {
				return err
			}
			item, err = jsonTreeOf(t, at, o.JSON)
			return err
		})
		switch {
		case o.count == 0 && (errors.Is(err, errTimedOut) || errors.Is(err, errInterrupted)):
			return nil // the end of an open-ended take
		case err != nil && o.count == 0:
			return fmt.Errorf("store %q: took %d items from %q, then: %w", o.name, n, at, err)
		case err != nil:
			return fmt.Errorf("store %q: took %d of %d items from %q, then: %w", o.name, n, o.count, at, err)
		}
		if err := encodeJSON(w, item, ""); err != nil {
			return err
		}
	}
	return nil
}
