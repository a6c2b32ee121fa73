//go:build linux && (amd64 || arm64)

package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	"github.com/shmstore/shmstore"
	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/txn"
)

// loadOptions are the flags and arguments of
// `shmctl load NAME FILE [--format json|msgpack] [--path PATH]`.
type loadOptions struct {
	globalOptions
	name   string
	file   string
	format string
	path   string
	keys   []shmstore.Value
}

// addFlags registers load's flags.
func (o *loadOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.format, "format", formatJSON, "`FORMAT` of the file: json or msgpack")
	fs.StringVar(&o.path, "path", "", "set the keys into the Dict at `PATH` (made if missing) instead of the root")
}

// setArgs takes the store name and the file.
func (o *loadOptions) setArgs(args []string) error {
	switch len(args) {
	case 0:
		return errors.New("missing store NAME and FILE")
	case 1:
		return errors.New("missing FILE (- for standard input)")
	case 2:
		o.name, o.file = args[0], args[1]
		return nil
	}
	return fmt.Errorf("want a store NAME and a FILE, got %d arguments", len(args))
}

// Validate checks the store name, the format and the path.
func (o *loadOptions) Validate() error {
	if err := validStoreName(o.name); err != nil {
		return err
	}
	if err := validFormat(o.format); err != nil {
		return err
	}
	var err error
	o.keys, err = splitPath(o.path)
	return err
}

// loadReport is what load prints with --json.
type loadReport struct {
	Name   string `json:"name"`
	File   string `json:"file"`
	Format string `json:"format"`
	Path   string `json:"path"` // "" for the root
	Keys   int    `json:"keys"` // keys set
}

// run reads the whole file, then sets each of its top-level keys in one
// transaction: all of them or, on any error, none.
func (o *loadOptions) run(w io.Writer) error {
	g, err := o.read()
	if err != nil {
		return err
	}
	n := 0
	switch m := g.(type) {
	case map[string]any:
		n = len(m)
	case map[any]any:
		n = len(m)
	default:
		return fmt.Errorf("%s: want an object (a map) at the top, not %s", o.file, describeGeneric(g))
	}

	st, err := o.openExisting(o.name)
	if err != nil {
		return err
	}
	defer st.Close()
	err = st.Update(func(tx *shmstore.Tx) error {
		d, err := dictAt(tx, o.keys, true)
		if err != nil {
			return err
		}
		set := func(k, x any) error {
			v, err := build(tx, x)
			if err == nil {
				err = d.Set(k, v)
			}
			if err != nil {
				return fmt.Errorf("key %v: %w", k, err)
			}
			return nil
		}
		switch m := g.(type) {
		case map[string]any:
			for k, x := range m {
				if err := set(k, x); err != nil {
					return err
				}
			}
		case map[any]any:
			for k, x := range m {
				if err := set(k, x); err != nil {
					return err
				}
			}
		}
		return nil
	})
	// ErrTxTooLarge: the redo log or the allocation log overflowed (every
	// block a transaction allocates is logged until it commits). A single
	// value too large for the store is ErrTooLarge too, and says so itself.
	if errors.Is(err, txn.ErrTxTooLarge) || errors.Is(err, alloc.ErrLogFull) {
		return fmt.Errorf("store %q: nothing loaded: %s is too large for one transaction; split it into files of fewer keys: %w",
			o.name, o.file, err)
	}
	if err != nil {
		return fmt.Errorf("store %q: nothing loaded: %w", o.name, err)
	}
	rep := loadReport{Name: o.name, File: o.file, Format: o.format, Path: pathString(o.keys), Keys: n}
	if o.JSON {
		return writeJSON(w, rep)
	}
	into := "the root"
	if rep.Path != "" {
		into = fmt.Sprintf("%q", rep.Path)
	}
	_, err = fmt.Fprintf(w, "loaded %d keys from %s into %s of store %q\n", rep.Keys, rep.File, into, rep.Name)
	return err
}

// read decodes the file (- is standard input).
func (o *loadOptions) read() (any, error) {
	var r io.Reader = os.Stdin
	if o.file != "-" {
		f, err := os.Open(o.file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.file, err)
	}
	g, err := readTree(data, o.format)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.file, err)
	}
	return g, nil
}

// describeGeneric names the kind of a decoded value, for errors.
func describeGeneric(g any) string {
	switch g.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case []byte:
		return "bytes"
	case bool:
		return "a boolean"
	}
	return "a number"
}
