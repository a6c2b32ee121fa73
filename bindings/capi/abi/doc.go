// Package abi is the logic of libshmstore.so, the C ABI that
// bindings/capi/shmstore.h declares, without cgo so that it is tested and
// fuzzed as ordinary Go. The cgo shim (bindings/capi, package main) only
// converts types: each exported C function calls the Lib method of the
// same name, passing C pointers as Go pointers (nil for NULL) that the
// method reads or writes during the call and never keeps.
//
// What it owns:
//   - handle tables (handles.go): stores and transactions in tables
//     behind Lib.mu, objects in a table per attempt of a transaction;
//     a handle carries a generation, so a stale one never names a new
//     thing (ErrClosed, ErrTxClosed);
//   - the error mapping (codes.go): root sentinels to SHM_ERR_* codes by
//     errors.Is, messages copied (truncated, NUL-terminated) into the
//     caller's Error;
//   - every call's guard (lib.go): a panic becomes ErrOther with its text,
//     a forked child gets ErrForked, every handle and pointer is checked
//     (nil pointers: ErrBadArg);
//   - the transaction steps (tx.go) onto Store.Begin, Tx.End, Again,
//     Tx.Restart and Tx.Rollback, and OrElse's steps through
//     internal/layers;
//   - values in and out (value.go): String and Bytes out go into the
//     transaction's Buffer (C memory in the C library), containers out are
//     registered as object handles of the attempt;
//   - the one-shot operations (oneshot.go): one operation in a transaction
//     of its own (the retry loop inside the call), on a container named by
//     its id; values out go into the caller's buffer, containers in and
//     out by their ids. They run on the object space under the root
//     package (objects.Space.Run, from internal/layers), not through
//     Store.Update and View: nothing of their transaction is handed out,
//     so the root package's per-run Tx, boxed keys and values and
//     two-step opens buy nothing there, and a get or set of a scalar, a
//     counter get or add, allocates nothing.
//
// What the root package does not give, and how this package does without
// (until it does):
//   - the store's directory and region size (shm_store_path, the bound on
//     values passed in): read from internal/layers (shm.Store.Dir,
//     RegionSize);
//   - a Tx.End called again before Restart marks the Tx over without
//     giving back its slot: the ABI keeps its own attempt state and
//     refuses the step (ErrTxClosed) before it reaches End;
//   - a body's ErrRetry on an attempt doomed by a read that failed on a
//     snapshot that still holds ends the transaction in txn although Again
//     says otherwise: shm_tx_end marks the error it passes and, when it
//     comes back, ends the transaction (ErrOther); an ErrRetry no call of
//     the attempt returned is refused before End (ErrBadArg);
//   - a Queue is told from a List by Tx.Queue failing with
//     ErrTypeMismatch;
//   - a container is opened by its id in two steps, Tx.Open then Tx.Dict
//     (Counter, Queue): two resolves of its handle and allocations; the
//     one-shot operations open Dicts and Counters at the objects level
//     instead (objects.Tx.OpenDict, OpenCounter: one resolve, none),
//     Queues still in two steps;
//   - the Tx a function of Store.Update or View gets is a new one per run
//     (the root's own single operations reuse one per slot): the one-shot
//     operations use the slot's objects.Tx.
package abi
