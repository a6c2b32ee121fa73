// Package shmstore is a multi-process shared-memory object store for Linux.
//
// Several processes open the same store by name; what one allocates in it,
// the others can reach by handle. This package is the facade over the
// layers (see DESIGN.md): shm (files, mappings, processes), handle, alloc
// (the Hoard-style allocator). Transactions and shared objects come on top.
//
//	st, err := shmstore.Open("demo", shmstore.Options{})
//	if err != nil { ... }
//	defer st.Close()
//	h, err := st.Allocator().Lease()   // a slot's heap, for this goroutine
//	hd, buf, err := h.Alloc(100)       // hd means the same in every process
//	h.ForgetLog()                      // handed over: no longer freed on a crash
//	h.Release()
//
// A process that dies at any instruction loses nothing: the next process to
// attach, a lock waiter that times out, or `shmctl check` recovers it.
package shmstore
