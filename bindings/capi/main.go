//go:build linux && (amd64 || arm64) && cgo

// Command capi is libshmstore.so, the C ABI declared in shmstore.h:
//
//	go build -buildmode=c-shared -o bin/libshmstore.so ./bindings/capi
//
// It is a thin shim in the manner of rclone's librclone and tailscale's
// libtailscale: each exported function converts its C arguments (pointers
// to shmstore.h's structs, whose layouts package abi mirrors, checked at
// compile time below) and calls the method of the same name of one
// abi.Lib, made when the library is loaded. Everything else (handle
// tables, the checks of every argument, panics, fork, error codes and
// messages) is package abi's, tested without cgo.
//
// The preamble includes shmstore.h itself, so the C compiler checks every
// exported function against the header's prototype (the const-qualified
// parameters are spelled through the typedefs below, which cgo keeps).
//
// Memory: C pointers are passed to package abi for the call only (it
// copies what it keeps); Go pointers are never handed to C. The one
// memory C reads after a call, the String and Bytes out-values, is a
// C.malloc'd block per transaction (cBuffer), reused by each call,
// grown as needed and freed when the transaction ends.
package main

/*
#cgo CFLAGS: -I${SRCDIR}
#include <stdlib.h>
#include "shmstore.h"

typedef const char shm_cchar;
typedef const char *const shm_cstr;
typedef const shm_value shm_cvalue;
typedef const shm_options shm_coptions;
*/
import "C"

import (
	"unsafe"

	"github.com/shmstore/shmstore/bindings/capi/abi"
)

// The C structs and abi's mirrors have one layout (a difference makes an
// array length negative or out of range: a compile error).
var (
	cv C.shm_value
	av abi.Value
	co C.shm_options
	ao abi.Options
	ce C.shm_error
	ae abi.Error

	_ = [1]struct{}{}[unsafe.Sizeof(cv)-unsafe.Sizeof(av)]
	_ = [1]struct{}{}[unsafe.Sizeof(av)-unsafe.Sizeof(cv)]
	_ = [1]struct{}{}[unsafe.Offsetof(cv.kind)-unsafe.Offsetof(av.Kind)]
	_ = [1]struct{}{}[unsafe.Offsetof(cv.b)-unsafe.Offsetof(av.B)]
	_ = [1]struct{}{}[unsafe.Offsetof(cv.i)-unsafe.Offsetof(av.I)]
	_ = [1]struct{}{}[unsafe.Offsetof(cv.f)-unsafe.Offsetof(av.F)]
	_ = [1]struct{}{}[unsafe.Offsetof(cv.str)-unsafe.Offsetof(av.Str)]
	_ = [1]struct{}{}[unsafe.Offsetof(cv.len)-unsafe.Offsetof(av.Len)]
	_ = [1]struct{}{}[unsafe.Offsetof(cv.obj)-unsafe.Offsetof(av.Obj)]

	_ = [1]struct{}{}[unsafe.Sizeof(co)-unsafe.Sizeof(ao)]
	_ = [1]struct{}{}[unsafe.Sizeof(ao)-unsafe.Sizeof(co)]
	_ = [1]struct{}{}[unsafe.Offsetof(co.dir)-unsafe.Offsetof(ao.Dir)]
	_ = [1]struct{}{}[unsafe.Offsetof(co.region_size)-unsafe.Offsetof(ao.RegionSize)]
	_ = [1]struct{}{}[unsafe.Offsetof(co.max_size)-unsafe.Offsetof(ao.MaxSize)]
	_ = [1]struct{}{}[unsafe.Offsetof(co.mode)-unsafe.Offsetof(ao.Mode)]
	_ = [1]struct{}{}[unsafe.Offsetof(co.create)-unsafe.Offsetof(ao.Create)]
	_ = [1]struct{}{}[unsafe.Offsetof(co.read_only)-unsafe.Offsetof(ao.ReadOnly)]

	_ = [1]struct{}{}[unsafe.Sizeof(ce)-unsafe.Sizeof(ae)]
	_ = [1]struct{}{}[unsafe.Sizeof(ae)-unsafe.Sizeof(ce)]
	_ = [1]struct{}{}[unsafe.Offsetof(ce.msg)-unsafe.Offsetof(ae.Msg)]

	_ = [1]struct{}{}[C.SHM_ABI_VERSION-abi.Version]
	_ = [1]struct{}{}[C.SHM_ERR_OTHER-abi.ErrOther]
	_ = [1]struct{}{}[C.SHM_ERR_OVERFLOW-abi.ErrOverflow]
	_ = [1]struct{}{}[C.SHM_ERR_RETRY_NOTHING-abi.ErrRetryNothing]
	_ = [1]struct{}{}[C.SHM_QUEUE-abi.KindQueue]
)

