//go:build linux && (amd64 || arm64)

package shmstore

import (
	"errors"

	"github.com/shmstore/shmstore/alloc"
	"github.com/shmstore/shmstore/handle"
	"github.com/shmstore/shmstore/objects"
	"github.com/shmstore/shmstore/shm"
	"github.com/shmstore/shmstore/txn"
)

// Sentinel errors. Every error the store returns wraps one of them with
// context (the store, the path, the key); test with errors.Is.
var (
	// ErrNotFound: no store by that name (Open with MustExist, Remove).
	ErrNotFound = shm.ErrNotFound
	// ErrExists: a store by that name exists (Open with MustCreate).
	ErrExists = shm.ErrExists
	// ErrLayout: the files are not a store this build can use (another
	// layout version or build, or damaged).
	ErrLayout = shm.ErrLayout
	// ErrClosed: the Store was closed.
	ErrClosed = shm.ErrClosed
	// ErrForked: the Store was opened by the parent of this process (the
	// Go runtime does not survive fork): open it again in the child.
	ErrForked = shm.ErrForked
	// ErrPermission: the store's files keep this process out.
	ErrPermission = shm.ErrPermission
	// ErrInUse: live processes are attached (Remove without force).
	ErrInUse = shm.ErrInUse
	// ErrBadOption: an Options field is out of range.
	ErrBadOption = shm.ErrBadOption
	// ErrTooManyProcs: the store's process table is full.
	ErrTooManyProcs = shm.ErrTooManyProcs
	// ErrDamaged: the store's files are damaged (a control file zeroed or
	// cut short, a region or the lock file missing or short); the message
	// names the file. It also matches ErrLayout. Remove with force deletes
	// such a store.
	ErrDamaged = shm.ErrDamaged
	// ErrNotStore: a directory is not a store's (foreign files in it, or
	// none of a store's): Remove never deletes it, and Open never creates
	// a store in it.
	ErrNotStore = shm.ErrNotStore

	// ErrStaleHandle: an object that no longer exists.
	ErrStaleHandle = handle.ErrStaleHandle
	// ErrBadHandle: a handle that never named an object.
	ErrBadHandle = handle.ErrBadHandle
	// ErrOutOfMemory: the store is at its maximum size and full of live
	// data, or of memory a long transaction still sees (the error names
	// it: slot, pid, how long it runs); the transaction was rolled back
	// and the store stays usable. Before returning it, Update collects
	// what was freed and waits for it a while (up to about 1.5 s). A
	// transaction that only frees (a delete, a pop, a value overwritten
	// with a smaller one) commits even when the store is full.
	ErrOutOfMemory = alloc.ErrOutOfMemory

	// ErrConflict: another transaction changed what this one read.
	// Update and View re-run their function on it and never return it;
	// it reaches a caller only from a single attempt.
	ErrConflict = txn.ErrConflict
	// ErrTxClosed: a Tx, Dict, List, Record, Counter or container Value
	// used after the transaction function that produced it returned (or
	// in another attempt of it). Objects live only inside their
	// transaction; keep paths or keys instead.
	ErrTxClosed = errors.New("transaction ended")
	// ErrTooLarge: a String or Bytes value larger than the store holds
	// (Store.MaxValueSize: its region size less metadata; a store created
	// with a larger Options.RegionSize holds larger ones), or a
	// transaction whose redo or allocation log overflows (split it into
	// smaller ones). The message says which, and the limit.
	ErrTooLarge = txn.ErrTooLarge
	// ErrReadOnly: a write inside View, or in a store opened read-only.
	ErrReadOnly = txn.ErrReadOnly
	// ErrTypeMismatch: a value of another kind than asked for, a Go value
	// that cannot be stored or be a key, or a malformed path.
	ErrTypeMismatch = objects.ErrTypeMismatch
	// ErrKeyNotFound: no such key, index or field.
	ErrKeyNotFound = objects.ErrNotFound
	// ErrOutOfRange: a List index outside the List.
	ErrOutOfRange = objects.ErrOutOfRange
	// ErrBadArgument: an argument outside what a call takes (a negative
	// Queue capacity, a nil function).
	ErrBadArgument = objects.ErrBadArgument
	// ErrOverflow: a Counter add whose result does not fit in an int64
	// (the Counter keeps its value).
	ErrOverflow = objects.ErrOverflow
	// ErrCorrupt: shared memory that does not hold what its layout says.
	ErrCorrupt = objects.ErrCorrupt
	// ErrCheck: Check found problems (the error lists them).
	ErrCheck = errors.New("store check failed")
)

// ErrRetry is what Tx.Retry returns, for the function to return: Update
// and View wait and run the function again; they never return it.
var ErrRetry = txn.ErrRetry
