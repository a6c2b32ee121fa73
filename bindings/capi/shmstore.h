/*
 * shmstore.h: the C ABI of libshmstore.so, the shmstore shared-memory
 * object store built from Go with -buildmode=c-shared.
 *
 * ABI version 2. Check shm_abi_version() == SHM_ABI_VERSION at load time.
 * Version 2 added SHM_ERR_RETRY_NOTHING (version 1 answered SHM_ERR_OTHER
 * there), shm_recover, shm_queue_peek, shm_tx_begin_timeout, SHM_SHORT
 * and the one-shot operations (shm_op_*).
 *
 * Model
 *   - Opaque 64-bit handles cross the boundary, never pointers into Go
 *     memory: a store (shm_store), a transaction (shm_tx), and an object
 *     reached in a transaction (shm_obj). 0 is never a valid handle.
 *   - Every operation runs in a transaction. The caller's language runs
 *     the retry loop, so Go never calls back into the caller:
 *
 *         shm_tx tx; shm_tx_begin(store, 0, &tx, &err);
 *         for (;;) {
 *             rc = body(tx);                      // shm_dict_get ... on tx
 *             rc = shm_tx_end(tx, rc, &err);      // commits if the body succeeded
 *             if (rc != SHM_AGAIN) break;         // SHM_OK: committed; < 0: failed (tx is over)
 *             while ((rc = shm_tx_restart(tx, 100, &err)) == SHM_TIMEOUT)
 *                 if (signal_pending()) { shm_tx_rollback(tx); goto interrupted; }
 *             if (rc != SHM_OK) { shm_tx_rollback(tx); break; }
 *         }
 *
 *     The body stops at the first call that returns SHM_ERR_CONFLICT or
 *     SHM_ERR_RETRY and passes that code to shm_tx_end, which answers
 *     SHM_AGAIN. A body that failed otherwise passes its own negative code
 *     (or SHM_ERR_OTHER); a body whose reads failed still gets SHM_AGAIN
 *     (it saw a state that never existed). The body may run more than once.
 *   - Objects (shm_obj) die with the attempt that produced them: after
 *     shm_tx_end or shm_tx_restart every call on them fails with
 *     SHM_ERR_TX_CLOSED. To keep a container across transactions, keep its
 *     id (shm_obj_id) and reopen it with shm_tx_open.
 *   - A transaction is used by one thread at a time. Stores are shared by
 *     all threads. Blocking calls (shm_tx_restart, and shm_tx_begin and
 *     shm_tx_begin_timeout while the process's slots are all in use) do
 *     not hold any lock of the caller's; the caller releases its own
 *     (Python: the GIL) around them.
 *   - Timeouts (timeout_ms): < 0 waits without limit; 0 the shortest wait
 *     (1 ms; a one-shot queue call does not wait then). A timeout of 100
 *     to 199 ms, the slice of a caller that checks for signals between
 *     calls, is kept by a clock the library shares between such calls (a
 *     timer per call would cost more than the call): the wait ends within
 *     100 ms, sooner than asked rather than later. Others end when asked.
 *   - fork(): a child of a process that has loaded this library must not
 *     call it (the Go runtime does not survive fork). Every entry point
 *     returns SHM_ERR_FORKED in such a child; callers should also refuse
 *     in their own code before calling in, as Go may already be wedged.
 *
 * Errors
 *   Functions return an int32 code: SHM_OK (0), a positive status
 *   (SHM_AGAIN, SHM_TIMEOUT, SHM_FALSE), or a negative SHM_ERR_*. The last
 *   argument of every function that can fail is a shm_error* (may be NULL),
 *   which the library fills on failure with the code and a NUL-terminated
 *   message (truncated to fit). The caller owns the struct.
 *
 * Memory
 *   - Buffers passed in (keys, strings, bytes, paths) are read during the
 *     call only; the library copies what it keeps.
 *   - String and Bytes values passed out point into a buffer owned by the
 *     transaction, valid until the next call with that transaction (or its
 *     end): copy them at once. Never free them.
 *   - Nothing else is returned by pointer; there is nothing to free.
 */
