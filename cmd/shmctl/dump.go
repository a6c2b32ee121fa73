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

// dumpOptions are the flags and arguments of
// `shmctl dump NAME [--format json|msgpack] [--out FILE]`.
type dumpOptions struct {
	globalOptions
	name   string
	format string
	out    string
}

// addFlags registers dump's flags.
func (o *dumpOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.format, "format", formatJSON, "`FORMAT` of the dump: json or msgpack (msgpack keeps Bytes and non-String keys; binary: not to a terminal)")
	fs.StringVar(&o.out, "out", "", "write the dump to `FILE` instead of standard output")
}

// setArgs takes the store name.
func (o *dumpOptions) setArgs(args []string) error { return storeNameArg(&o.name, args) }

// Validate checks the store name and the format.
func (o *dumpOptions) Validate() error {
	if err := validStoreName(o.name); err != nil {
		return err
	}
	return validFormat(o.format)
}

// dumpReport is what dump prints, when the dump went to --out, about it.
type dumpReport struct {
	Name   string `json:"name"`
	Format string `json:"format"`
	File   string `json:"file"`
	Keys   int    `json:"keys"` // top-level keys
	Bytes  int    `json:"bytes"`
}

// run copies the root Dict out in one View and writes it. The dump is
// encoded whole before anything is written, so a failure leaves no
// half-written file.
func (o *dumpOptions) run(w io.Writer) error {
	if err := refuseBinaryTerminal(o.format, o.out, w); err != nil {
		return err
	}
	st, err := o.openExisting(o.name)
	if err != nil {
		return err
	}
	defer st.Close()
	var root any
	err = st.View(func(tx *shmstore.Tx) error {
		var err error
		root, err = exportPath(tx, nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("store %q: %w", o.name, err)
	}
	var buf bytes.Buffer
	if o.format == formatMsgpack {
		err = writeTreeMsgpack(&buf, root)
	} else {
		err = writeTreeJSON(&buf, root, "")
	}
	if err != nil {
		return fmt.Errorf("store %q: %w", o.name, err)
	}
	if o.out == "" {
		_, err = w.Write(buf.Bytes())
		return err
	}
	if err := os.WriteFile(o.out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	rep := dumpReport{Name: o.name, Format: o.format, File: o.out, Keys: len(root.(*dictNode).keys), Bytes: buf.Len()}
	if o.JSON {
		return writeJSON(w, rep)
	}
	_, err = fmt.Fprintf(w, "dumped store %q to %s: %d top-level keys, %s of %s\n",
		rep.Name, rep.File, rep.Keys, formatSize(uint64(rep.Bytes)), rep.Format)
	return err
}
