//go:build linux && (amd64 || arm64)

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/shmstore/shmstore"
)

// watchOptions are the flags and arguments of
// `shmctl watch NAME PATH [--key K] [--int-key N] [--count N]`.
type watchOptions struct {
	globalOptions
	keyFlags
	name  string
	path  string
	keys  []shmstore.Value
	count int // stop after this many lines (0: until interrupted)
	// ctx ends the watch; nil: Ctrl-C or SIGTERM (tests set their own).
	ctx context.Context
}

// addFlags registers --key, --int-key and --count.
func (o *watchOptions) addFlags(fs *pflag.FlagSet) {
	o.addKeyFlags(fs)
	fs.IntVar(&o.count, "count", 0, "stop after `N` values (the first is the value now; 0: until interrupted)")
}

// setArgs takes the store name and the path (which --key or --int-key
// may stand for).
func (o *watchOptions) setArgs(args []string) error {
	return o.nameAndPath(args, &o.name, &o.path, "keys from the root, like accounts/alice; / for the whole store")
}

// Validate checks the store name, the path and --count.
func (o *watchOptions) Validate() error {
	if err := validStoreName(o.name); err != nil {
		return err
	}
	if o.count < 0 {
		return errors.New("--count must be 0 or more")
	}
	var err error
	o.keys, err = o.pathKeys(o.path)
	return err
}

// watchLine is one line of `watch --json`.
type watchLine struct {
	Time   time.Time `json:"time"`
	Absent bool      `json:"absent"` // no value at the path now
	Value  any       `json:"value"`
}

// run prints the value at the path now and after each commit that changes
// it, one line each, until interrupted (or --count lines). It attaches
// (a transaction needs a slot) and writes no data; between changes it
// sleeps in Retry.
func (o *watchOptions) run(w io.Writer) error {
	ctx := o.ctx
	if ctx == nil {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
	}
	st, err := o.openExisting(o.name)
	if err != nil {
		return err
	}
	defer st.Close()
	n := 0
	for t, err := range watchKeys(ctx, st, o.keys) {
		absent := errors.Is(err, shmstore.ErrKeyNotFound)
		if err != nil && !absent {
			if ctx.Err() != nil {
				return nil // interrupted: the normal end
			}
			return fmt.Errorf("store %q: %w", o.name, err)
		}
		var j any
		if !absent {
			if j, err = jsonTree(t, pathString(o.keys)); err != nil {
				return fmt.Errorf("store %q: %w", o.name, err)
			}
		}
		if err := o.writeLine(w, watchLine{Time: time.Now(), Absent: absent, Value: j}); err != nil {
			return err
		}
		if n++; o.count > 0 && n >= o.count {
			return nil
		}
	}
	return nil
}

// watchKeys yields the tree at keys (as exportPath copies it) now and
// after each commit that changes it (Store.WatchFunc).
func watchKeys(ctx context.Context, st *shmstore.Store, keys []shmstore.Value) iter.Seq2[any, error] {
	return st.WatchFunc(ctx, func(tx *shmstore.Tx) (any, error) { return exportPath(tx, keys) })
}

// writeLine prints one change: a JSON object with --json, else the time
// and the value as compact JSON ("(absent)" when there is none).
func (o *watchOptions) writeLine(w io.Writer, l watchLine) error {
	if o.JSON {
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	val := "(absent)"
	if !l.Absent {
		b, err := json.Marshal(l.Value)
		if err != nil {
			return err
		}
		val = string(b)
	}
	_, err := fmt.Fprintf(w, "%s  %s\n", l.Time.Format("15:04:05.000"), val)
	return err
}