#ifndef SHMSTORE_H
#define SHMSTORE_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHM_ABI_VERSION 2

typedef uint64_t shm_store;
typedef uint64_t shm_tx;
typedef uint64_t shm_obj;

/* Result codes. */
enum {
    SHM_OK      = 0,
    SHM_AGAIN   = 1,  /* shm_tx_end: restart (shm_tx_restart) and run the body again */
    SHM_TIMEOUT = 2,  /* shm_tx_restart: still waiting; call it again */
    SHM_FALSE   = 3,  /* a try-operation found nothing to do (queue empty or full) */
    SHM_SHORT   = 4,  /* a one-shot call could not pass its value out: see shm_op_* */

    SHM_ERR_NOT_FOUND  = -1,  /* no such key, field or store path element (KeyError) */
    SHM_ERR_RANGE      = -2,  /* index out of range (IndexError) */
    SHM_ERR_TYPE       = -3,  /* value of another kind, or not storable (TypeError) */
    SHM_ERR_CONFLICT   = -4,  /* a read failed in this attempt: stop the body, shm_tx_end */
    SHM_ERR_RETRY      = -5,  /* the body asked to wait (shm_tx_retry, a queue): stop, shm_tx_end */
    SHM_ERR_TX_CLOSED  = -6,  /* object or transaction used after its attempt or transaction */
    SHM_ERR_STALE      = -7,  /* the object was deleted (or the id never named one) */
    SHM_ERR_NO_MEMORY  = -8,  /* the store is full (MemoryError) */
    SHM_ERR_TOO_LARGE  = -9,  /* a value or a transaction too large */
    SHM_ERR_READ_ONLY  = -10, /* a write in a read-only transaction */
    SHM_ERR_NO_STORE   = -11, /* no store by that name (open without create) */
    SHM_ERR_EXISTS     = -12, /* the store exists (exclusive create) */
    SHM_ERR_DAMAGED    = -13, /* the store's files are damaged or of another layout */
    SHM_ERR_CLOSED     = -14, /* the store was closed */
    SHM_ERR_FORKED     = -15, /* called in a forked child of a process that loaded the library */
    SHM_ERR_PERMISSION = -16, /* the store's files keep this process out */
    SHM_ERR_BAD_ARG    = -17, /* a bad handle, option or argument */
    SHM_ERR_IN_USE     = -18, /* remove: live processes are attached */
    SHM_ERR_OVERFLOW   = -19, /* an integer beyond int64: a Counter add, or the caller's own check (OverflowError) */
    SHM_ERR_RETRY_NOTHING = -20, /* shm_tx_end: the body retried but its attempt read nothing,
                                    so no commit could ever wake it: the transaction is over */
    SHM_ERR_OTHER      = -100 /* anything else (the message says) */
};

typedef struct {
    int32_t code;
    char    msg[512];
} shm_error;

/* Value kinds (the store's Kind numbers). */
enum {
    SHM_NONE = 0, SHM_BOOL = 1, SHM_INT = 2, SHM_FLOAT = 3, SHM_STRING = 4, SHM_BYTES = 5,
    SHM_DICT = 6, SHM_LIST = 7, SHM_RECORD = 8, SHM_COUNTER = 9,
    SHM_QUEUE = 10  /* out only: a List made as a Queue (its stored kind is SHM_LIST) */
};

/* A value. In: the caller fills kind and the member that kind uses
 * (str/len for String and Bytes, the caller's buffer; obj for a container
 * of this transaction, to link it). Out: the library fills them; str
 * points into the transaction's buffer (see Memory); a container comes
 * out as an object handle in obj, with its kind (SHM_QUEUE for a queue). */
