// Package objects will hold the shared object kinds (DESIGN.md section 5):
// value cells (None, Bool, Int, Float inline; String and Bytes as handles to
// immutable blocks), Dict (striped by hash), List, Record, Counter and Queue,
// each behind an object header with kind, generation, reference count and a
// versioned lock word, and the store's root Dict.
//
// It reads and writes object memory only through txn, and defines the hash
// every language must agree on.
//
// It must never touch mmap or files directly (that is shm's), never keep a Go
// pointer in shared memory, and never change a reference count outside a
// commit.
package objects
