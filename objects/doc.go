// Package objects holds the shared object kinds, layouts drawn in
// layout.go:
//
//   - values: None, Bool, Int, Float inline in a cell or entry; String and
//     Bytes in an immutable blob owned by the one cell that holds it;
//     containers by handle.
//   - Dict: 64 lock stripes, each with its own open-addressing table of
//     entries, so inserts and deletes in different stripes never conflict
//     and a stripe grows or shrinks on its own. An entry's key never
//     changes; a Set of an existing key stores the value in place under
//     the entry's own lock word (so overwrites of different keys never
//     conflict, nor write a lock word in common), a Delete retires it. A
//     read of a key checks both words: the stripe's for which entry holds
//     it, the entry's for its value.
//   - List: a ring of cells; a transaction buffers pops and pushes at both
//     ends and sets by index (O(1) each), and rewrites the ring only to
//     grow or shrink it, or for an insert or delete in the middle.
//   - Record: a class name and field names (an immutable schema block)
//     and a cell per field.
//   - Counter: an int64 whose Add is buffered and applied at commit under
//     its lock without a read, so adds never conflict.
//   - the root Dict, made once per store, whose handle is txn's root word.
//
// A transaction (Tx) reads through txn's versioned reads and buffers its
// writes in overlays (reads see their own writes), which Prepare turns
// into word stores at commit. One write skips the overlay: Dict.SetLast
// or DeleteLast, the last operation of a single-operation Set or Delete
// (the root package's and the C ABI's), which, when nothing else was
// written and no reference is to be counted (a scalar over a scalar or
// over no key, the delete of a scalar), keeps only that write: an
// existing entry is overwritten at commit under the entry's lock, a new
// key or a delete goes through the stripe's commit as a one-write
// overlay would (about a quarter of a Set's time was the overlay's: its
// pending entry, index, sort and clearing). Any later use of a Dict in
// the attempt turns it into an overlay write first. Reference counts count
// references from containers (and the root); they change only at commit,
// under reference-count-only locks. A count that reaches zero retires the
// object; its finalizer, run by reclaim once no transaction can see it,
// drops its references to children in bounded steps and frees its blocks.
// Account walks everything reachable and retired for Check.
//
// It defines the key hash every language must agree on (Hash). It reads
// and writes shared memory only between txn's ReadBegin/ReadEnd or under
// locks txn holds for it, resolves every handle it follows (with bounds
// checks only inside a read window: peek), and never touches mmap or files
// directly, keeps a Go pointer in shared memory, or changes a reference
// count outside a commit.
package objects