typedef struct {
    int32_t     kind;
    int32_t     b;     /* Bool: 0 or 1 */
    int64_t     i;     /* Int */
    double      f;     /* Float */
    const char *str;   /* String (UTF-8) / Bytes */
    int64_t     len;
    shm_obj     obj;   /* containers */
} shm_value;

/* Open flags. */
enum { SHM_OPEN_CREATE = 0, SHM_OPEN_MUST_EXIST = 1, SHM_OPEN_MUST_CREATE = 2 };

typedef struct {
    const char *dir;          /* NULL: $SHMSTORE_DIR, else /dev/shm/shmstore */
    int64_t     region_size;  /* 0: default (64 MiB); bounds the largest value */
    int64_t     max_size;     /* 0: default (4 GiB) */
    uint32_t    mode;         /* 0: 0600 */
    int32_t     create;       /* SHM_OPEN_* */
    int32_t     read_only;
} shm_options;

int64_t shm_abi_version(void);

/* Stores. */
int32_t shm_open(const char *name, const shm_options *opts, shm_store *out, shm_error *err);
int32_t shm_close(shm_store s, shm_error *err);                 /* fails while transactions run */
int32_t shm_remove(const char *name, const char *dir, int32_t force, shm_error *err);
int32_t shm_check(shm_store s, shm_error *err);                 /* SHM_OK, or SHM_ERR_OTHER listing problems */
/* Repairs what dead processes (killed in the middle of a transaction, say)
 * left behind and writes how many it recovered into *recovered. Opening a
 * store does this too, and so does any process that waits on a dead one's
 * lock; shm_check does not. */
int32_t shm_recover(shm_store s, int64_t *recovered, shm_error *err);
/* The store's identity (stable across processes): its directory path, for
 * pickling proxies. Copied into buf (NUL-terminated, truncated). */
int32_t shm_store_path(shm_store s, char *buf, size_t cap, shm_error *err);
int32_t shm_store_stats(shm_store s, int64_t *used_bytes, int64_t *max_bytes, shm_error *err);

/* Transactions. flags: 1 = read-only. shm_tx_begin waits while the
 * process's transaction slots (16 by default) are all in use;
 * shm_tx_begin_timeout waits at most timeout_ms (see Timeouts), then
 * returns SHM_TIMEOUT (nothing begun, *out untouched): call it again,
 * checking for signals between calls, as with shm_tx_restart. */
int32_t shm_tx_begin(shm_store s, int32_t flags, shm_tx *out, shm_error *err);
int32_t shm_tx_begin_timeout(shm_store s, int32_t flags, int64_t timeout_ms, shm_tx *out, shm_error *err);
int32_t shm_tx_end(shm_tx tx, int32_t body_rc, shm_error *err);     /* SHM_OK, SHM_AGAIN, or < 0 (over) */
int32_t shm_tx_restart(shm_tx tx, int64_t timeout_ms, shm_error *err); /* SHM_OK, SHM_TIMEOUT, or < 0 */
int32_t shm_tx_rollback(shm_tx tx);                                  /* always SHM_OK; tx is over */
int32_t shm_tx_retry(shm_tx tx, shm_error *err);                     /* returns SHM_ERR_RETRY */
/* OrElse in a caller's loop (run a; if a retries, run b instead; if b
 * retries too, wait on both): shm_tx_or_else_begin gives a token and says
 * whether to run the first alternative (SHM_OK) or skip straight to the
 * second (SHM_FALSE: the first retried in an earlier attempt that this one
 * continues). When the first returns SHM_ERR_RETRY, the body calls
 * shm_tx_or_else_retried(tx, token), which returns SHM_ERR_RETRY; the body
 * stops and passes it to shm_tx_end (SHM_AGAIN: the body reruns at once and
 * this time shm_tx_or_else_begin says SHM_FALSE). Any other outcome of an
 * alternative needs no call. */