// lib is the library's one abi.Lib, made at load; a forked child is told
// apart by the flag fork.go's pthread_atfork handler sets.
var lib = abi.New(abi.Config{
	NewBuffer: func() abi.Buffer { return &cBuffer{} },
	Forked:    forked,
})

// cBuffer is a transaction's out-buffer in C memory (C.malloc), owned by
// the transaction: C reads it until its next call with the transaction,
// abi frees it when the transaction ends.
type cBuffer struct {
	p unsafe.Pointer
	n int
}

// Grow returns at least n bytes of C memory (nil if malloc fails).
func (b *cBuffer) Grow(n int) unsafe.Pointer {
	if n > b.n {
		m := max(n, 2*b.n, 64)
		p := C.malloc(C.size_t(m))
		if p == nil {
			return nil
		}
		C.free(b.p)
		b.p, b.n = p, m
	}
	return b.p
}

// Free frees the block.
func (b *cBuffer) Free() {
	C.free(b.p)
	b.p, b.n = nil, 0
}

// Conversions of C pointers for abi (for the call only).
func errp(e *C.shm_error) *abi.Error      { return (*abi.Error)(unsafe.Pointer(e)) }
func valp(v *C.shm_value) *abi.Value      { return (*abi.Value)(unsafe.Pointer(v)) }
func cvalp(v *C.shm_cvalue) *abi.Value    { return (*abi.Value)(unsafe.Pointer(v)) }
func u64p[T any](p *T) *uint64            { return (*uint64)(unsafe.Pointer(p)) }
func i64p(p *C.int64_t) *int64            { return (*int64)(unsafe.Pointer(p)) }
func str(s *C.shm_cchar) unsafe.Pointer   { return unsafe.Pointer(s) }
func optp(o *C.shm_coptions) *abi.Options { return (*abi.Options)(unsafe.Pointer(o)) }

// main is required of a c-shared build; the library works through its
// exported functions.
func main() {}

// Every function below: buffers passed in (names, paths, keys, values,
// field names) are the caller's, read during the call only; out-pointers
// are the caller's, written on success; err (may be NULL) is the
// caller's, written on failure. A String or Bytes out-value points into
// the transaction's buffer (the library's: valid until the next call with
// the transaction or its end; never freed by the caller).

// shm_abi_version returns SHM_ABI_VERSION.
//
//export shm_abi_version
func shm_abi_version() C.int64_t { return C.int64_t(lib.ABIVersion()) }

// shm_open opens a store into *out. name, opts (NULL: defaults) and
// opts->dir are the caller's, read during the call.
//
//export shm_open
func shm_open(name *C.shm_cchar, opts *C.shm_coptions, out *C.shm_store, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.Open(str(name), optp(opts), u64p(out), errp(err)))
}

// shm_close closes a store (SHM_ERR_IN_USE while its transactions run).
//
//export shm_close
func shm_close(s C.shm_store, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.Close(uint64(s), errp(err)))
}

// shm_remove deletes a store. name and dir (NULL: the default) are the
// caller's, read during the call.
//
//export shm_remove
func shm_remove(name *C.shm_cchar, dir *C.shm_cchar, force C.int32_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.Remove(str(name), str(dir), int32(force), errp(err)))
}

// shm_check checks the store (SHM_ERR_OTHER listing the problems in err).
//
//export shm_check
func shm_check(s C.shm_store, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.Check(uint64(s), errp(err)))
}

