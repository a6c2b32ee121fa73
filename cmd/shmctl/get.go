//go:build linux && (amd64 || arm64)

package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/shmstore/shmstore"
)

// getOptions are the flags and arguments of
// `shmctl get NAME PATH [--key K] [--int-key N]`.
type getOptions struct {
	globalOptions
	keyFlags
	name string
	path string
	keys []shmstore.Value
}

// addFlags registers --key and --int-key.
func (o *getOptions) addFlags(fs *pflag.FlagSet) { o.addKeyFlags(fs) }

// setArgs takes the store name and the path (which --key or --int-key
// may stand for).
func (o *getOptions) setArgs(args []string) error {
	switch {
	case len(args) == 0:
		return errors.New("missing store NAME and PATH")
	case len(args) == 1 && len(o.extra) == 0:
		return errors.New("missing PATH (keys from the root, like accounts/alice; / for the whole store) or --key")
	case len(args) <= 2:
		o.name = args[0]
		if len(args) == 2 {
			o.path = args[1]
		}
		return nil
	}
	return fmt.Errorf("want a store NAME and a PATH, got %d arguments", len(args))
}

// Validate checks the store name and the path.
func (o *getOptions) Validate() error {
	if err := validStoreName(o.name); err != nil {
		return err
	}
	var err error
	o.keys, err = o.pathKeys(o.path)
	return err
}

// run reads the subtree at the path in one View and prints it as JSON.
// It attaches to the store (a transaction needs a slot) and writes nothing.
func (o *getOptions) run(w io.Writer) error {
	st, err := o.openExisting(o.name)
	if err != nil {
		return err
	}
	defer st.Close()
	var t any
	err = st.View(func(tx *shmstore.Tx) error {
		var err error
		t, err = exportPath(tx, o.keys)
		return err
	})
	if err != nil {
		return fmt.Errorf("store %q: %w", o.name, err)
	}
	return writeTreeJSON(w, t, pathString(o.keys))
}
