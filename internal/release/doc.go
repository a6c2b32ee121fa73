//go:build linux && (amd64 || arm64)

// Package release has release stores: a store that no other CPU sees
// before any load or store this goroutine did before it (program order),
// and nothing more. That is what a commit's steps and a reader's epoch
// exit publish: "everything before this is done". sync/atomic's Store is
// sequentially consistent, which on amd64 is an XCHG: a full fence, some
// 20 cycles, that also orders the store before later loads, which these
// stores do not need.
//
//   - amd64 (TSO): every store is a release store; a plain MOV is
//     enough. Go's compiler keeps plain stores in program order with
//     respect to atomic operations (they are all on one memory chain), and
//     an aligned 4- or 8-byte MOV is single-copy atomic, so a concurrent
//     atomic load sees the old or the new value, never a mix.
//   - arm64: sync/atomic's Store is STLR, already a release store and no
//     more: used as it is.
//   - with the race detector: sync/atomic's Store everywhere, since the
//     detector knows nothing of TSO and would report a plain store that
//     an atomic load reads as a race (in Go memory; it does not watch
//     the mapped store).
//
// The pointers are sync/atomic's types, so that every other access to
// the word stays atomic; their value is the type's only non-zero-sized
// field, at offset 0.
package release