// shm_recover repairs what dead processes left behind and writes how many
// into the caller's *recovered.
//
//export shm_recover
func shm_recover(s C.shm_store, recovered *C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.Recover(uint64(s), i64p(recovered), errp(err)))
}

// shm_store_path copies the store's directory into buf, the caller's, of
// capacity bytes (NUL-terminated, truncated to fit).
//
//export shm_store_path
func shm_store_path(s C.shm_store, buf *C.char, capacity C.size_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.StorePath(uint64(s), unsafe.Pointer(buf), uintptr(capacity), errp(err)))
}

// shm_store_stats writes the store's used and maximum bytes into the
// caller's int64s.
//
//export shm_store_stats
func shm_store_stats(s C.shm_store, used *C.int64_t, maxBytes *C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.StoreStats(uint64(s), i64p(used), i64p(maxBytes), errp(err)))
}

// shm_tx_begin begins a transaction into *out (flags 1: read-only). Its
// out-buffer is the library's, freed when it ends.
//
//export shm_tx_begin
func shm_tx_begin(s C.shm_store, flags C.int32_t, out *C.shm_tx, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.TxBegin(uint64(s), int32(flags), u64p(out), errp(err)))
}

// shm_tx_begin_timeout is shm_tx_begin that waits at most timeout_ms for
// a slot (SHM_TIMEOUT: call it again).
//
//export shm_tx_begin_timeout
func shm_tx_begin_timeout(s C.shm_store, flags C.int32_t, timeout_ms C.int64_t, out *C.shm_tx, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.TxBeginTimeout(uint64(s), int32(flags), int64(timeout_ms), u64p(out), errp(err)))
}

// shm_tx_end ends the attempt whose body returned body_rc: SHM_OK,
// SHM_AGAIN, or < 0 (the transaction is over; its buffer freed).
//
//export shm_tx_end
func shm_tx_end(tx C.shm_tx, body_rc C.int32_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.TxEnd(uint64(tx), int32(body_rc), errp(err)))
}

// shm_tx_restart waits (timeout_ms; < 0: without limit) and begins the
// next attempt: SHM_OK, SHM_TIMEOUT, or < 0.
//
//export shm_tx_restart
func shm_tx_restart(tx C.shm_tx, timeout_ms C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.TxRestart(uint64(tx), int64(timeout_ms), errp(err)))
}

// shm_tx_rollback gives the transaction up (its buffer freed); SHM_OK.
//
//export shm_tx_rollback
func shm_tx_rollback(tx C.shm_tx) C.int32_t {
	return C.int32_t(lib.TxRollback(uint64(tx)))
}

// shm_tx_retry returns SHM_ERR_RETRY for the body to pass to shm_tx_end.
//
//export shm_tx_retry
func shm_tx_retry(tx C.shm_tx, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.TxRetry(uint64(tx), errp(err)))
}

// shm_tx_or_else_begin writes an OrElse token into the caller's *token:
// SHM_OK (run the first alternative) or SHM_FALSE (run the second).
//
//export shm_tx_or_else_begin
func shm_tx_or_else_begin(tx C.shm_tx, token *C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.TxOrElseBegin(uint64(tx), i64p(token), errp(err)))
}

// shm_tx_or_else_retried: the first alternative of token retried;
// returns SHM_ERR_RETRY.
//
//export shm_tx_or_else_retried
func shm_tx_or_else_retried(tx C.shm_tx, token C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.TxOrElseRetried(uint64(tx), int64(token), errp(err)))
}

// shm_tx_root writes the root Dict's object handle into *out.
//
//export shm_tx_root
func shm_tx_root(tx C.shm_tx, out *C.shm_obj, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.TxRoot(uint64(tx), u64p(out), errp(err)))
}

// shm_tx_open writes the container id names into the caller's *out.
//
//export shm_tx_open
func shm_tx_open(tx C.shm_tx, id C.uint64_t, out *C.shm_value, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.TxOpen(uint64(tx), uint64(id), valp(out), errp(err)))
}