int32_t shm_tx_or_else_begin(shm_tx tx, int64_t *token, shm_error *err);
int32_t shm_tx_or_else_retried(shm_tx tx, int64_t token, shm_error *err);
int32_t shm_tx_root(shm_tx tx, shm_obj *out, shm_error *err);
int32_t shm_tx_open(shm_tx tx, uint64_t id, shm_value *out, shm_error *err); /* by shm_obj_id */
int32_t shm_obj_id(shm_tx tx, shm_obj o, uint64_t *id, shm_error *err);
int32_t shm_tx_new(shm_tx tx, int32_t kind, int64_t capacity, shm_obj *out, shm_error *err); /* DICT, LIST, COUNTER, QUEUE (capacity) */
int32_t shm_tx_new_record(shm_tx tx, const char *cls, const char *const *fields, int32_t nfields, shm_obj *out, shm_error *err);

/* Dicts. */
int32_t shm_dict_get(shm_tx tx, shm_obj d, const shm_value *key, shm_value *out, shm_error *err);
int32_t shm_dict_set(shm_tx tx, shm_obj d, const shm_value *key, const shm_value *val, shm_error *err);
int32_t shm_dict_delete(shm_tx tx, shm_obj d, const shm_value *key, shm_error *err);
int32_t shm_dict_len(shm_tx tx, shm_obj d, int64_t *out, shm_error *err);
/* Keys: the i-th key of a snapshot taken at i == 0 (kept in the
 * transaction until the next call with i == 0); SHM_ERR_RANGE past the end. */
int32_t shm_dict_key(shm_tx tx, shm_obj d, int64_t i, shm_value *out, shm_error *err);
/* get-or-create of a nested container under key (kind DICT, LIST, COUNTER, QUEUE). */
int32_t shm_dict_container(shm_tx tx, shm_obj d, const shm_value *key, int32_t kind, int64_t capacity, shm_obj *out, shm_error *err);

/* Lists (negative indexes count from the end). */
int32_t shm_list_len(shm_tx tx, shm_obj l, int64_t *out, shm_error *err);
int32_t shm_list_get(shm_tx tx, shm_obj l, int64_t i, shm_value *out, shm_error *err);
int32_t shm_list_set(shm_tx tx, shm_obj l, int64_t i, const shm_value *val, shm_error *err);
int32_t shm_list_insert(shm_tx tx, shm_obj l, int64_t i, const shm_value *val, shm_error *err);
int32_t shm_list_delete(shm_tx tx, shm_obj l, int64_t i, shm_error *err);
int32_t shm_list_append(shm_tx tx, shm_obj l, const shm_value *val, shm_error *err);
int32_t shm_list_prepend(shm_tx tx, shm_obj l, const shm_value *val, shm_error *err);
int32_t shm_list_pop(shm_tx tx, shm_obj l, int32_t front, shm_value *out, shm_error *err);

/* Records. */
int32_t shm_record_class(shm_tx tx, shm_obj r, shm_value *out, shm_error *err);   /* a String */
int32_t shm_record_nfields(shm_tx tx, shm_obj r, int64_t *out, shm_error *err);
int32_t shm_record_field(shm_tx tx, shm_obj r, int64_t i, shm_value *out, shm_error *err); /* the i-th name */
int32_t shm_record_get(shm_tx tx, shm_obj r, const char *field, shm_value *out, shm_error *err);
int32_t shm_record_set(shm_tx tx, shm_obj r, const char *field, const shm_value *val, shm_error *err);

/* Counters. */
int32_t shm_counter_get(shm_tx tx, shm_obj c, int64_t *out, shm_error *err);
int32_t shm_counter_add(shm_tx tx, shm_obj c, int64_t n, int64_t *out, shm_error *err); /* out: the new value (reads) */
int32_t shm_counter_add_blind(shm_tx tx, shm_obj c, int64_t n, shm_error *err);       /* never conflicts */

