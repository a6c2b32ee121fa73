// Package handle defines the 64-bit handle that names a block anywhere in a
// store, in every process, whatever address its region is mapped at.
//
// A handle is pure data: this package encodes and decodes it and checks the
// parts that need no memory (null, field ranges, granule alignment). The full
// validation against the allocator's metadata — is the block's superblock of a
// size class whose boundaries the offset falls on, is the block allocated, is
// its generation the handle's — lives in package alloc (alloc.Allocator.Resolve),
// which owns that metadata.
//
// This package must never touch shared memory, import another shmstore
// package, or panic on any 64-bit value: every uint64 is a handle that decodes
// to something, and validation says whether that something can exist.
package handle