// shm_obj_id writes the container's id into the caller's *id.
//
//export shm_obj_id
func shm_obj_id(tx C.shm_tx, o C.shm_obj, id *C.uint64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.ObjID(uint64(tx), uint64(o), u64p(id), errp(err)))
}

// shm_tx_new makes a Dict, List, Counter or Queue (capacity) into *out.
//
//export shm_tx_new
func shm_tx_new(tx C.shm_tx, kind C.int32_t, capacity C.int64_t, out *C.shm_obj, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.TxNew(uint64(tx), int32(kind), int64(capacity), u64p(out), errp(err)))
}

// shm_tx_new_record makes a Record into *out; cls and the fields array
// and its strings are the caller's, read during the call.
//
//export shm_tx_new_record
func shm_tx_new_record(tx C.shm_tx, cls *C.shm_cchar, fields *C.shm_cstr, nfields C.int32_t, out *C.shm_obj, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.TxNewRecord(uint64(tx), str(cls), unsafe.Pointer(fields), int32(nfields), u64p(out), errp(err)))
}

// shm_dict_get writes the value under key into *out (String and Bytes in
// the transaction's buffer). key is the caller's, read during the call.
//
//export shm_dict_get
func shm_dict_get(tx C.shm_tx, d C.shm_obj, key *C.shm_cvalue, out *C.shm_value, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.DictGet(uint64(tx), uint64(d), cvalp(key), valp(out), errp(err)))
}

// shm_dict_set stores val under key; both the caller's, copied.
//
//export shm_dict_set
func shm_dict_set(tx C.shm_tx, d C.shm_obj, key *C.shm_cvalue, val *C.shm_cvalue, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.DictSet(uint64(tx), uint64(d), cvalp(key), cvalp(val), errp(err)))
}

// shm_dict_delete removes key (the caller's, read during the call).
//
//export shm_dict_delete
func shm_dict_delete(tx C.shm_tx, d C.shm_obj, key *C.shm_cvalue, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.DictDelete(uint64(tx), uint64(d), cvalp(key), errp(err)))
}

// shm_dict_len writes the number of keys into *out.
//
//export shm_dict_len
func shm_dict_len(tx C.shm_tx, d C.shm_obj, out *C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.DictLen(uint64(tx), uint64(d), i64p(out), errp(err)))
}

// shm_dict_key writes the i-th key of the snapshot into *out (String and
// Bytes in the transaction's buffer).
//
//export shm_dict_key
func shm_dict_key(tx C.shm_tx, d C.shm_obj, i C.int64_t, out *C.shm_value, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.DictKey(uint64(tx), uint64(d), int64(i), valp(out), errp(err)))
}

// shm_dict_container writes the (made if missing) container under key
// into *out; key is the caller's, read during the call.
//
//export shm_dict_container
func shm_dict_container(tx C.shm_tx, d C.shm_obj, key *C.shm_cvalue, kind C.int32_t, capacity C.int64_t, out *C.shm_obj, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.DictContainer(uint64(tx), uint64(d), cvalp(key), int32(kind), int64(capacity), u64p(out), errp(err)))
}

// shm_list_len writes the List's length into *out.
//
//export shm_list_len
func shm_list_len(tx C.shm_tx, l C.shm_obj, out *C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.ListLen(uint64(tx), uint64(l), i64p(out), errp(err)))
}

// shm_list_get writes item i into *out (String and Bytes in the
// transaction's buffer).
//
//export shm_list_get
func shm_list_get(tx C.shm_tx, l C.shm_obj, i C.int64_t, out *C.shm_value, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.ListGet(uint64(tx), uint64(l), int64(i), valp(out), errp(err)))
}

// shm_list_set replaces item i with val (the caller's, copied).
//
//export shm_list_set
func shm_list_set(tx C.shm_tx, l C.shm_obj, i C.int64_t, val *C.shm_cvalue, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.ListSet(uint64(tx), uint64(l), int64(i), cvalp(val), errp(err)))
}

// shm_list_insert puts val (the caller's, copied) before item i.
//
//export shm_list_insert
func shm_list_insert(tx C.shm_tx, l C.shm_obj, i C.int64_t, val *C.shm_cvalue, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.ListInsert(uint64(tx), uint64(l), int64(i), cvalp(val), errp(err)))
}

