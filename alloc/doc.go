// Package alloc is a Hoard-style allocator for blocks of shared memory,
// addressed by handles, that a process may die in the middle of at any
// instruction without losing or leaking a block.
//
// # The walk through an allocation
//
//  1. Size class. A request of up to MaxSmall (128 KiB) is rounded up to one
//     of 51 size classes: 16, 24, ... 64 in steps of 8, then four classes
//     per doubling (80, 96, 112, 128, 160, ...). Blocks are 8-byte aligned so
//     that they can hold 64-bit atomics; that alignment is why 16→32 has
//     only the classes 24 and 32 (a 17-byte request wastes 7 bytes, 29%);
//     everywhere else internal fragmentation is at most 25%. Classes up to a
//     quarter superblock live in one superblock; the ones above in spans of
//     up to 8 superblocks chosen so that at least 97% of the span is blocks
//     (a 20 KiB block would otherwise reserve 64 KiB: on a log-uniform mix
//     of 16 B to 256 KiB the reserved/requested ratio drops from 1.36 to
//     1.16). Larger requests take a run of whole superblocks of their own.
//  2. Superblock. A region file is cut into 64 KiB superblocks. Its first
//     superblocks hold the region's metadata: a pool bitmap and one 64-byte
//     descriptor per superblock (out of band, so that no forged handle can
//     make the allocator trust user memory). A small-class superblock
//     begins with its state array, one 32-bit word per block, then the
//     blocks. The one thing kept in user memory is the owner's free-list
//     link inside each free block; a pop checks the link against the states
//     and rebuilds the list from them if a stray write broke it.
//  3. Heap. Each slot (a goroutine's lease on the store) owns a heap: one
//     current superblock per class. Allocation pops the current superblock's
//     local free list (owner-only: no lock, no atomic), or bumps its
//     never-used tail. When it is exhausted the heap collects the remote
//     frees it has received, or gives it to the global heap and takes
//     another.
//  4. Global heap. Per class, superblocks nobody owns sit in four bins by
//     fullness under one lock per class. The heap takes the fullest that has
//     room (Hoard: emptier superblocks get the chance to drain). Below that,
//     the pool of free superblocks (one lock) hands out fresh ones; empty
//     superblocks of other classes are reclaimed into it when it runs dry;
//     a new region is created when even that fails; ErrOutOfMemory at the
//     store's maximum size. There, ordinary allocations leave the pool's
//     last superblocks, the reserve, to what commits and retirement need
//     (Use, Heap.Using; reserve.go says how much and why it is enough),
//     so that a full store can always free.
//  5. Free. A block freed by its superblock's owner goes back on the local
//     free list. Any other process marks it free with one CAS on its state
//     word (the remote free of mimalloc, see below) and bumps a hint counter;
//     the owner collects such blocks when its free list runs out.
//
// Hoard's invariant bounds how much a heap holds beyond its use by K
// superblocks per class; here K = 1, structurally: a heap holds exactly its
// current superblock of each class. Hoard's emptiness threshold (one
// quarter) shows up where the structure leaves a choice: superblocks in the
// global heap are binned by quarters of fullness, and a heap collects
// remote frees only once a superblock has received at least an eighth of
// its blocks back. So that frees make room for other classes and other
// processes once the store cannot grow: while an allocation is starved a
// heap hands back a current superblock as soon as it is wholly free; at the
// end of every lease at the maximum size, and before reporting
// ErrOutOfMemory, a heap hands back all of its wholly free ones; and the
// pool reclaims wholly free superblocks from the bins when it runs dry.
// (A goroutine that keeps a lease while idle keeps its heap's superblocks,
// until an allocation that found the store full asks every process to
// trim its idle heaps: AskTrim, Heap.Trim.) The pool places a single
// superblock at the top of a region and longer runs at the bottom, so
// that the free superblocks of a nearly full store stay in a row for the
// spans and large blocks that need them (placeRun).
//
// # Block states, and why a crash loses nothing
//
// A block's state word counts: even means free, odd means allocated. A
// handle carries the low 16 bits of the count it was allocated at, so a
// handle to a freed block stops resolving, and a forged one almost never
// does. Bit 31 marks a block freed remotely and not yet collected.
//
// The state array is the truth; free lists, counts and bins are derived and
// can be rebuilt:
//
//   - the owner's free list is exactly the free, not-pending blocks below
//     the bump index; if the owner dies mid-operation, recovery rebuilds it
//     from the states (no one else changes such a block: remote frees only
//     move allocated blocks to pending);
//   - a remote free is a single CAS, complete or not at any instant;
//   - an allocation writes the new handle into the slot's allocation log
//     before it flips the state, so an allocated block is always either
//     logged or handed over by the caller's own protocol; recovery frees
//     logged handles, and a handle whose generation no longer matches is
//     skipped, which makes recovery idempotent;
//   - bins and the pool bitmap are rebuilt from the descriptors by whoever
//     steals their lock from a dead holder (shm.Mutex reports the theft).
//
// Why a pending bit and not a remote-free stack (a CAS-pushed list drained
// by the owner, as in mimalloc): a stack push and the state change are two
// words, and a pusher killed between them leaves a block that is free but on
// no list, which recovery cannot tell apart from one that is being pushed by
// a live process. Collecting by scanning the state array costs one pass over
// at most 16 KiB, amortized over at least an eighth of the superblock's
// blocks.
//
// Stores within the dead process's own CPU are all visible to the recoverer:
// it learns of the death through the kernel (an OFD lock released). "Log
// before flip" also needs the compiler to keep two plain stores in program
// order; the Go memory model does not promise that, but the gc compiler
// does (every store is sequenced on its SSA memory chain), and the fast
// path depends on it instead of paying for an atomic store (XCHG on amd64).
//
// Known gap: a Free through a stale handle that is preempted between
// reading the superblock's layout and its CAS, while the superblock is
// emptied, returned and carved into another class, can CAS a word of the
// new layout's user data if it happens to hold the expected value. It needs
// a double free, a recycle and a preemption in one window of a few
// instructions. Closing it needs a grace period before a superblock changes
// layout; reclaim's epochs could give one, but the allocator, below
// reclaim, does not wait for them, so the gap is open.
//
// This package must never import txn, objects, reclaim or ipc, and never
// keep a Go pointer in shared memory.
package alloc
