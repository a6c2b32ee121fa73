//go:build linux && (amd64 || arm64)

package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/shmstore/shmstore"
)

// splitPath splits a PATH into String keys at each '/': "" and "/" are
// the root (no keys), and a '/' at either end is ignored. An empty key
// (a//b) is a mistake in the path.
func splitPath(path string) ([]shmstore.Value, error) {
	p := strings.Trim(path, "/")
	if p == "" {
		return nil, nil
	}
	parts := strings.Split(p, "/")
	keys := make([]shmstore.Value, len(parts))
	for i, k := range parts {
		if k == "" {
			return nil, fmt.Errorf("path %q has an empty key after %q; separate keys with a single '/'",
				path, strings.Join(parts[:i], "/"))
		}
		keys[i] = shmstore.String(k)
	}
	return keys, nil
}

// pathString writes keys as a path, for messages: each key as JSON names
// it (jsonKey), separated by '/'.
func pathString(keys []shmstore.Value) string {
	s := make([]string, len(keys))
	for i, k := range keys {
		s[i] = jsonKey(k)
	}
	return strings.Join(s, "/")
}

// keyFlags are get's and watch's keys beyond PATH: --key K, a String
// taken as it is ('/' and all), and --int-key N, an Int, appended to
// PATH's keys in the order given.
type keyFlags struct {
	extra []shmstore.Value
}

// addKeyFlags registers --key and --int-key.
func (k *keyFlags) addKeyFlags(fs *pflag.FlagSet) {
	fs.Var(keyFlag{k, false}, "key", "append the String key `K`, as it is ('/' and all), to PATH's keys; repeatable")
	fs.Var(keyFlag{k, true}, "int-key", "append the Int key `N` to PATH's keys; repeatable, in order with --key")
}

// pathKeys are the keys of path followed by the flags' keys.
func (k *keyFlags) pathKeys(path string) ([]shmstore.Value, error) {
	keys, err := splitPath(path)
	if err != nil {
		return nil, err
	}
	return append(keys, k.extra...), nil
}

// nameAndPath takes a store name and a path from the arguments of a
// command whose PATH --key or --int-key may stand for (get, watch,
// take); pathHint says what PATH is, for the message when it is missing.
func (k *keyFlags) nameAndPath(args []string, name, path *string, pathHint string) error {
	switch {
	case len(args) == 0:
		return errors.New("missing store NAME and PATH")
	case len(args) == 1 && len(k.extra) == 0:
		return fmt.Errorf("missing PATH (%s) or --key", pathHint)
	case len(args) <= 2:
		*name = args[0]
		if len(args) == 2 {
			*path = args[1]
		}
		return nil
	}
	return fmt.Errorf("want a store NAME and a PATH, got %d arguments", len(args))
}

// keyFlag is the pflag.Value of --key (a String) or --int-key (an Int).
type keyFlag struct {
	k     *keyFlags
	isInt bool
}

// Set appends a key.
func (f keyFlag) Set(s string) error {
	if !f.isInt {
		f.k.extra = append(f.k.extra, shmstore.String(s))
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("want an integer from %d to %d", math.MinInt64, math.MaxInt64)
	}
	f.k.extra = append(f.k.extra, shmstore.Int(n))
	return nil
}

// String is the default: no keys.
func (f keyFlag) String() string { return "" }

// Type names the value in pflag's messages.
func (f keyFlag) Type() string {
	if f.isInt {
		return "int"
	}
	return "string"
}