// shm_list_delete removes item i.
//
//export shm_list_delete
func shm_list_delete(tx C.shm_tx, l C.shm_obj, i C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.ListDelete(uint64(tx), uint64(l), int64(i), errp(err)))
}

// shm_list_append adds val (the caller's, copied) at the end.
//
//export shm_list_append
func shm_list_append(tx C.shm_tx, l C.shm_obj, val *C.shm_cvalue, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.ListAppend(uint64(tx), uint64(l), cvalp(val), errp(err)))
}

// shm_list_prepend adds val (the caller's, copied) at the front.
//
//export shm_list_prepend
func shm_list_prepend(tx C.shm_tx, l C.shm_obj, val *C.shm_cvalue, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.ListPrepend(uint64(tx), uint64(l), cvalp(val), errp(err)))
}

// shm_list_pop removes the last (front: first) item into *out (String and
// Bytes in the transaction's buffer).
//
//export shm_list_pop
func shm_list_pop(tx C.shm_tx, l C.shm_obj, front C.int32_t, out *C.shm_value, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.ListPop(uint64(tx), uint64(l), int32(front), valp(out), errp(err)))
}

// shm_record_class writes the class name, a String in the transaction's
// buffer, into *out.
//
//export shm_record_class
func shm_record_class(tx C.shm_tx, r C.shm_obj, out *C.shm_value, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.RecordClass(uint64(tx), uint64(r), valp(out), errp(err)))
}

// shm_record_nfields writes the number of fields into *out.
//
//export shm_record_nfields
func shm_record_nfields(tx C.shm_tx, r C.shm_obj, out *C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.RecordNFields(uint64(tx), uint64(r), i64p(out), errp(err)))
}

// shm_record_field writes the i-th field name, a String in the
// transaction's buffer, into *out.
//
//export shm_record_field
func shm_record_field(tx C.shm_tx, r C.shm_obj, i C.int64_t, out *C.shm_value, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.RecordField(uint64(tx), uint64(r), int64(i), valp(out), errp(err)))
}

// shm_record_get writes field's value into *out (String and Bytes in the
// transaction's buffer); field is the caller's, read during the call.
//
//export shm_record_get
func shm_record_get(tx C.shm_tx, r C.shm_obj, field *C.shm_cchar, out *C.shm_value, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.RecordGet(uint64(tx), uint64(r), str(field), valp(out), errp(err)))
}

// shm_record_set sets field to val (both the caller's, copied).
//
//export shm_record_set
func shm_record_set(tx C.shm_tx, r C.shm_obj, field *C.shm_cchar, val *C.shm_cvalue, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.RecordSet(uint64(tx), uint64(r), str(field), cvalp(val), errp(err)))
}

// shm_counter_get writes the Counter's value into *out.
//
//export shm_counter_get
func shm_counter_get(tx C.shm_tx, c C.shm_obj, out *C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.CounterGet(uint64(tx), uint64(c), i64p(out), errp(err)))
}

// shm_counter_add adds n and writes the new value into *out.
//
//export shm_counter_add
func shm_counter_add(tx C.shm_tx, c C.shm_obj, n C.int64_t, out *C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.CounterAdd(uint64(tx), uint64(c), int64(n), i64p(out), errp(err)))
}

// shm_counter_add_blind adds n at commit.
//
//export shm_counter_add_blind
func shm_counter_add_blind(tx C.shm_tx, c C.shm_obj, n C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.CounterAddBlind(uint64(tx), uint64(c), int64(n), errp(err)))
}

// shm_queue_put adds val (the caller's, copied) to the Queue.
//
//export shm_queue_put
func shm_queue_put(tx C.shm_tx, q C.shm_obj, val *C.shm_cvalue, try_only C.int32_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.QueuePut(uint64(tx), uint64(q), cvalp(val), int32(try_only), errp(err)))
}

