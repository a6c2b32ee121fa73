//go:build linux && (amd64 || arm64)

package main

import (
	"bytes"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	"github.com/shmstore/shmstore"
)

// getOptions are the flags and arguments of
// `shmctl get NAME PATH [--key K] [--int-key N] [--format json|msgpack] [--out FILE]`.
type getOptions struct {
	globalOptions
	keyFlags
	name   string
	path   string
	keys   []shmstore.Value
	format string
	out    string
}

// addFlags registers --key, --int-key, --format and --out.
func (o *getOptions) addFlags(fs *pflag.FlagSet) {
	o.addKeyFlags(fs)
	fs.StringVar(&o.format, "format", formatJSON, "`FORMAT` of the value: json or msgpack (msgpack keeps Bytes and non-String keys; binary: not to a terminal)")
	fs.StringVar(&o.out, "out", "", "write the value to `FILE` (and print nothing) instead of standard output")
}

// setArgs takes the store name and the path (which --key or --int-key
// may stand for).
func (o *getOptions) setArgs(args []string) error {
	return o.nameAndPath(args, &o.name, &o.path, "keys from the root, like accounts/alice; / for the whole store")
}

// Validate checks the store name, the format and the path.
func (o *getOptions) Validate() error {
	if err := validStoreName(o.name); err != nil {
		return err
	}
	if err := validFormat(o.format); err != nil {
		return err
	}
	var err error
	o.keys, err = o.pathKeys(o.path)
	return err
}

// run reads the subtree at the path in one View and writes it, encoded
// whole, to w or --out. It attaches to the store (a transaction needs a
// slot) and writes nothing to it.
func (o *getOptions) run(w io.Writer) error {
	if err := refuseBinaryTerminal(o.format, o.out, w); err != nil {
		return err
	}
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
	var buf bytes.Buffer
	if o.format == formatMsgpack {
		err = writeTreeMsgpack(&buf, t)
	} else {
		err = writeTreeJSON(&buf, t, pathString(o.keys))
	}
	if err != nil {
		return fmt.Errorf("store %q: %w", o.name, err)
	}
	if o.out != "" {
		return os.WriteFile(o.out, buf.Bytes(), 0o644)
	}
	_, err = w.Write(buf.Bytes())
	return err
}