/* Queues (put/get return SHM_ERR_RETRY while full/empty: the wait is the
 * transaction's; try_ variants return SHM_FALSE instead). */
int32_t shm_queue_put(shm_tx tx, shm_obj q, const shm_value *val, int32_t try_only, shm_error *err);
int32_t shm_queue_get(shm_tx tx, shm_obj q, int32_t try_only, shm_value *out, shm_error *err);
/* Item i (0: the one the next get takes; negative counts from the end),
 * not taken: a read of the queue, as shm_list_get; SHM_ERR_RANGE outside it. */
int32_t shm_queue_peek(shm_tx tx, shm_obj q, int64_t i, shm_value *out, shm_error *err);
int32_t shm_queue_len(shm_tx tx, shm_obj q, int64_t *out, shm_error *err);
int32_t shm_queue_cap(shm_tx tx, shm_obj q, int64_t *out, shm_error *err);

/* One-shot operations: one operation in a transaction of its own, in one
 * call, with the retry loop inside the library (it runs nothing of the
 * caller's, so it may): what a caller outside a transaction would do
 * with shm_tx_begin, shm_tx_open, the operation and shm_tx_end, in one
 * call instead of four. The container is named by its id (shm_obj_id),
 * and so is a container value, in (val->obj: an id, linked as
 * shm_dict_set links an object) and out (out->obj: an id, to open with
 * shm_tx_open): no transaction outlives the call.
 *
 * A String or Bytes out-value is copied into the caller's buf of cap
 * bytes, NUL-terminated, out->str pointing at it. When it does not fit
 * (len + 1 > cap), the call does nothing and returns SHM_SHORT with
 * out->kind and out->len (the bytes needed, less the NUL) filled: call
 * again with a larger buffer. out is written on SHM_OK and SHM_SHORT.
 *
 * Waits: each call waits while the process's transaction slots are all
 * in use, and the queue operations while the queue is full (put) or
 * empty (get); at most timeout_ms (see Timeouts), then SHM_TIMEOUT,
 * nothing done: call again, checking for signals between calls. A queue
 * operation with timeout_ms 0 does not wait for the queue (SHM_FALSE when
 * it is full or empty). Any call may also wait a moment for a word
 * another transaction holds (release the caller's locks around it). */
int32_t shm_op_dict_get(shm_store s, uint64_t d, const shm_value *key, int64_t timeout_ms,
                        shm_value *out, char *buf, int64_t cap, shm_error *err); /* read-only; SHM_ERR_NOT_FOUND if absent */
int32_t shm_op_dict_set(shm_store s, uint64_t d, const shm_value *key, const shm_value *val, int64_t timeout_ms, shm_error *err);
int32_t shm_op_dict_delete(shm_store s, uint64_t d, const shm_value *key, int64_t timeout_ms, shm_error *err); /* SHM_ERR_NOT_FOUND if absent */
int32_t shm_op_counter_get(shm_store s, uint64_t c, int64_t timeout_ms, int64_t *out, shm_error *err); /* read-only */
/* out: the new value (a read: concurrent adds conflict, and the call runs
 * again); blind != 0 adds without reading (never conflicts), out may be NULL. */
int32_t shm_op_counter_add(shm_store s, uint64_t c, int64_t n, int32_t blind, int64_t timeout_ms, int64_t *out, shm_error *err);
int32_t shm_op_queue_put(shm_store s, uint64_t q, const shm_value *val, int64_t timeout_ms, shm_error *err);
/* A container item is not taken (taken, it would be freed at commit):
 * SHM_SHORT with out->kind its kind and out->len 0; take it in a
 * transaction (shm_queue_get), which can read it before it commits. */
int32_t shm_op_queue_get(shm_store s, uint64_t q, int64_t timeout_ms, shm_value *out, char *buf, int64_t cap, shm_error *err);

#ifdef __cplusplus
}
#endif
#endif /* SHMSTORE_H */