// shm_queue_get removes the first item into *out (String and Bytes in the
// transaction's buffer).
//
//export shm_queue_get
func shm_queue_get(tx C.shm_tx, q C.shm_obj, try_only C.int32_t, out *C.shm_value, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.QueueGet(uint64(tx), uint64(q), int32(try_only), valp(out), errp(err)))
}

// shm_queue_peek writes item i of the queue (without taking it) into the
// caller's *out.
//
//export shm_queue_peek
func shm_queue_peek(tx C.shm_tx, q C.shm_obj, i C.int64_t, out *C.shm_value, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.QueuePeek(uint64(tx), uint64(q), int64(i), valp(out), errp(err)))
}

// shm_queue_len writes the number of items into *out.
//
//export shm_queue_len
func shm_queue_len(tx C.shm_tx, q C.shm_obj, out *C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.QueueLen(uint64(tx), uint64(q), i64p(out), errp(err)))
}

// shm_queue_cap writes the Queue's bound (0: unbounded) into *out.
//
//export shm_queue_cap
func shm_queue_cap(tx C.shm_tx, q C.shm_obj, out *C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.QueueCap(uint64(tx), uint64(q), i64p(out), errp(err)))
}

// The one-shot operations: one call, one transaction of its own. Keys
// and values are the caller's, read during the call; buf is the caller's,
// written during the call (a String or Bytes out-value points into it).

// shm_op_dict_get reads the value under key in the Dict id.
//
//export shm_op_dict_get
func shm_op_dict_get(s C.shm_store, d C.uint64_t, key *C.shm_cvalue, timeout_ms C.int64_t, out *C.shm_value, buf *C.char, capacity C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.OpDictGet(uint64(s), uint64(d), cvalp(key), int64(timeout_ms), valp(out), unsafe.Pointer(buf), int64(capacity), errp(err)))
}

// shm_op_dict_set sets key to val in the Dict id.
//
//export shm_op_dict_set
func shm_op_dict_set(s C.shm_store, d C.uint64_t, key *C.shm_cvalue, val *C.shm_cvalue, timeout_ms C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.OpDictSet(uint64(s), uint64(d), cvalp(key), cvalp(val), int64(timeout_ms), errp(err)))
}

// shm_op_dict_delete removes key from the Dict id.
//
//export shm_op_dict_delete
func shm_op_dict_delete(s C.shm_store, d C.uint64_t, key *C.shm_cvalue, timeout_ms C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.OpDictDelete(uint64(s), uint64(d), cvalp(key), int64(timeout_ms), errp(err)))
}

// shm_op_counter_get writes the Counter id's value into *out.
//
//export shm_op_counter_get
func shm_op_counter_get(s C.shm_store, c C.uint64_t, timeout_ms C.int64_t, out *C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.OpCounterGet(uint64(s), uint64(c), int64(timeout_ms), i64p(out), errp(err)))
}

// shm_op_counter_add adds n to the Counter id (*out: the new value,
// unless blind).
//
//export shm_op_counter_add
func shm_op_counter_add(s C.shm_store, c C.uint64_t, n C.int64_t, blind C.int32_t, timeout_ms C.int64_t, out *C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.OpCounterAdd(uint64(s), uint64(c), int64(n), int32(blind), int64(timeout_ms), i64p(out), errp(err)))
}

// shm_op_queue_put puts val on the Queue id, waiting at most timeout_ms
// while it is full.
//
//export shm_op_queue_put
func shm_op_queue_put(s C.shm_store, q C.uint64_t, val *C.shm_cvalue, timeout_ms C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.OpQueuePut(uint64(s), uint64(q), cvalp(val), int64(timeout_ms), errp(err)))
}

// shm_op_queue_get takes the first item of the Queue id, waiting at most
// timeout_ms while it is empty.
//
//export shm_op_queue_get
func shm_op_queue_get(s C.shm_store, q C.uint64_t, timeout_ms C.int64_t, out *C.shm_value, buf *C.char, capacity C.int64_t, err *C.shm_error) C.int32_t {
	return C.int32_t(lib.OpQueueGet(uint64(s), uint64(q), int64(timeout_ms), valp(out), unsafe.Pointer(buf), int64(capacity), errp(err)))
}
