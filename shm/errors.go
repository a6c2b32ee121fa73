package shm

import "errors"

// Sentinel errors. Functions wrap them with context (store name, path, what
// was expected); test with errors.Is.
var (
	// ErrLayout: the files are not a store this build can use (bad magic,
	// other layout version, other layout stamp), or are damaged (ErrDamaged).
	ErrLayout = errors.New("incompatible store layout")
	// ErrNotFound: no store by that name.
	ErrNotFound = errors.New("store not found")
	// ErrExists: a store by that name exists (Create with Exclusive).
	ErrExists = errors.New("store exists")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("store closed")
	// ErrForked: the Store was opened by the parent of this process; the Go
	// runtime does not survive fork, and the parent's slots are not ours.
	ErrForked = errors.New("store used in a forked child")
	// ErrPermission: the files belong to another user or their mode keeps
	// this process out.
	ErrPermission = errors.New("permission denied")
	// ErrStoreFull: every region the store may have exists (its maximum size).
	ErrStoreFull = errors.New("store at maximum size")
	// ErrTooManyProcs: the process table is full.
	ErrTooManyProcs = errors.New("too many attached processes")
	// ErrInUse: live processes are attached (Remove without force).
	ErrInUse = errors.New("store in use")
	// ErrBadOption: an Options field is out of range.
	ErrBadOption = errors.New("bad option")
)

// ErrNoRegion: a region number that is out of range or not created.
var ErrNoRegion = errors.New("no such region")

// ErrNoSlots: every slot of the store is owned by a live process.
var ErrNoSlots = errors.New("no free slot")

// ErrNotLeased: a slot released that this process had not leased.
var ErrNotLeased = errors.New("slot not leased")

// ErrDamaged: the store's files are damaged: the control file zeroed or cut
// short, the lock file missing, the control file missing beside region
// files, a region file missing or cut short. Such a store cannot be opened;
// Remove with force deletes it. An error that wraps ErrDamaged matches
// ErrLayout too.
var ErrDamaged error = damagedError{}

// damagedError is ErrDamaged's type: it reads as what it is, and it is a
// kind of ErrLayout (a store this build cannot use).
type damagedError struct{}

// Error is ErrDamaged's text.
func (damagedError) Error() string { return "the store is damaged" }

// Is makes ErrDamaged match ErrLayout too: a damaged store is one this
// build cannot use.
func (damagedError) Is(target error) bool { return target == ErrLayout }

// ErrNotStore: a directory is not a store's (it holds no control, lock or
// region file, or files no store has): Remove never deletes it, even with
// force, and Open never creates a store in it.
var ErrNotStore = errors.New("not a store")
