/*
 * _shmstore.c: the CPython extension over libshmstore.so (the C ABI in
 * bindings/capi/shmstore.h).
 *
 * Design (after py-lmdb's cpython.c):
 *   - The library is dlopen()ed from the package directory at the first
 *     shmstore.open(), not linked: a process that only imported shmstore
 *     (a multiprocessing forkserver that preloads __main__, say) has no Go
 *     runtime yet and stays safe to fork. From that load on, a
 *     pthread_atfork child handler marks a forked child, every entry point
 *     checks the mark, and opening a store (closing, removing, loading)
 *     also compares getpid() with the pid recorded at the load; a forked
 *     child gets ForkError in C before anything enters Go.
 *   - Proxies (Dict, List, Counter, Queue, records) keep the store and the
 *     container's id (shm_obj_id); each transaction reopens them with
 *     shm_tx_open, cached per attempt (an attempt serial unique in the
 *     process).
 *   - The current transaction of a thread is a thread-local stack of
 *     txstate. An operation with no transaction of its store in that stack
 *     runs as its own small transaction (read-only when it only reads):
 *     one one-shot call (shm_op_*: a Dict's get, set and delete, a
 *     Counter's read and add, a Queue's put and get, on scalars), else the
 *     header's retry loop.
 *   - The GIL is released around the calls that can block
 *     (shm_tx_begin_timeout, shm_tx_end, shm_tx_restart); the begin and
 *     shm_tx_restart wait in 100 ms slices with PyErr_CheckSignals
 *     between, so Ctrl-C ends a wait with KeyboardInterrupt (after a
 *     rollback).
 *   - Strings and bytes the library passes out live in the transaction's
 *     buffer until the next call on it: they are copied at once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmstore.h"

/* ------------------------------------------------------------------ */
/* The library, loaded with dlopen.                                    */

#define SHM_FUNCS(X)                                                                      \
    X(shm_abi_version) X(shm_open) X(shm_close) X(shm_remove) X(shm_check) X(shm_recover)  \
    X(shm_store_path) X(shm_store_stats) X(shm_tx_begin_timeout) X(shm_tx_end)             \
    X(shm_tx_restart)                                                                     \
    X(shm_tx_rollback) X(shm_tx_retry) X(shm_tx_or_else_begin) X(shm_tx_or_else_retried) \
    X(shm_tx_root) X(shm_tx_open) X(shm_obj_id) X(shm_tx_new) X(shm_tx_new_record)        \
    X(shm_dict_get) X(shm_dict_set) X(shm_dict_delete) X(shm_dict_len) X(shm_dict_key)    \
    X(shm_dict_container) X(shm_list_len) X(shm_list_get) X(shm_list_set)                 \
    X(shm_list_insert) X(shm_list_delete) X(shm_list_append) X(shm_list_prepend)          \
    X(shm_list_pop) X(shm_record_class) X(shm_record_nfields) X(shm_record_field)         \
    X(shm_record_get) X(shm_record_set) X(shm_counter_get) X(shm_counter_add)             \
    X(shm_counter_add_blind) X(shm_queue_put) X(shm_queue_get) X(shm_queue_len)           \
    X(shm_queue_cap) X(shm_queue_peek) X(shm_op_dict_get) X(shm_op_dict_set)              \
    X(shm_op_dict_delete) X(shm_op_counter_get) X(shm_op_counter_add) X(shm_op_queue_put) \
    X(shm_op_queue_get)

static struct {
#define X(f) __typeof__(f) *f;
    SHM_FUNCS(X)
#undef X
} L;

static void *lib_handle;
static int lib_loaded;
static pid_t lib_pid;           /* getpid() when the library was loaded */
static volatile int lib_forked; /* set in a forked child of a process that loaded it */

static void atfork_child(void)
{
    if (lib_loaded)
        lib_forked = 1;
}

/* ------------------------------------------------------------------ */
/* Exceptions.                                                         */

static PyObject *Error, *UsageError, *ConflictError, *StaleObjectError, *StoreFullError, *TypeMismatch,
    *DamagedStoreError, *ClosedError, *ForkError, *RetryError, *TransactionClosedError,
    *ReadOnlyError, *TooLargeError, *NoStoreError, *ExistsError, *PermissionDenied, *InUseError,
    *BadArgumentError, *NotFoundError, *RetryNothingError;
static PyObject *QueueEmpty, *QueueFull; /* queue.Empty, queue.Full */

#define FORK_MSG                                                                          \
    "shmstore cannot be used in a child made by fork() of a process that loaded it "      \
    "(the Go runtime inside does not survive fork): start workers with multiprocessing's " \
    "'spawn' or 'forkserver' method (multiprocessing.get_context('spawn')), or open the " \
    "store only after forking"

/* fork_check: every entry point that may reach Go calls it first. It
 * reads the mark of the pthread_atfork child handler (registered when the
 * module is imported, before the library can be loaded: fork(3) runs it in
 * every child). fork_check_pid, for the entry points that open, close or
 * remove a store, also compares getpid() with the pid of the load (a child
 * made without fork(3), by a raw clone, runs no handler): a system call
 * (some 70 ns, a tenth of a get) that every operation would pay. */
static int fork_check(void)
{
    if (!lib_loaded) {
        PyErr_SetString(UsageError, "libshmstore.so is not loaded: open a store with shmstore.open() first");
        return -1;
    }
    if (lib_forked) {
        PyErr_SetString(ForkError, FORK_MSG);
        return -1;
    }
    return 0;
}

static int fork_check_pid(void)
{
    if (lib_loaded && getpid() != lib_pid)
        lib_forked = 1;
    return fork_check();
}

/* The exception of each result code: its class (made at import when
 * name is set, as shmstore.<name>, a subclass of Error and of base if
 * set, of UsageError alone if that is base; else a builtin), its doc, and
 * the message of a failure whose shm_error the library left empty.
 * Others: Error, "shmstore error". */
static const struct {
    int32_t code;
    PyObject **cls;
    const char *name;
    PyObject **base;
    const char *doc, *msg;
} codes[] = {
    {SHM_ERR_NOT_FOUND, &NotFoundError, "NotFoundError", &PyExc_LookupError, "No such key, field or path.",
     "not found"},
    {SHM_ERR_RANGE, &PyExc_IndexError, NULL, NULL, NULL, "index out of range"},
    {SHM_ERR_TYPE, &TypeMismatch, "TypeMismatch", &PyExc_TypeError,
     "A value of another kind than asked for, or one the store cannot keep.", "type mismatch"},
    {SHM_ERR_CONFLICT, &ConflictError, "ConflictError", NULL,
     "Another transaction changed what this one read. Transaction loops (@store.transaction, "
     "attempts()) run the body again; an explicit transaction (store.begin()) raises it from commit().",
     "conflict with another transaction"},
    {SHM_ERR_RETRY, &RetryError, "RetryError", NULL,
     "The body asked to wait (shmstore.retry(), a blocking queue operation): the transaction loop "
     "waits for a change and runs it again.",
     "the transaction waits (retry)"},
    {SHM_ERR_TX_CLOSED, &TransactionClosedError, "TransactionClosedError", &UsageError,
     "A transaction used after it ended, or commit() or abort() with no transaction begun with begin() "
     "(a UsageError).",
     "transaction ended"},
    {SHM_ERR_STALE, &StaleObjectError, "StaleObjectError", NULL,
     "The shared object was deleted (unlinked from every container).", "the object was deleted"},
    {SHM_ERR_NO_MEMORY, &StoreFullError, "StoreFullError", &PyExc_MemoryError,
     "The store is at its maximum size; the transaction was rolled back.", "the store is full"},
    {SHM_ERR_TOO_LARGE, &TooLargeError, "TooLargeError", NULL, "A value or a transaction too large: split it.",
     "value or transaction too large"},
    {SHM_ERR_READ_ONLY, &ReadOnlyError, "ReadOnlyError", NULL,
     "A write in a read-only transaction (store.view), or a transaction or recover() on a store "
     "opened with read_only=True.",
     "write in a read-only transaction"},
    {SHM_ERR_NO_STORE, &NoStoreError, "NoStoreError", &PyExc_FileNotFoundError,
     "No store by that name (open with create=False).", "no such store"},
    {SHM_ERR_EXISTS, &ExistsError, "ExistsError", &PyExc_FileExistsError,
     "The store exists (open with exclusive=True).", "the store exists"},
    {SHM_ERR_DAMAGED, &DamagedStoreError, "DamagedStoreError", NULL,
     "The store's files are damaged or of another layout.", "the store is damaged"},
    {SHM_ERR_CLOSED, &ClosedError, "ClosedError", NULL, "The store was closed.", "the store is closed"},
    {SHM_ERR_FORKED, &ForkError, "ForkError", NULL,
     "shmstore used in a child made by fork() of a process that had loaded it: use multiprocessing's "
     "spawn or forkserver start method.",
     FORK_MSG},
    {SHM_ERR_PERMISSION, &PermissionDenied, "PermissionDenied", &PyExc_PermissionError,
     "The store's files keep this process out.", "permission denied"},
    {SHM_ERR_BAD_ARG, &BadArgumentError, "BadArgumentError", &PyExc_ValueError, "A bad option or argument.",
     "bad argument"},
    {SHM_ERR_IN_USE, &InUseError, "InUseError", NULL, "remove: live processes are attached.",
     "the store is in use"},
    {SHM_ERR_OVERFLOW, &PyExc_OverflowError, NULL, NULL, NULL, "integer beyond int64"},
    {SHM_ERR_RETRY_NOTHING, &RetryNothingError, "RetryNothingError", NULL,
     "retry() (or a blocking queue operation) in a transaction that had read nothing: no commit could "
     "wake it, so it would wait forever. The transaction is over.",
     "retry in a transaction that read nothing: it would wait forever"},
};

/* raise_rc raises the exception for a negative result code, with the
 * library's message when it filled err. Returns NULL. */
static PyObject *raise_rc(int32_t rc, const shm_error *err)
{
    PyObject *cls = Error, *msg, *exc;
    const char *dflt = "shmstore error";
    size_t i;
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i].code == rc) {
            cls = *codes[i].cls;
            dflt = codes[i].msg;
            break;
        }
    if (err && err->code == rc && err->msg[0])
        msg = PyUnicode_DecodeUTF8(err->msg, (Py_ssize_t)strnlen(err->msg, sizeof err->msg), "replace");
    else
        msg = PyUnicode_FromString(dflt);
    if (!msg)
        return NULL;
    exc = PyObject_CallOneArg(cls, msg);
    Py_DECREF(msg);
    if (!exc)
        return NULL;
    if (PyObject_TypeCheck(exc, (PyTypeObject *)Error)) {
        PyObject *code = PyLong_FromLong(rc);
        if (!code || PyObject_SetAttrString(exc, "code", code) < 0) {
            Py_XDECREF(code);
            Py_DECREF(exc);
            return NULL;
        }
        Py_DECREF(code);
    }
    PyErr_SetObject(cls, exc);
    Py_DECREF(exc);
    return NULL;
}

/* fail_rc is raise_rc for the functions that return -1 on failure. */
static int fail_rc(int32_t rc, const shm_error *err)
{
    raise_rc(rc, err);
    return -1;
}

/* body_code: the result code a body that raised passes to shm_tx_end. */
static int32_t body_code(void)
{
    if (PyErr_ExceptionMatches(ConflictError))
        return SHM_ERR_CONFLICT;
    if (PyErr_ExceptionMatches(RetryError))
        return SHM_ERR_RETRY;
    return SHM_ERR_OTHER;
}

#define ERR_INIT(e) ((e).code = 0, (e).msg[0] = 0)

/* NOGIL(call): a call into the library with the GIL released. Besides the
 * calls the header names as blocking, any read may wait for a word that
 * another transaction holds: one committing, or a starved read-only
 * transaction's prelocks while its body runs; when that body is Python in
 * another thread of this process, it needs the GIL to finish.
 *
 * The calls that neither wait nor read the store (shm_obj_id, shm_tx_retry,
 * shm_tx_or_else_begin and _retried, shm_store_path: lookups in the
 * library's own tables, under its own short-held locks) keep the GIL:
 * releasing and taking it back costs some 46 ns (an empty call, _call_ns:
 * 97 ns with, 51 ns without), measured 870-910 -> 830-870 ns for a get of a
 * container in a transaction (which reads its id). */
#define NOGIL(stmt)             \
    do {                        \
        Py_BEGIN_ALLOW_THREADS  \
        stmt;                   \
        Py_END_ALLOW_THREADS    \
    } while (0)

/* LIB(rc, call): a call of the library with the GIL released, its code
 * into rc; the shm_error named err in scope is made fresh first. */
#define LIB(rc, call)       \
    do {                    \
        ERR_INIT(err);      \
        NOGIL(rc = (call)); \
    } while (0)

/* nargs: whether a METH_FASTCALL method got min to max arguments (else
 * TypeError). */
static int nargs(const char *name, Py_ssize_t n, Py_ssize_t min, Py_ssize_t max)
{
    if (n >= min && n <= max)
        return 1;
    if (min == max)
        PyErr_Format(PyExc_TypeError, "%s expected %zd arguments, got %zd", name, min, n);
    else
        PyErr_Format(PyExc_TypeError, "%s expected %zd to %zd arguments, got %zd", name, min, max, n);
    return 0;
}

/* UNUSED marks a parameter a function does not use (the opfuncs and the
 * slots of Python's tables take more than each needs). */
#define UNUSED __attribute__((unused))

/* ------------------------------------------------------------------ */
/* Transactions as C sees them: a thread-local stack.                  */

typedef struct StoreObject StoreObject;

typedef struct txstate {
    StoreObject *store;   /* a strong reference while the transaction runs */
    shm_tx tx;
    uint64_t serial;      /* this attempt's number (unique in the process) */
    int readonly;
    int active;           /* begun and not over */
    int pushed;
    double deadline;      /* CLOCK_MONOTONIC seconds of a queue timeout; 0: none */
    PyObject *pending;    /* proxies bound to objects this attempt made, or NULL */
    PyObject *owner;      /* the Txn object on the stack (strong), or NULL */
    int explicit_;        /* begun with begin(): nothing runs its body again (explicit_wait) */
    int ended;            /* explicit, and over by a wait: on the stack until commit(), abort(), begin() */
    int32_t end_rc;       /* a failed shm_tx_end's code and message (body failed) */
    shm_error end_err;
    struct txstate *prev; /* the next older one in this thread */
} txstate;

static __thread txstate *tls_top;
static uint64_t serial_counter; /* under the GIL */

static uint64_t next_serial(void) { return ++serial_counter; }

static double monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void ts_push(txstate *ts)
{
    ts->prev = tls_top;
    tls_top = ts;
    ts->pushed = 1;
    Py_XINCREF(ts->owner);
}

static void ts_pop(txstate *ts)
{
    txstate **pp;
    if (!ts->pushed)
        return;
    for (pp = &tls_top; *pp; pp = &(*pp)->prev) {
        if (*pp == ts) {
            *pp = ts->prev;
            break;
        }
    }
    ts->prev = NULL;
    ts->pushed = 0;
    Py_XDECREF(ts->owner); /* may free the Txn: the last thing done with ts */
}

/* ------------------------------------------------------------------ */
/* Store.                                                              */

struct StoreObject {
    PyObject_HEAD
    shm_store h;
    int closed;
    int read_only;    /* opened with read_only=True: check() and stats() only */
    uint64_t root_id; /* 0 until known (never, read-only: that takes a transaction) */
    PyObject *path; /* str: the store's directory (shm_store_path) */
    PyObject *name;
    PyObject *weakrefs;
};

static PyTypeObject StoreType;

/* same_store: two handles of one store (opened twice in this process). */
static int same_store(StoreObject *a, StoreObject *b)
{
    if (a == b)
        return 1;
    if (!a || !b || !a->path || !b->path)
        return 0;
    return PyUnicode_Compare(a->path, b->path) == 0;
}

static txstate *ts_find(StoreObject *st)
{
    txstate *ts;
    for (ts = tls_top; ts; ts = ts->prev)
        if ((ts->active || ts->ended) && same_store(ts->store, st))
            return ts;
    return NULL;
}

/* active_ts: the thread's innermost running transaction, or NULL. */
static txstate *active_ts(void)
{
    txstate *ts = tls_top;
    while (ts && !ts->active)
        ts = ts->prev;
    return ts;
}

static int store_live(StoreObject *st)
{
    if (fork_check() < 0)
        return -1;
    if (st->closed) {
        PyErr_SetString(ClosedError, "the store is closed");
        return -1;
    }
    return 0;
}

/* read_only_error raises ReadOnlyError (its code set, as raise_rc does)
 * for what, which a store opened with read_only=True cannot do: the
 * library maps such a store for inspection and attaches no process, so
 * it has no transaction slot (and cannot recover). Returns -1. */
static int read_only_error(StoreObject *st, const char *what)
{
    shm_error err;
    const char *name = st->name ? PyUnicode_AsUTF8(st->name) : "?";
    if (!name)
        return -1;
    err.code = SHM_ERR_READ_ONLY;
    snprintf(err.msg, sizeof err.msg,
             "%s: store '%s' was opened with read_only=True, which allows only check() and stats(): "
             "open it without read_only for that",
             what, name);
    return fail_rc(SHM_ERR_READ_ONLY, &err);
}

/* ------------------------------------------------------------------ */
/* Proxies.                                                            */

typedef struct {
    PyObject_HEAD
    StoreObject *store; /* NULL while unbound */
    uint64_t id;        /* 0 while unbound */
    int32_t kind;       /* SHM_DICT, SHM_LIST, SHM_COUNTER, SHM_QUEUE, SHM_RECORD */
    int pending;        /* bound to an object of a running attempt, not yet committed */
    shm_obj obj;        /* the object in the attempt 'serial' */
    uint64_t serial;
    PyObject *local;    /* an unbound object's own state: fields (dict), count, maxsize */
    PyObject *weakrefs;
} ProxyObject;

static PyTypeObject ProxyType, DictBaseType, ListBaseType, CounterBaseType, QueueBaseType, RecordBaseType;

/* The Python classes proxies are made of (set by shmstore/__init__.py). */
static PyObject *cls_dict, *cls_list, *cls_counter, *cls_queue, *cls_record, *record_classes;

static void ts_unbind_pending(txstate *ts, int committed)
{
    Py_ssize_t i, n;
    if (!ts->pending)
        return;
    n = PyList_GET_SIZE(ts->pending);
    for (i = 0; i < n; i++) {
        ProxyObject *p = (ProxyObject *)PyList_GET_ITEM(ts->pending, i);
        if (!p->pending)
            continue;
        p->pending = 0;
        if (committed) {
            Py_CLEAR(p->local);
        } else {
            p->id = 0;
            p->obj = 0;
            p->serial = 0;
            Py_CLEAR(p->store);
        }
    }
    Py_CLEAR(ts->pending);
}

/* ts_begin begins a transaction in ts (GIL released around the call). A
 * begin waits while the process's transaction slots are all in use: in
 * 100 ms slices, checking for signals between them (Ctrl-C). */
static int ts_begin(txstate *ts, StoreObject *st, int readonly)
{
    shm_error err;
    shm_tx tx = 0;
    int32_t rc;
    if (st->read_only)
        return read_only_error(st, "a transaction (store.root, and every read and write, needs one)");
    for (;;) {
        LIB(rc, L.shm_tx_begin_timeout(st->h, readonly ? 1 : 0, 100, &tx, &err));
        if (rc != SHM_TIMEOUT)
            break;
        if (PyErr_CheckSignals() < 0)
            return -1;
    }
    if (rc != SHM_OK)
        return fail_rc(rc < 0 ? rc : SHM_ERR_OTHER, &err);
    if (ts->store != st) {
        Py_INCREF(st);
        Py_XSETREF(ts->store, st);
    }
    ts->tx = tx;
    ts->readonly = readonly;
    ts->active = 1;
    ts->serial = next_serial();
    return 0;
}

static void ts_over(txstate *ts, int committed)
{
    ts->active = 0;
    ts->serial = 0;
    ts_unbind_pending(ts, committed);
}

static void ts_rollback(txstate *ts)
{
    if (!ts->active)
        return;
    if (!lib_forked && getpid() == lib_pid)
        L.shm_tx_rollback(ts->tx);
    ts_over(ts, 0);
}

/* ts_end ends an attempt whose body returned body_rc. Returns SHM_OK
 * (committed), SHM_AGAIN (call ts_restart and run the body again), or a
 * negative code: the transaction is over; when body_rc was SHM_OK an
 * exception is set, else the caller keeps the body's. */
static int32_t ts_end(txstate *ts, int32_t body_rc)
{
    shm_error err;
    int32_t rc;
    LIB(rc, L.shm_tx_end(ts->tx, body_rc, &err));
    if (rc == SHM_AGAIN) {
        ts->serial = 0;
        ts_unbind_pending(ts, 0);
        return rc;
    }
    ts_over(ts, rc == SHM_OK);
    ts->end_rc = rc;
    if (rc < 0)
        ts->end_err = err;
    if (rc < 0 && body_rc == SHM_OK)
        raise_rc(rc, &err);
    else if (rc > 0 && rc != SHM_OK) {
        rc = SHM_ERR_OTHER;
        if (body_rc == SHM_OK)
            PyErr_SetString(Error, "shm_tx_end: unexpected result");
    }
    return rc;
}

/* ts_restart waits for the next attempt: in 100 ms slices, checking for
 * signals between them (KeyboardInterrupt rolls back), and begins a fresh
 * transaction when a queue timeout (ts->deadline) has passed, so that the
 * body runs again and raises queue.Empty or queue.Full. */
static int ts_restart(txstate *ts)
{
    for (;;) {
        shm_error err;
        int32_t rc;
        int64_t slice = 100;
        if (ts->deadline > 0) {
            double left = ts->deadline - monotonic();
            if (left <= 0) {
                StoreObject *st = ts->store;
                L.shm_tx_rollback(ts->tx);
                ts->active = 0;
                Py_INCREF(st);
                rc = ts_begin(ts, st, ts->readonly);
                Py_DECREF(st);
                if (rc < 0) {
                    ts_over(ts, 0);
                    return -1;
                }
                return 0;
            }
            if (left * 1000 < slice)
                slice = (int64_t)(left * 1000) + 1;
        }
        LIB(rc, L.shm_tx_restart(ts->tx, slice, &err));
        if (rc == SHM_OK) {
            ts->serial = next_serial();
            return 0;
        }
        if (rc == SHM_TIMEOUT) {
            if (PyErr_CheckSignals() < 0) {
                ts_rollback(ts);
                return -1;
            }
            continue;
        }
        ts_rollback(ts);
        raise_rc(rc < 0 ? rc : SHM_ERR_OTHER, &err);
        return -1;
    }
}

/* explicit_wait: a retry (retry(), a blocking queue operation that must
 * wait) in a transaction begun with
 * begin(), which nothing runs again: the wait ends it. It waits, in 100 ms
 * slices with a check for signals between them, until a commit changes
 * what the transaction read, then rolls back and raises ConflictError
 * (begin() again: a blocking get now finds its item); at a queue timeout
 * (ts->deadline, when timeout_exc is set) it rolls back and raises
 * timeout_exc (queue.Empty, queue.Full); in a transaction that read
 * nothing, RetryNothingError at once. The transaction is over in every
 * case, and ended: it stays on the thread's stack, so that what the
 * thread does next on the store fails (TransactionClosedError) instead of
 * running outside it, until commit() (ConflictError), abort() or begin()
 * takes it off. Returns NULL. */
static PyObject *explicit_wait(txstate *ts, PyObject *timeout_exc)
{
    shm_error err;
    int32_t rc = ts_end(ts, SHM_ERR_RETRY);
    if (rc != SHM_AGAIN) {
        raise_rc(rc < 0 ? rc : SHM_ERR_OTHER, &ts->end_err);
        goto over;
    }
    for (;;) {
        int64_t slice = 100;
        if (timeout_exc && ts->deadline > 0) {
            double left = ts->deadline - monotonic();
            if (left <= 0) {
                ts_rollback(ts);
                PyErr_SetNone(timeout_exc);
                goto over;
            }
            if (left * 1000 < slice)
                slice = (int64_t)(left * 1000) + 1;
        }
        LIB(rc, L.shm_tx_restart(ts->tx, slice, &err));
        if (rc == SHM_TIMEOUT) {
            if (PyErr_CheckSignals() < 0) {
                ts_rollback(ts);
                goto over;
            }
            continue;
        }
        ts_rollback(ts);
        if (rc == SHM_OK) {
            err.code = SHM_ERR_CONFLICT;
            snprintf(err.msg, sizeof err.msg, "%s",
                     "what the transaction read changed while it waited (retry() or a blocking queue "
                     "operation): nothing was written; begin() again");
            rc = SHM_ERR_CONFLICT;
        }
        raise_rc(rc < 0 ? rc : SHM_ERR_OTHER, &err);
        goto over;
    }
over:
    ts_rollback(ts);
    ts->ended = 1;
    return NULL;
}

/* tx_retry: the attempt of ts waits (shm_tx_retry; keeps the GIL: see
 * NOGIL): RetryError raised, for the body to end with; in a transaction
 * begun with begin(), explicit_wait with timeout_exc. Returns NULL. */
static PyObject *tx_retry(txstate *ts, PyObject *timeout_exc)
{
    shm_error err;
    int32_t rc;
    ERR_INIT(err);
    rc = L.shm_tx_retry(ts->tx, &err);
    if (rc == SHM_ERR_RETRY && ts->explicit_)
        return explicit_wait(ts, timeout_exc);
    return raise_rc(rc < 0 ? rc : SHM_ERR_RETRY, &err);
}

/* An operation: called with the transaction and the proxy's object. */
typedef PyObject *(*opfunc)(txstate *ts, ProxyObject *p, shm_obj o, PyObject *a, PyObject *b);

static PyObject *unbound_error(ProxyObject *p)
{
    return PyErr_Format(UsageError,
                        "this %s is not stored yet: assign it into a stored Dict, List or record first "
                        "(d[key] = obj, lst.append(obj), rec.field = obj), then use it",
                        Py_TYPE(p)->tp_name);
}

/* proxy_obj: the proxy's object in ts's attempt (opened once per attempt). */
static int proxy_obj(txstate *ts, ProxyObject *p, shm_obj *out)
{
    shm_error err;
    shm_value v;
    int32_t rc, want;
    if (p->serial == ts->serial && p->serial != 0) {
        *out = p->obj;
        return 0;
    }
    memset(&v, 0, sizeof v);
    LIB(rc, L.shm_tx_open(ts->tx, p->id, &v, &err));
    if (rc < 0)
        return fail_rc(rc, &err);
    want = p->kind;
    if (v.kind != want && !(want == SHM_LIST && v.kind == SHM_QUEUE)) {
        PyErr_Format(StaleObjectError, "object %llu is no longer a %s", (unsigned long long)p->id,
                     Py_TYPE(p)->tp_name);
        return -1;
    }
    p->obj = v.obj;
    p->serial = ts->serial;
    *out = v.obj;
    return 0;
}

/* run_in: the operation in a running transaction. */
static PyObject *run_in(txstate *ts, ProxyObject *p, opfunc f, PyObject *a, PyObject *b)
{
    shm_obj o = 0;
    if (p && proxy_obj(ts, p, &o) < 0)
        return NULL;
    return f(ts, p, o, a, b);
}

/* run_ts: f as the body of a transaction of its own in ts (zeroed, or a
 * Txn's), with the header's loop: run again after a conflict or a retry.
 * An exception that is no Exception (KeyboardInterrupt, SystemExit) ends
 * it at once, never run again. */
static PyObject *run_ts(txstate *ts, StoreObject *st, ProxyObject *p, opfunc f, PyObject *a, PyObject *b,
                        int write)
{
    PyObject *res;
    if (ts_begin(ts, st, !write) < 0)
        return NULL;
    ts_push(ts);
    for (int fresh = 0;;) {
        int32_t body_rc = SHM_OK, rc;
        res = run_in(ts, p, f, a, b);
        if (!res && !PyErr_ExceptionMatches(PyExc_Exception)) {
            ts_rollback(ts);
            break;
        }
        if (!res)
            body_rc = body_code();
        rc = ts_end(ts, body_rc);
        if (rc == SHM_AGAIN) {
            Py_CLEAR(res);
            PyErr_Clear();
            if (ts_restart(ts) < 0)
                break;
            continue;
        }
        if (rc < 0 && (body_rc == SHM_ERR_CONFLICT || body_rc == SHM_ERR_RETRY)) {
            /* a conflict or a retry that ended the transaction instead of
             * asking for another attempt (an attempt doomed by a failed
             * read): run it again in a new one, a few times; else, and
             * at once for a retry that read nothing (it would wait
             * forever), the end's error */
            Py_CLEAR(res);
            PyErr_Clear();
            if (rc == SHM_ERR_RETRY_NOTHING || fresh++ >= 3) {
                raise_rc(rc, &ts->end_err);
                break;
            }
            if (ts_begin(ts, st, !write) < 0)
                break;
            continue;
        }
        if (rc < 0)
            Py_CLEAR(res);
        break;
    }
    ts_pop(ts);
    return res;
}

/* run_store: f in the thread's transaction on st, or in its own small one
 * (read-only unless write). */
static PyObject *run_store(StoreObject *st, ProxyObject *p, opfunc f, PyObject *a, PyObject *b, int write)
{
    txstate *cur, ts;
    PyObject *res;
    if (store_live(st) < 0)
        return NULL;
    cur = ts_find(st);
    if (cur && cur->ended)
        return PyErr_Format(TransactionClosedError,
                            "the transaction begun with begin() ended when it waited (retry() or a blocking "
                            "queue operation): nothing was written; begin() again (or abort())");
    if (cur)
        return run_in(cur, p, f, a, b);
    memset(&ts, 0, sizeof ts);
    res = run_ts(&ts, st, p, f, a, b, write);
    Py_CLEAR(ts.store);
    return res;
}

static PyObject *run(ProxyObject *p, opfunc f, PyObject *a, PyObject *b, int write)
{
    if (!p->store)
        return unbound_error(p);
    return run_store(p->store, p, f, a, b, write);
}

/* ------------------------------------------------------------------ */
/* Values.                                                             */

static PyObject *make_proxy(txstate *ts, shm_obj o, int32_t kind);
static int materialize(txstate *ts, ProxyObject *p, shm_obj *out, PyObject **memo, int pending);
static PyObject *proxy_new(PyTypeObject *t, int32_t kind, PyObject *local);

static int to_key(PyObject *k, shm_value *v)
{
    memset(v, 0, sizeof *v);
    if (k == Py_None) {
        v->kind = SHM_NONE;
    } else if (PyBool_Check(k)) {
        v->kind = SHM_BOOL;
        v->b = k == Py_True;
    } else if (PyLong_Check(k)) {
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(k, &overflow);
        if (overflow) {
            PyErr_SetString(PyExc_OverflowError, "shmstore keeps integers of int64 only");
            return -1;
        }
        if (x == -1 && PyErr_Occurred())
            return -1;
        v->kind = SHM_INT;
        v->i = x;
    } else if (PyUnicode_Check(k)) {
        Py_ssize_t n;
        const char *s = PyUnicode_AsUTF8AndSize(k, &n);
        if (!s)
            return -1;
        v->kind = SHM_STRING;
        v->str = s;
        v->len = n;
    } else if (PyBytes_Check(k)) {
        v->kind = SHM_BYTES;
        v->str = PyBytes_AS_STRING(k);
        v->len = PyBytes_GET_SIZE(k);
    } else {
        PyErr_Format(TypeMismatch, "a key of type %.100s: keys are str, bytes, int, bool or None",
                     Py_TYPE(k)->tp_name);
        return -1;
    }
    return 0;
}

static int is_proxy(PyObject *o) { return PyObject_TypeCheck(o, &ProxyType); }

static int new_container(txstate *ts, int32_t kind, int64_t cap, shm_obj *out)
{
    shm_error err;
    int32_t rc;
    LIB(rc, L.shm_tx_new(ts->tx, kind, cap, out, &err));
    if (rc < 0)
        return fail_rc(rc, &err);
    return 0;
}

static int memo_get(PyObject **memo, PyObject *o, shm_obj *out)
{
    PyObject *key, *hit;
    if (!*memo)
        return 0;
    key = PyLong_FromVoidPtr(o);
    if (!key)
        return -1;
    hit = PyDict_GetItemWithError(*memo, key);
    Py_DECREF(key);
    if (!hit)
        return PyErr_Occurred() ? -1 : 0;
    *out = (shm_obj)PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(hit, 0));
    return 1;
}

/* memo_put remembers that o became object obj (and keeps o alive). */
static int memo_put(PyObject **memo, PyObject *o, shm_obj obj)
{
    PyObject *key, *val;
    int r;
    if (!*memo && !(*memo = PyDict_New()))
        return -1;
    key = PyLong_FromVoidPtr(o);
    val = Py_BuildValue("(KO)", (unsigned long long)obj, o);
    if (!key || !val) {
        Py_XDECREF(key);
        Py_XDECREF(val);
        return -1;
    }
    r = PyDict_SetItem(*memo, key, val);
    Py_DECREF(key);
    Py_DECREF(val);
    return r;
}

static int to_value(txstate *ts, PyObject *o, shm_value *v, PyObject **memo);

/* fill fills the new container c, a Dict (isdict) or a List, with the
 * items of o, a dict or a list or tuple, converted (memo: to_value's). It
 * works on a snapshot: converting a value may run Python code, and
 * another thread may change o while a call runs without the GIL. */
static int fill(txstate *ts, shm_obj c, PyObject *o, int isdict, PyObject **memo)
{
    PyObject *items = isdict ? PyDict_Items(o) : PySequence_List(o);
    Py_ssize_t i;
    int r = 0;
    if (!items)
        return -1;
    for (i = 0; r == 0 && i < PyList_GET_SIZE(items); i++) {
        PyObject *it = PyList_GET_ITEM(items, i);
        shm_value kv, vv;
        shm_error err;
        int32_t rc;
        if ((isdict && to_key(PyTuple_GET_ITEM(it, 0), &kv) < 0) ||
            to_value(ts, isdict ? PyTuple_GET_ITEM(it, 1) : it, &vv, memo) < 0) {
            r = -1;
            break;
        }
        if (isdict)
            LIB(rc, L.shm_dict_set(ts->tx, c, &kv, &vv, &err));
        else
            LIB(rc, L.shm_list_append(ts->tx, c, &vv, &err));
        if (rc < 0)
            r = fail_rc(rc, &err);
    }
    Py_DECREF(items);
    return r;
}

/* to_value converts a Python value for the store: scalars in place (str
 * and bytes point into o, which the caller keeps alive for the call);
 * dict, list and tuple become new shared containers (aliasing kept
 * through memo); proxies of ts's store are linked, not copied. */
static int to_value(txstate *ts, PyObject *o, shm_value *v, PyObject **memo)
{
    int r;
    shm_obj obj;
    memset(v, 0, sizeof *v);
    if (o == Py_None || PyBool_Check(o) || PyLong_Check(o) || PyUnicode_Check(o) || PyBytes_Check(o))
        return to_key(o, v);
    if (PyFloat_Check(o)) {
        v->kind = SHM_FLOAT;
        v->f = PyFloat_AS_DOUBLE(o);
        return 0;
    }
    if (PyByteArray_Check(o)) {
        /* copied: another thread may resize it while the call runs without the GIL */
        PyObject *b = PyBytes_FromObject(o);
        if (!b)
            return -1;
        r = memo_put(memo, b, 0); /* keeps the copy alive for the call */
        Py_DECREF(b);
        if (r < 0)
            return -1;
        v->kind = SHM_BYTES;
        v->str = PyBytes_AS_STRING(b);
        v->len = PyBytes_GET_SIZE(b);
        return 0;
    }
    if (is_proxy(o)) {
        ProxyObject *p = (ProxyObject *)o;
        if (!p->store)
            r = materialize(ts, p, &obj, memo, 1);
        else if (!same_store(p->store, ts->store)) {
            PyErr_SetString(TypeMismatch, "a container of another store: copy it with to_python() first");
            return -1;
        } else
            r = proxy_obj(ts, p, &obj);
        if (r < 0)
            return -1;
        v->kind = p->kind == SHM_QUEUE ? SHM_LIST : p->kind;
        v->obj = obj;
        return 0;
    }
    if (PyDict_Check(o) || PyList_Check(o) || PyTuple_Check(o)) {
        int isdict = PyDict_Check(o);
        r = memo_get(memo, o, &obj);
        if (r < 0)
            return -1;
        if (r == 0) {
            if (new_container(ts, isdict ? SHM_DICT : SHM_LIST, 0, &obj) < 0)
                return -1;
            if (memo_put(memo, o, obj) < 0)
                return -1;
            if (fill(ts, obj, o, isdict, memo) < 0)
                return -1;
        }
        v->kind = isdict ? SHM_DICT : SHM_LIST;
        v->obj = obj;
        return 0;
    }
    PyErr_Format(TypeMismatch,
                 "cannot store a value of type '%.100s': values are None, bool, int, float, str, bytes, "
                 "dict, list, tuple and shmstore objects",
                 Py_TYPE(o)->tp_name);
    return -1;
}

/* to_value_top: to_value with its own memo, which keeps what v points
 * into alive: Py_XDECREF it after the call that takes v (on failure it is
 * released here). */
static int to_value_top(txstate *ts, PyObject *o, shm_value *v, PyObject **memo)
{
    *memo = NULL;
    if (to_value(ts, o, v, memo) < 0) {
        Py_CLEAR(*memo);
        return -1;
    }
    return 0;
}

/* absent: dflt (a new reference), or KeyError(key) when dflt is NULL. */
static PyObject *absent(PyObject *key, PyObject *dflt)
{
    if (dflt) {
        Py_INCREF(dflt);
        return dflt;
    }
    PyErr_SetObject(PyExc_KeyError, key);
    return NULL;
}

/* absent_key: after to_key failed: whether the failure only says that no
 * Dict holds such a key (an int beyond int64; with any, a key of another
 * kind too: TypeMismatch), cleared then; else the exception stays. */
static int absent_key(int any)
{
    if (!PyErr_ExceptionMatches(PyExc_OverflowError) && !(any && PyErr_ExceptionMatches(TypeMismatch)))
        return 0;
    PyErr_Clear();
    return 1;
}

/* none_or_raise: None, or the exception of a failed rc. */
static PyObject *none_or_raise(int32_t rc, const shm_error *err)
{
    if (rc < 0)
        return raise_rc(rc, err);
    Py_RETURN_NONE;
}

/* from_value: a value the library passed out, as Python (str and bytes
 * copied at once; containers as proxies). */
static PyObject *from_value(txstate *ts, const shm_value *v)
{
    switch (v->kind) {
    case SHM_NONE: Py_RETURN_NONE;
    case SHM_BOOL: return PyBool_FromLong(v->b);
    case SHM_INT: return PyLong_FromLongLong(v->i);
    case SHM_FLOAT: return PyFloat_FromDouble(v->f);
    case SHM_STRING: return PyUnicode_DecodeUTF8(v->str ? v->str : "", (Py_ssize_t)v->len, "surrogateescape");
    case SHM_BYTES: return PyBytes_FromStringAndSize(v->str ? v->str : "", (Py_ssize_t)v->len);
    case SHM_DICT: case SHM_LIST: case SHM_RECORD: case SHM_COUNTER: case SHM_QUEUE:
        return make_proxy(ts, v->obj, v->kind);
    default:
        return PyErr_Format(Error, "a value of unknown kind %d", (int)v->kind);
    }
}

/* record_class_of: the Python class of a record (by its class name; a
 * plain shmstore.Object when no class has that name), and the name. */
static PyObject *record_class_of(txstate *ts, shm_obj o, PyObject **name_out)
{
    shm_error err;
    shm_value v;
    int32_t rc;
    PyObject *name, *cls;
    ERR_INIT(err);
    memset(&v, 0, sizeof v);
    NOGIL(rc = L.shm_record_class(ts->tx, o, &v, &err));
    if (rc < 0)
        return raise_rc(rc, &err);
    name = PyUnicode_DecodeUTF8(v.str ? v.str : "", (Py_ssize_t)v.len, "surrogateescape");
    if (!name)
        return NULL;
    cls = record_classes ? PyDict_GetItemWithError(record_classes, name) : NULL;
    if (name_out && !PyErr_Occurred())
        *name_out = name;
    else
        Py_DECREF(name);
    if (!cls) {
        if (PyErr_Occurred())
            return NULL;
        cls = cls_record;
    }
    if (!cls)
        return PyErr_Format(Error, "shmstore classes not set up");
    Py_INCREF(cls);
    return cls;
}

static PyObject *alloc_proxy(PyObject *cls, StoreObject *st, uint64_t id, int32_t kind)
{
    PyTypeObject *t = (PyTypeObject *)cls;
    ProxyObject *p;
    if (!PyType_Check(cls) || !PyType_IsSubtype(t, &ProxyType))
        return PyErr_Format(PyExc_TypeError, "not a shmstore proxy class");
    p = (ProxyObject *)t->tp_alloc(t, 0);
    if (!p)
        return NULL;
    Py_XINCREF(st);
    p->store = st;
    p->id = id;
    p->kind = kind;
    return (PyObject *)p;
}

/* obj_id: the id of the object o of ts (shm_obj_id; keeps the GIL: see
 * NOGIL). */
static int obj_id(txstate *ts, shm_obj o, uint64_t *id)
{
    shm_error err;
    int32_t rc;
    ERR_INIT(err);
    rc = L.shm_obj_id(ts->tx, o, id, &err);
    return rc < 0 ? fail_rc(rc, &err) : 0;
}

/* proxy_class: the class of the proxies of a container of kind (a new
 * reference): Dict, List, Counter, Queue; NULL with an exception for
 * another kind (a record's class is its own: record_class_of). */
static PyObject *proxy_class(int32_t kind)
{
    PyObject *cls;
    switch (kind) {
    case SHM_DICT: cls = cls_dict; break;
    case SHM_LIST: cls = cls_list; break;
    case SHM_COUNTER: cls = cls_counter; break;
    case SHM_QUEUE: cls = cls_queue; break;
    default: return PyErr_Format(Error, "not a container kind: %d", (int)kind);
    }
    if (!cls)
        return PyErr_Format(Error, "shmstore classes not set up");
    Py_INCREF(cls);
    return cls;
}

static PyObject *make_proxy(txstate *ts, shm_obj o, int32_t kind)
{
    uint64_t id = 0;
    PyObject *cls, *res;
    ProxyObject *p;
    if (obj_id(ts, o, &id) < 0)
        return NULL;
    cls = kind == SHM_RECORD ? record_class_of(ts, o, NULL) : proxy_class(kind);
    if (!cls)
        return NULL;
    res = alloc_proxy(cls, ts->store, id, kind);
    Py_DECREF(cls);
    if (!res)
        return NULL;
    p = (ProxyObject *)res;
    p->obj = o;
    p->serial = ts->serial;
    return res;
}

/* bind_new binds an unbound proxy to the object o just made in ts, until
 * ts commits (then for good) or the attempt ends otherwise (then unbound
 * again, so that a re-run makes it anew). */
static int bind_new(txstate *ts, ProxyObject *p, shm_obj o, int pending)
{
    uint64_t id = 0;
    if (obj_id(ts, o, &id) < 0)
        return -1;
    if (pending) {
        if (!ts->pending && !(ts->pending = PyList_New(0)))
            return -1;
        if (PyList_Append(ts->pending, (PyObject *)p) < 0)
            return -1;
        p->pending = 1;
    }
    Py_INCREF(ts->store);
    Py_XSETREF(p->store, ts->store);
    p->id = id;
    p->obj = o;
    p->serial = ts->serial;
    return 0;
}

static PyObject *attr_str(PyObject *src, const char *name)
{
    PyObject *v = PyObject_GetAttrString(src, name);
    if (v && !PyUnicode_Check(v)) {
        Py_DECREF(v);
        return PyErr_Format(PyExc_TypeError, "%s must be a str", name);
    }
    return v;
}

/* new_record makes a record in ts (fields start as None) of the class
 * name and fields src (a record class, or an unbound instance, which may
 * carry its own: a copy of a record of a class unknown here) says. */
static int new_record(txstate *ts, PyObject *src, shm_obj *out)
{
    PyObject *name = NULL, *fields = NULL, *seq = NULL;
    const char **names = NULL;
    Py_ssize_t i, n;
    shm_error err;
    int32_t rc;
    int res = -1;
    name = attr_str(src, "_shm_class_");
    if (!name)
        goto done;
    fields = PyObject_GetAttrString(src, "_shm_fields_");
    if (!fields)
        goto done;
    seq = PySequence_Tuple(fields); /* its items stay put while the call runs without the GIL */
    if (!seq)
        goto done;
    n = PySequence_Fast_GET_SIZE(seq);
    names = PyMem_Calloc((size_t)n + 1, sizeof *names);
    if (!names) {
        PyErr_NoMemory();
        goto done;
    }
    for (i = 0; i < n; i++) {
        PyObject *f = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyUnicode_Check(f)) {
            PyErr_SetString(PyExc_TypeError, "_shm_fields_ must be a sequence of str");
            goto done;
        }
        if (!(names[i] = PyUnicode_AsUTF8(f)))
            goto done;
    }
    ERR_INIT(err);
    {
        const char *cname = PyUnicode_AsUTF8(name);
        if (!cname)
            goto done;
        NOGIL(rc = L.shm_tx_new_record(ts->tx, cname, names, (int32_t)n, out, &err));
    }
    if (rc < 0) {
        raise_rc(rc, &err);
        goto done;
    }
    res = 0;
done:
    PyMem_Free(names);
    Py_XDECREF(seq);
    Py_XDECREF(fields);
    Py_XDECREF(name);
    return res;
}

static int record_set_raw(txstate *ts, shm_obj o, PyObject *name, PyObject *val, PyObject **memo);

/* materialize makes an unbound proxy's object in ts (a record with its
 * local fields, a counter with its count, a queue with its maxsize) and
 * binds the proxy (pending: until commit, see bind_new). */
static int materialize(txstate *ts, ProxyObject *p, shm_obj *out, PyObject **memo, int pending)
{
    shm_obj o = 0;
    shm_error err;
    int32_t rc;
    if (ts->readonly) {
        PyErr_SetString(ReadOnlyError, "cannot store a new object in a read-only transaction");
        return -1;
    }
    switch (p->kind) {
    case SHM_RECORD: {
        if (new_record(ts, (PyObject *)p, &o) < 0)
            return -1;
        if (bind_new(ts, p, o, pending) < 0)
            return -1;
        if (p->local) {
            PyObject *items = PyDict_Items(p->local);
            Py_ssize_t i, n;
            if (!items)
                return -1;
            n = PyList_GET_SIZE(items);
            for (i = 0; i < n; i++) {
                PyObject *it = PyList_GET_ITEM(items, i);
                if (record_set_raw(ts, o, PyTuple_GET_ITEM(it, 0), PyTuple_GET_ITEM(it, 1), memo) < 0) {
                    Py_DECREF(items);
                    return -1;
                }
            }
            Py_DECREF(items);
        }
        break;
    }
    case SHM_COUNTER: {
        long long n0 = p->local ? PyLong_AsLongLong(p->local) : 0;
        if (n0 == -1 && PyErr_Occurred())
            return -1;
        if (new_container(ts, SHM_COUNTER, 0, &o) < 0)
            return -1;
        if (n0) {
            LIB(rc, L.shm_counter_add_blind(ts->tx, o, n0, &err));
            if (rc < 0)
                return fail_rc(rc, &err);
        }
        if (bind_new(ts, p, o, pending) < 0)
            return -1;
        break;
    }
    case SHM_QUEUE: {
        long long cap = p->local ? PyLong_AsLongLong(p->local) : 0;
        if (cap == -1 && PyErr_Occurred())
            return -1;
        if (new_container(ts, SHM_QUEUE, cap, &o) < 0)
            return -1;
        if (bind_new(ts, p, o, pending) < 0)
            return -1;
        break;
    }
    default:
        PyErr_SetString(Error, "cannot store this object");
        return -1;
    }
    *out = o;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Proxy base type.                                                    */

static void proxy_dealloc(ProxyObject *p)
{
    PyObject_GC_UnTrack(p);
    if (p->weakrefs)
        PyObject_ClearWeakRefs((PyObject *)p);
    Py_CLEAR(p->store);
    Py_CLEAR(p->local);
    Py_TYPE(p)->tp_free((PyObject *)p);
}

static int proxy_traverse(ProxyObject *p, visitproc visit, void *arg)
{
    Py_VISIT(p->store);
    Py_VISIT(p->local);
    return 0;
}

static int proxy_clear(ProxyObject *p)
{
    Py_CLEAR(p->local);
    return 0;
}

static PyObject *proxy_get_id(ProxyObject *p, void *c UNUSED)
{
    if (!p->store)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLongLong(p->id);
}

static PyObject *proxy_get_store(ProxyObject *p, void *c UNUSED)
{
    if (!p->store)
        Py_RETURN_NONE;
    Py_INCREF(p->store);
    return (PyObject *)p->store;
}

static PyObject *proxy_get_kind(ProxyObject *p, void *c UNUSED)
{
    return PyLong_FromLong(p->kind);
}

static PyObject *proxy_get_local(ProxyObject *p, void *c UNUSED)
{
    if (!p->local)
        Py_RETURN_NONE;
    Py_INCREF(p->local);
    return p->local;
}

static int proxy_set_local(ProxyObject *p, PyObject *v, void *c UNUSED)
{
    if (p->store) {
        PyErr_SetString(Error, "the object is in a store");
        return -1;
    }
    Py_XINCREF(v);
    Py_XSETREF(p->local, v);
    return 0;
}

static PyGetSetDef proxy_getset[] = {
    {"_shm_id", (getter)proxy_get_id, NULL, "the container's id (the C ABI's shm_obj_id()), None while unbound", NULL},
    {"_shm_store", (getter)proxy_get_store, NULL, "the Store, None while unbound", NULL},
    {"_shm_kind", (getter)proxy_get_kind, NULL, "the SHM_* kind", NULL},
    {"_shm_local", (getter)proxy_get_local, (setter)proxy_set_local, "an unbound object's own state", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyObject *proxy_richcompare(PyObject *a, PyObject *b, int op)
{
    ProxyObject *x = (ProxyObject *)a, *y;
    int same;
    if ((op != Py_EQ && op != Py_NE) || !is_proxy(b))
        Py_RETURN_NOTIMPLEMENTED;
    y = (ProxyObject *)b;
    same = x == y || (x->store && x->store == y->store && x->id == y->id);
    if (!same && x->store && y->store && x->store != y->store)
        same = x->id == y->id && PyObject_RichCompareBool(x->store->path, y->store->path, Py_EQ) == 1;
    if (op == Py_NE)
        same = !same;
    return PyBool_FromLong(same);
}

static Py_hash_t proxy_hash(ProxyObject *p)
{
    Py_hash_t h;
    if (!p->store)
        return _Py_HashPointer(p);
    h = (Py_hash_t)(p->id ^ (p->id >> 29));
    return h == -1 ? -2 : h;
}

/* _shm_same(other): the same shared object. */
static PyObject *proxy_same(ProxyObject *p, PyObject *o)
{
    ProxyObject *q;
    if (!is_proxy(o))
        Py_RETURN_FALSE;
    q = (ProxyObject *)o;
    if (p == q)
        Py_RETURN_TRUE;
    if (!p->store || !q->store || p->id != q->id)
        Py_RETURN_FALSE;
    if (p->store == q->store)
        Py_RETURN_TRUE;
    return PyObject_RichCompare(p->store->path, q->store->path, Py_EQ);
}

/* proxy_unbound_like: a new unbound object of p's class and kind, holding
 * local (None: nothing) as its own state: the copies copy.copy and
 * copy.deepcopy make of an object not stored yet. Unbound even while a
 * transaction runs, as to_python's records are. */
static PyObject *proxy_unbound_like(ProxyObject *p, PyObject *local)
{
    PyObject *res = alloc_proxy((PyObject *)Py_TYPE(p), NULL, 0, p->kind);
    if (res && local != Py_None) {
        Py_INCREF(local);
        ((ProxyObject *)res)->local = local;
    }
    return res;
}

/* ------------------------------------------------------------------ */
/* Reading many: counts, values by index, keys.                         */

/* A call that says how many (shm_list_len, shm_dict_len, shm_queue_len,
 * shm_queue_cap, shm_record_nfields, shm_counter_get), and one that reads
 * the i-th (shm_list_get, shm_queue_peek, shm_record_field). */
typedef int32_t (*count_fn)(shm_tx, shm_obj, int64_t *, shm_error *);
typedef int32_t (*at_fn)(shm_tx, shm_obj, int64_t, shm_value *, shm_error *);

/* count: what fn says of o into *n; -1 with an exception. */
static int count(txstate *ts, shm_obj o, count_fn fn, int64_t *n)
{
    shm_error err;
    int32_t rc;
    *n = 0;
    LIB(rc, fn(ts->tx, o, n, &err));
    return rc < 0 ? fail_rc(rc, &err) : 0;
}

/* count_op: what fn says of o, as an int. */
static PyObject *count_op(txstate *ts, shm_obj o, count_fn fn)
{
    int64_t n;
    return count(ts, o, fn, &n) < 0 ? NULL : PyLong_FromLongLong(n);
}

static PyObject *copy_out(txstate *ts, const shm_value *v, PyObject *memo);

/* append_at appends to the list into the values fn reads of o at 0 to
 * n-1: as proxies (memo NULL), or copied out (to_python) with memo. */
static int append_at(txstate *ts, shm_obj o, int64_t n, at_fn fn, PyObject *memo, PyObject *into)
{
    int64_t i;
    for (i = 0; i < n; i++) {
        shm_value v;
        shm_error err;
        int32_t rc;
        PyObject *x;
        int r;
        LIB(rc, fn(ts->tx, o, i, &v, &err));
        if (rc < 0)
            return fail_rc(rc, &err);
        if (!(x = memo ? copy_out(ts, &v, memo) : from_value(ts, &v)))
            return -1;
        r = PyList_Append(into, x);
        Py_DECREF(x);
        if (r < 0)
            return -1;
    }
    return 0;
}

/* items_at: the values fn reads of o at 0 to n-1 (n: what count_fn says),
 * as a new list of proxies. */
static PyObject *items_at(txstate *ts, shm_obj o, count_fn nfn, at_fn fn)
{
    int64_t n;
    PyObject *res;
    if (count(ts, o, nfn, &n) < 0 || !(res = PyList_New(0)))
        return NULL;
    if (append_at(ts, o, n, fn, NULL, res) < 0)
        Py_CLEAR(res);
    return res;
}

/* dict_keys: the keys, from one snapshot. */
static PyObject *dict_keys(txstate *ts, shm_obj o)
{
    PyObject *keys = PyList_New(0);
    int64_t i;
    if (!keys)
        return NULL;
    for (i = 0;; i++) {
        shm_value kv;
        shm_error err;
        int32_t rc;
        PyObject *k;
        LIB(rc, L.shm_dict_key(ts->tx, o, i, &kv, &err));
        if (rc == SHM_ERR_RANGE)
            break;
        if (rc < 0) {
            Py_DECREF(keys);
            return raise_rc(rc, &err);
        }
        k = from_value(ts, &kv);
        if (!k || PyList_Append(keys, k) < 0) {
            Py_XDECREF(k);
            Py_DECREF(keys);
            return NULL;
        }
        Py_DECREF(k);
    }
    return keys;
}


/* ------------------------------------------------------------------ */
/* Copying out (to_python).                                            */

static PyObject *record_fields(txstate *ts, shm_obj o);

/* copy_entries: into[k] = a copy of o's value under k, for each k of keys
 * (a list or tuple, NULL after a failure; released here): o a Dict
 * (keys), or a record (field names). */
static int copy_entries(txstate *ts, shm_obj o, int record, PyObject *keys, PyObject *into, PyObject *memo)
{
    Py_ssize_t i;
    int r = 0;
    if (!keys)
        return -1;
    for (i = 0; r == 0 && i < PySequence_Fast_GET_SIZE(keys); i++) {
        shm_value kv, vv;
        shm_error err;
        int32_t rc;
        PyObject *k = PySequence_Fast_GET_ITEM(keys, i), *x;
        const char *field = NULL;
        if (record && !(field = PyUnicode_Check(k) ? PyUnicode_AsUTF8(k) : NULL)) {
            if (!PyErr_Occurred())
                PyErr_SetString(Error, "a record field name that is not a str");
            r = -1;
        } else if (!record && to_key(k, &kv) < 0)
            r = -1;
        else {
            if (record)
                LIB(rc, L.shm_record_get(ts->tx, o, field, &vv, &err));
            else
                LIB(rc, L.shm_dict_get(ts->tx, o, &kv, &vv, &err));
            if (rc < 0)
                r = fail_rc(rc, &err);
            else if (!(x = copy_out(ts, &vv, memo)))
                r = -1;
            else {
                r = PyDict_SetItem(into, k, x);
                Py_DECREF(x);
            }
        }
    }
    Py_DECREF(keys);
    return r;
}

/* record_copy: an unbound instance of the record o's class, holding
 * copies of its fields (a plain shmstore.Object keeps the class name and
 * field names, for a round trip), registered in memo under key first. */
static PyObject *record_copy(txstate *ts, shm_obj o, PyObject *key, PyObject *memo)
{
    PyObject *cname = NULL, *cls = record_class_of(ts, o, &cname), *res, *local;
    int generic = cls == cls_record;
    if (!cls)
        return NULL;
    res = alloc_proxy(cls, NULL, 0, SHM_RECORD);
    Py_DECREF(cls);
    if (res && generic && PyObject_SetAttrString(res, "_shm_class_", cname) < 0)
        Py_CLEAR(res);
    Py_XDECREF(cname);
    if (!res || !(local = PyDict_New()))
        goto fail;
    ((ProxyObject *)res)->local = local;
    if (PyDict_SetItem(memo, key, res) < 0 || copy_entries(ts, o, 1, record_fields(ts, o), local, memo) < 0)
        goto fail;
    if (generic) {
        PyObject *names = PyDict_Keys(local), *t = names ? PyList_AsTuple(names) : NULL;
        int r = t ? PyObject_SetAttrString(res, "_shm_fields_", t) : -1;
        Py_XDECREF(names);
        Py_XDECREF(t);
        if (r < 0)
            goto fail;
    }
    return res;
fail:
    Py_XDECREF(res);
    return NULL;
}

/* copy_container: a container of ts as plain Python (to_python), memo
 * the copies made so far by id (aliasing and cycles kept). */
static PyObject *copy_container(txstate *ts, shm_obj o, int32_t kind, PyObject *memo)
{
    uint64_t id = 0;
    int64_t n = 0;
    int r = -1;
    PyObject *key, *res;
    if (obj_id(ts, o, &id) < 0 || !(key = PyLong_FromUnsignedLongLong(id)))
        return NULL;
    if ((res = PyDict_GetItemWithError(memo, key)) || PyErr_Occurred()) {
        Py_XINCREF(res);
        Py_DECREF(key);
        return res;
    }
    switch (kind) {
    case SHM_DICT:
        if ((res = PyDict_New()) && PyDict_SetItem(memo, key, res) == 0)
            r = copy_entries(ts, o, 0, dict_keys(ts, o), res, memo);
        break;
    case SHM_LIST:
    case SHM_QUEUE: /* a Queue as the list of its items, read without taking them */
        if ((res = PyList_New(0)) && PyDict_SetItem(memo, key, res) == 0 &&
            count(ts, o, kind == SHM_QUEUE ? L.shm_queue_len : L.shm_list_len, &n) == 0)
            r = append_at(ts, o, n, kind == SHM_QUEUE ? L.shm_queue_peek : L.shm_list_get, memo, res);
        break;
    case SHM_COUNTER:
        if (count(ts, o, L.shm_counter_get, &n) == 0 && (res = PyLong_FromLongLong(n)))
            r = 0;
        break;
    case SHM_RECORD:
        r = (res = record_copy(ts, o, key, memo)) ? 0 : -1;
        break;
    default:
        PyErr_Format(Error, "not a container kind: %d", (int)kind);
    }
    Py_DECREF(key);
    if (r < 0)
        Py_CLEAR(res);
    return res;
}

static PyObject *copy_out(txstate *ts, const shm_value *v, PyObject *memo)
{
    if (v->kind >= SHM_DICT)
        return copy_container(ts, v->obj, v->kind, memo);
    return from_value(ts, v);
}

/* taken: a value removed from the store by this operation (pop, a queue's
 * get): a container is freed when the transaction commits, so it comes out
 * as a copy (to_python), read now in the same transaction. */
static PyObject *taken(txstate *ts, const shm_value *v)
{
    PyObject *memo, *res;
    if (v->kind < SHM_DICT)
        return from_value(ts, v);
    if (!(memo = PyDict_New()))
        return NULL;
    res = copy_out(ts, v, memo);
    Py_DECREF(memo);
    return res;
}

static PyObject *op_to_python(txstate *ts, ProxyObject *p, shm_obj o, PyObject *a UNUSED, PyObject *b UNUSED)
{
    PyObject *memo = PyDict_New(), *res;
    if (!memo)
        return NULL;
    res = copy_container(ts, o, p->kind, memo);
    Py_DECREF(memo);
    return res;
}

static PyObject *proxy_to_python(ProxyObject *p, PyObject *unused UNUSED)
{
    if (!p->store && p->kind == SHM_RECORD) {
        /* an unbound record: itself (a Counter or Queue: UsageError, from run) */
        Py_INCREF(p);
        return (PyObject *)p;
    }
    return run(p, op_to_python, NULL, NULL, 0);
}

static PyMethodDef proxy_methods[] = {
    {"to_python", (PyCFunction)proxy_to_python, METH_NOARGS,
     "to_python()\n--\n\nA deep copy as plain Python values, read in one transaction: Dicts become "
     "dicts, Lists lists, Counters ints, Queues lists of their items (none taken), records unbound "
     "instances of their class. Aliasing and cycles are kept."},
    {"_shm_same", (PyCFunction)proxy_same, METH_O, "whether other is a proxy of the same shared object"},
    {"_shm_unbound_like", (PyCFunction)proxy_unbound_like, METH_O,
     "_shm_unbound_like(local): a new unbound object of this class holding local"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ProxyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shmstore._shmstore.Proxy",
    .tp_basicsize = sizeof(ProxyObject),
    .tp_dealloc = (destructor)proxy_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The base of the proxies of shared objects: a store and a container id.",
    .tp_traverse = (traverseproc)proxy_traverse,
    .tp_clear = (inquiry)proxy_clear,
    .tp_richcompare = proxy_richcompare,
    .tp_weaklistoffset = offsetof(ProxyObject, weakrefs),
    .tp_methods = proxy_methods,
    .tp_getset = proxy_getset,
    .tp_hash = (hashfunc)proxy_hash,
};

/* PROXY_TYPE(name, cls, fields...): a subtype of Proxy (tp_base is set
 * at import) with the fields every one has, and its own. */
#define PROXY_TYPE(name, cls, ...)                                                 \
    {                                                                              \
        PyVarObject_HEAD_INIT(NULL, 0)                                             \
        .tp_name = "shmstore._shmstore." name,                                     \
        .tp_basicsize = sizeof(ProxyObject),                                       \
        .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC, \
        .tp_doc = "The C part of " cls ".",                                        \
        .tp_traverse = (traverseproc)proxy_traverse,                               \
        .tp_clear = (inquiry)proxy_clear,                                          \
        __VA_ARGS__                                                                \
    }

/* ------------------------------------------------------------------ */
/* One-shot operations (shm_op_*).                                     */
/*
 * Outside a transaction, a get, set or delete of a Dict, a Counter's
 * read or add, a Queue's put or get, whose arguments are scalars (or
 * containers of the store already), is one call of the library: one
 * transaction of its own, the retry loop inside Go, where the header's
 * loop takes four calls (begin, open, the operation, end). The op1_*
 * functions return 1 when done (the result in *res, or an exception the
 * operation means: KeyError, queue.Empty), 0 when the operation takes the
 * transaction path instead, -1 on an exception. The transaction path
 * also takes every failure of a one-shot call, which did nothing: it
 * raises what the operation raises there (a stale object, a closed
 * store), so that both paths fail alike. The GIL is released around
 * every call (each may wait: a queue, or a word another transaction
 * holds for a moment).
 */

/* OP1_CALL(rc, call): a one-shot call that may wait for a transaction
 * slot (every slot of the process in use), in slices of 100 ms
 * (timeout_ms in the call: OP1_SLICE) with a check for signals between
 * them; rc is SHM_TIMEOUT when a signal handler raised. */
#define OP1_SLICE 100
#define OP1_CALL(rc, call)                                         \
    do {                                                           \
        ERR_INIT(err);                                             \
        NOGIL(rc = call);                                          \
    } while (rc == SHM_TIMEOUT && PyErr_CheckSignals() == 0)

/* op1_ok: whether p's operation may be one-shot: p is bound, its store
 * open, the library this process's, and no transaction of its store runs
 * in this thread. */
static int op1_ok(ProxyObject *p)
{
    return p->store && !p->store->closed && lib_loaded && !lib_forked && !ts_find(p->store);
}

/* op1_in: a key or value for a one-shot call: a scalar (str and bytes
 * point into o), or a container of p's store by its id. 0: not one (a
 * new container, an int beyond int64: the transaction path says). */
static int op1_in(ProxyObject *p, PyObject *o, shm_value *v)
{
    if (PyFloat_Check(o)) {
        memset(v, 0, sizeof *v);
        v->kind = SHM_FLOAT;
        v->f = PyFloat_AS_DOUBLE(o);
        return 1;
    }
    if (is_proxy(o)) {
        ProxyObject *q = (ProxyObject *)o;
        if (!q->store || q->pending || !same_store(q->store, p->store))
            return 0;
        memset(v, 0, sizeof *v);
        v->kind = q->kind == SHM_QUEUE ? SHM_LIST : q->kind;
        v->obj = q->id;
        return 1;
    }
    if (!(o == Py_None || PyBool_Check(o) || PyLong_Check(o) || PyUnicode_Check(o) || PyBytes_Check(o)))
        return 0;
    if (to_key(o, v) < 0) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* op1_out: a value a one-shot call passed out, as Python (a container by
 * its id: a proxy). NULL without an exception for a record, whose class
 * only a transaction reads. */
static PyObject *op1_out(StoreObject *st, const shm_value *v)
{
    PyObject *cls, *res;
    if (v->kind < SHM_DICT)
        return from_value(NULL, v);
    if (v->kind == SHM_RECORD)
        return NULL;
    if (!(cls = proxy_class(v->kind)))
        return NULL;
    res = alloc_proxy(cls, st, v->obj, v->kind);
    Py_DECREF(cls);
    return res;
}

/* A one-shot call's buffer for a String or Bytes out: on the stack, or on
 * the heap once one did not fit (SHM_SHORT says how much it needs). */
typedef struct {
    char *p;
    int64_t cap;
    char small[256];
} op1buf;

static void op1buf_init(op1buf *b)
{
    b->p = b->small;
    b->cap = sizeof b->small;
}

static void op1buf_free(op1buf *b)
{
    if (b->p != b->small)
        PyMem_Free(b->p);
    op1buf_init(b);
}

/* op1buf_fits: after a call that returned rc with out v: 1 when it is to
 * be called again with the buffer grown (a String or Bytes did not fit),
 * 0 when not, -1 when no memory. */
static int op1buf_fits(op1buf *b, int32_t rc, const shm_value *v)
{
    char *p;
    if (rc != SHM_SHORT || (v->kind != SHM_STRING && v->kind != SHM_BYTES))
        return 0;
    op1buf_free(b);
    if (!(p = PyMem_Malloc((size_t)v->len + 1))) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = v->len + 1;
    return 1;
}

/* op1_dict_get: key's value in the Dict p (*res NULL: absent). */
static int op1_dict_get(ProxyObject *p, PyObject *key, PyObject **res)
{
    shm_value k, v;
    shm_error err;
    op1buf b;
    int32_t rc;
    int r;
    if (!op1_ok(p) || !op1_in(p, key, &k))
        return 0;
    op1buf_init(&b);
    do
        OP1_CALL(rc, L.shm_op_dict_get(p->store->h, p->id, &k, OP1_SLICE, &v, b.p, b.cap, &err));
    while ((r = op1buf_fits(&b, rc, &v)) > 0);
    *res = NULL;
    if (rc == SHM_TIMEOUT)
        r = -1; /* a signal handler raised */
    else if (r == 0 && rc == SHM_OK)
        r = (*res = op1_out(p->store, &v)) ? 1 : PyErr_Occurred() ? -1 : 0;
    else if (r == 0)
        r = rc == SHM_ERR_NOT_FOUND;
    op1buf_free(&b);
    return r;
}

/* op1_dict_set: key = val in the Dict p (val NULL: del key; KeyError if
 * absent). */
static int op1_dict_set(ProxyObject *p, PyObject *key, PyObject *val)
{
    shm_value k, v;
    shm_error err;
    int32_t rc;
    if (!op1_ok(p) || !op1_in(p, key, &k) || (val && !op1_in(p, val, &v)))
        return 0;
    if (val)
        OP1_CALL(rc, L.shm_op_dict_set(p->store->h, p->id, &k, &v, OP1_SLICE, &err));
    else
        OP1_CALL(rc, L.shm_op_dict_delete(p->store->h, p->id, &k, OP1_SLICE, &err));
    if (rc == SHM_TIMEOUT)
        return -1;
    if (rc == SHM_ERR_NOT_FOUND && !val) {
        absent(key, NULL);
        return -1;
    }
    return rc == SHM_OK;
}

/* op1_counter: the Counter p's value (delta NULL), or delta added (the
 * new value; None when blind). */
static int op1_counter(ProxyObject *p, PyObject *delta, int blind, PyObject **res)
{
    shm_error err;
    int32_t rc;
    int64_t out = 0;
    long long d = 0;
    int overflow = 0;
    if (!op1_ok(p))
        return 0;
    if (delta) {
        d = PyLong_AsLongLongAndOverflow(delta, &overflow);
        if (overflow || (d == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return 0;
        }
    }
    if (delta)
        OP1_CALL(rc, L.shm_op_counter_add(p->store->h, p->id, d, blind, OP1_SLICE, &out, &err));
    else
        OP1_CALL(rc, L.shm_op_counter_get(p->store->h, p->id, OP1_SLICE, &out, &err));
    if (rc == SHM_TIMEOUT)
        return -1;
    if (rc != SHM_OK)
        return 0;
    if (blind) {
        Py_INCREF(Py_None);
        *res = Py_None;
    } else if (!(*res = PyLong_FromLongLong(out)))
        return -1;
    return 1;
}

/* op1_queue: val put on the Queue p (NULL: an item taken, into *res),
 * waiting while it is full (empty) if block, for at most timeout seconds
 * (< 0: without limit), in slices of 100 ms (the library's shared clock,
 * no timer per call) with a check for signals between them; queue.Full
 * (queue.Empty) when it is still. The first call does not wait: one that
 * may costs the library's watch on the clock, some 400 ns (a put and a
 * get in one process: 2.9 us without the try, 2.1 with), where a try
 * that finds the queue empty costs a call (the round trip between two
 * processes: 9.5-10.0 us without, 10.1-10.8 with). A container item (a queue's get would free it at commit)
 * takes the transaction path, which reads it first: *left is then what
 * remains of the timeout. */
static int op1_queue(ProxyObject *p, PyObject *val, int block, double timeout, PyObject **res, double *left)
{
    shm_value v;
    shm_error err;
    op1buf b;
    int32_t rc;
    int r = 0, first = 1;
    double deadline = block && timeout >= 0 ? monotonic() + timeout : 0;
    *left = timeout;
    if (!op1_ok(p) || (val && !op1_in(p, val, &v)))
        return 0;
    op1buf_init(&b);
    for (;; first = 0) {
        int64_t ms = block && !first ? OP1_SLICE : 0;
        if (deadline > 0 && ms > 0) {
            *left = deadline - monotonic();
            if (*left <= 0) {
                *left = 0;
                ms = 0;
            } else if (*left * 1000 < ms)
                ms = (int64_t)(*left * 1000) + 1;
        }
        ERR_INIT(err);
        if (val)
            NOGIL(rc = L.shm_op_queue_put(p->store->h, p->id, &v, ms, &err));
        else
            NOGIL(rc = L.shm_op_queue_get(p->store->h, p->id, ms, &v, b.p, b.cap, &err));
        if (rc == SHM_TIMEOUT) {
            if ((r = PyErr_CheckSignals()) < 0)
                break;
            continue;
        }
        if ((r = op1buf_fits(&b, rc, &v)) != 0) {
            if (r < 0)
                break;
            continue;
        }
        if (rc == SHM_FALSE && block && first)
            continue; /* now wait */
        if (rc == SHM_FALSE) {
            PyErr_SetNone(val ? QueueFull : QueueEmpty);
            r = -1;
        } else if (rc == SHM_OK) {
            r = (*res = val ? (Py_INCREF(Py_None), Py_None) : op1_out(p->store, &v)) ? 1 : -1;
        }
        break; /* else r == 0: a container item, or a failure */
    }
    op1buf_free(&b);
    return r;
}

/* ------------------------------------------------------------------ */
/* Dict.                                                               */

/* dict_read: the value under key (take: copied out, as pop gives it), or
 * dflt (NULL: KeyError) when absent. A key the store cannot hold is
 * absent: with dflt any; without, an int beyond int64 (another kind of
 * key raises TypeMismatch). */
static PyObject *dict_read(txstate *ts, shm_obj o, PyObject *key, PyObject *dflt, int take)
{
    shm_value k, v;
    shm_error err;
    int32_t rc;
    if (to_key(key, &k) < 0)
        return absent_key(dflt != NULL) ? absent(key, dflt) : NULL;
    LIB(rc, L.shm_dict_get(ts->tx, o, &k, &v, &err));
    if (rc == SHM_ERR_NOT_FOUND)
        return absent(key, dflt);
    if (rc < 0)
        return raise_rc(rc, &err);
    return take ? taken(ts, &v) : from_value(ts, &v);
}

static PyObject *op_dict_get(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *key, PyObject *dflt)
{
    return dict_read(ts, o, key, dflt, 0);
}

static PyObject *op_dict_set(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *key, PyObject *val)
{
    shm_value k, v;
    shm_error err;
    int32_t rc;
    PyObject *memo;
    if (to_key(key, &k) < 0 || to_value_top(ts, val, &v, &memo) < 0)
        return NULL;
    LIB(rc, L.shm_dict_set(ts->tx, o, &k, &v, &err));
    Py_XDECREF(memo);
    return none_or_raise(rc, &err);
}

static PyObject *op_dict_del(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *key, PyObject *b UNUSED)
{
    shm_value k;
    shm_error err;
    int32_t rc;
    if (to_key(key, &k) < 0)
        return absent_key(1) ? absent(key, NULL) : NULL;
    LIB(rc, L.shm_dict_delete(ts->tx, o, &k, &err));
    return rc == SHM_ERR_NOT_FOUND ? absent(key, NULL) : none_or_raise(rc, &err);
}

static PyObject *op_dict_len(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *a UNUSED, PyObject *b UNUSED)
{
    return count_op(ts, o, L.shm_dict_len);
}

static PyObject *op_dict_contains(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *key, PyObject *b UNUSED)
{
    shm_value k, v;
    shm_error err;
    int32_t rc;
    if (to_key(key, &k) < 0) {
        if (absent_key(1))
            Py_RETURN_FALSE;
        return NULL;
    }
    LIB(rc, L.shm_dict_get(ts->tx, o, &k, &v, &err));
    if (rc == SHM_ERR_NOT_FOUND)
        Py_RETURN_FALSE;
    return rc < 0 ? raise_rc(rc, &err) : (Py_INCREF(Py_True), Py_True);
}

static PyObject *op_dict_keys(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *a UNUSED,
                              PyObject *b UNUSED)
{
    return dict_keys(ts, o);
}

/* what: 0 items, 1 values */
static PyObject *op_dict_items(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *what, PyObject *b UNUSED)
{
    PyObject *keys = dict_keys(ts, o), *res;
    Py_ssize_t i, n;
    int values = what == Py_True;
    if (!keys)
        return NULL;
    n = PyList_GET_SIZE(keys);
    res = PyList_New(n);
    if (!res)
        goto fail;
    for (i = 0; i < n; i++) {
        PyObject *k = PyList_GET_ITEM(keys, i), *v, *it;
        v = op_dict_get(ts, p, o, k, NULL);
        if (!v)
            goto fail;
        if (values)
            it = v;
        else {
            it = PyTuple_Pack(2, k, v);
            Py_DECREF(v);
            if (!it)
                goto fail;
        }
        PyList_SET_ITEM(res, i, it);
    }
    Py_DECREF(keys);
    return res;
fail:
    Py_DECREF(keys);
    Py_XDECREF(res);
    return NULL;
}

static PyObject *op_dict_take(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *key, PyObject *b UNUSED)
{
    return dict_read(ts, o, key, NULL, 1);
}

static PyObject *op_dict_pop(txstate *ts, ProxyObject *p, shm_obj o, PyObject *key, PyObject *dflt)
{
    PyObject *v = op_dict_take(ts, p, o, key, NULL), *r;
    if (!v) {
        if (dflt && PyErr_ExceptionMatches(PyExc_KeyError)) {
            PyErr_Clear();
            Py_INCREF(dflt);
            return dflt;
        }
        return NULL;
    }
    r = op_dict_del(ts, p, o, key, NULL);
    if (!r) {
        Py_DECREF(v);
        return NULL;
    }
    Py_DECREF(r);
    return v;
}

static PyObject *op_dict_setdefault(txstate *ts, ProxyObject *p, shm_obj o, PyObject *key, PyObject *dflt)
{
    PyObject *v = op_dict_get(ts, p, o, key, NULL), *r;
    if (v || !PyErr_ExceptionMatches(PyExc_KeyError))
        return v;
    PyErr_Clear();
    r = op_dict_set(ts, p, o, key, dflt);
    if (!r)
        return NULL;
    Py_DECREF(r);
    /* what was stored, as the store gives it back (a proxy for a container) */
    return op_dict_get(ts, p, o, key, NULL);
}

static PyObject *op_dict_clear(txstate *ts, ProxyObject *p, shm_obj o, PyObject *a UNUSED, PyObject *b UNUSED)
{
    PyObject *keys = dict_keys(ts, o);
    Py_ssize_t i;
    if (!keys)
        return NULL;
    for (i = 0; i < PyList_GET_SIZE(keys); i++) {
        PyObject *r = op_dict_del(ts, p, o, PyList_GET_ITEM(keys, i), NULL);
        if (!r) {
            Py_DECREF(keys);
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_DECREF(keys);
    Py_RETURN_NONE;
}

/* container(key, kind, capacity): get-or-create (a tuple (kind, cap) in b) */
static PyObject *op_dict_container(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *key, PyObject *kc)
{
    shm_value k;
    shm_error err;
    int32_t rc, kind = (int32_t)PyLong_AsLong(PyTuple_GET_ITEM(kc, 0));
    int64_t cap = PyLong_AsLongLong(PyTuple_GET_ITEM(kc, 1));
    shm_obj out = 0;
    if (PyErr_Occurred())
        return NULL;
    if (to_key(key, &k) < 0)
        return NULL;
    LIB(rc, L.shm_dict_container(ts->tx, o, &k, kind, cap, &out, &err));
    if (rc < 0)
        return raise_rc(rc, &err);
    return make_proxy(ts, out, kind);
}

/* dict_lookup: d[key], or dflt (NULL: KeyError) when absent. */
static PyObject *dict_lookup(ProxyObject *p, PyObject *key, PyObject *dflt)
{
    PyObject *res;
    switch (op1_dict_get(p, key, &res)) {
    case -1: return NULL;
    case 0: return run(p, op_dict_get, key, dflt, 0);
    }
    return res ? res : absent(key, dflt);
}

static PyObject *dict_getitem(ProxyObject *p, PyObject *key) { return dict_lookup(p, key, NULL); }

static int dict_ass(ProxyObject *p, PyObject *key, PyObject *val)
{
    PyObject *r;
    switch (op1_dict_set(p, key, val)) {
    case 1: return 0;
    case -1: return -1;
    }
    r = val ? run(p, op_dict_set, key, val, 1) : run(p, op_dict_del, key, NULL, 1);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* proxy_len: what the opfunc f (a count) says, as a Py_ssize_t. */
static Py_ssize_t proxy_len(ProxyObject *p, opfunc f)
{
    PyObject *r = run(p, f, NULL, NULL, 0);
    Py_ssize_t n;
    if (!r)
        return -1;
    n = PyLong_AsSsize_t(r);
    Py_DECREF(r);
    return n;
}

static Py_ssize_t dict_len(ProxyObject *p) { return proxy_len(p, op_dict_len); }

static int dict_contains(ProxyObject *p, PyObject *key)
{
    PyObject *r;
    int b;
    switch (op1_dict_get(p, key, &r)) {
    case -1: return -1;
    case 1:
        b = r != NULL;
        Py_XDECREF(r);
        return b;
    }
    r = run(p, op_dict_contains, key, NULL, 0);
    if (!r)
        return -1;
    b = r == Py_True;
    Py_DECREF(r);
    return b;
}

static PyObject *dict_get(ProxyObject *p, PyObject *const *args, Py_ssize_t n)
{
    if (!nargs("get", n, 1, 2))
        return NULL;
    return dict_lookup(p, args[0], n > 1 ? args[1] : Py_None);
}

static PyObject *dict_pop(ProxyObject *p, PyObject *const *args, Py_ssize_t n)
{
    if (!nargs("pop", n, 1, 2))
        return NULL;
    return run(p, op_dict_pop, args[0], n > 1 ? args[1] : NULL, 1);
}

static PyObject *dict_setdefault(ProxyObject *p, PyObject *const *args, Py_ssize_t n)
{
    if (!nargs("setdefault", n, 1, 2))
        return NULL;
    return run(p, op_dict_setdefault, args[0], n > 1 ? args[1] : Py_None, 1);
}

static PyObject *dict_keys_m(ProxyObject *p, PyObject *u UNUSED)
{
    return run(p, op_dict_keys, NULL, NULL, 0);
}

static PyObject *dict_items_m(ProxyObject *p, PyObject *u UNUSED)
{
    return run(p, op_dict_items, Py_False, NULL, 0);
}

static PyObject *dict_values_m(ProxyObject *p, PyObject *u UNUSED)
{
    return run(p, op_dict_items, Py_True, NULL, 0);
}

static PyObject *dict_clear(ProxyObject *p, PyObject *u UNUSED)
{
    return run(p, op_dict_clear, NULL, NULL, 1);
}

static PyObject *dict_container_m(ProxyObject *p, PyObject *args)
{
    PyObject *key, *kc, *r;
    int kind;
    long long cap = 0;
    if (!PyArg_ParseTuple(args, "Oi|L", &key, &kind, &cap))
        return NULL;
    if (kind != SHM_DICT && kind != SHM_LIST && kind != SHM_COUNTER && kind != SHM_QUEUE)
        return PyErr_Format(PyExc_ValueError, "kind must be DICT, LIST, COUNTER or QUEUE");
    kc = Py_BuildValue("(iL)", kind, cap);
    if (!kc)
        return NULL;
    r = run(p, op_dict_container, key, kc, 1);
    Py_DECREF(kc);
    return r;
}

static PyMappingMethods dict_as_mapping = {
    .mp_length = (lenfunc)dict_len,
    .mp_subscript = (binaryfunc)dict_getitem,
    .mp_ass_subscript = (objobjargproc)dict_ass,
};

static PySequenceMethods dict_as_sequence = {
    .sq_contains = (objobjproc)dict_contains,
};

static PyMethodDef dict_methods[] = {
    {"get", (PyCFunction)(void (*)(void))dict_get, METH_FASTCALL,
     "get(key, default=None, /)\n--\n\nThe value under key, or default."},
    {"pop", (PyCFunction)(void (*)(void))dict_pop, METH_FASTCALL,
     "pop(key, default=<unset>, /)\n--\n\nRemove key and return its value (default, or KeyError, if absent), "
     "in one transaction."},
    {"setdefault", (PyCFunction)(void (*)(void))dict_setdefault, METH_FASTCALL,
     "setdefault(key, default=None, /)\n--\n\nThe value under key; absent, default is stored first "
     "(in one transaction) and returned as stored (a live proxy for a container)."},
    {"_keys", (PyCFunction)dict_keys_m, METH_NOARGS, "the keys, as a list read in one transaction"},
    {"_items", (PyCFunction)dict_items_m, METH_NOARGS, "the (key, value) pairs, read in one transaction"},
    {"_values", (PyCFunction)dict_values_m, METH_NOARGS, "the values, read in one transaction"},
    {"clear", (PyCFunction)dict_clear, METH_NOARGS, "clear()\n--\n\nRemove every key, in one transaction."},
    {"_container", (PyCFunction)dict_container_m, METH_VARARGS,
     "_container(key, kind, capacity=0): get-or-create a container under key"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DictBaseType = PROXY_TYPE("DictBase", "shmstore.Dict",
    .tp_as_mapping = &dict_as_mapping,
    .tp_as_sequence = &dict_as_sequence,
    .tp_methods = dict_methods);

/* ------------------------------------------------------------------ */
/* List.                                                               */

static int list_index(PyObject *i, int64_t *out)
{
    Py_ssize_t x = PyNumber_AsSsize_t(i, PyExc_IndexError);
    if (x == -1 && PyErr_Occurred())
        return -1;
    *out = x;
    return 0;
}

static PyObject *range_error(int32_t rc, shm_error *err, const char *what)
{
    if (rc == SHM_ERR_RANGE) {
        PyErr_Format(PyExc_IndexError, "%s index out of range", what);
        return NULL;
    }
    return raise_rc(rc, err);
}

static PyObject *op_list_len(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *a UNUSED, PyObject *b UNUSED)
{
    return count_op(ts, o, L.shm_list_len);
}

static PyObject *op_list_get(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *idx, PyObject *b UNUSED)
{
    int64_t i;
    shm_value v;
    shm_error err;
    int32_t rc;
    if (list_index(idx, &i) < 0)
        return NULL;
    LIB(rc, L.shm_list_get(ts->tx, o, i, &v, &err));
    if (rc < 0)
        return range_error(rc, &err, "list");
    return from_value(ts, &v);
}

static PyObject *op_list_set(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *idx, PyObject *val)
{
    int64_t i;
    shm_value v;
    shm_error err;
    int32_t rc;
    PyObject *memo;
    if (list_index(idx, &i) < 0 || to_value_top(ts, val, &v, &memo) < 0)
        return NULL;
    LIB(rc, L.shm_list_set(ts->tx, o, i, &v, &err));
    Py_XDECREF(memo);
    if (rc < 0)
        return range_error(rc, &err, "list assignment");
    Py_RETURN_NONE;
}

static PyObject *op_list_del(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *idx, PyObject *b UNUSED)
{
    int64_t i;
    shm_error err;
    int32_t rc;
    if (list_index(idx, &i) < 0)
        return NULL;
    LIB(rc, L.shm_list_delete(ts->tx, o, i, &err));
    if (rc < 0)
        return range_error(rc, &err, "list assignment");
    Py_RETURN_NONE;
}

/* insert as list.insert does: clamped to [0, len]. */
static PyObject *op_list_insert(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *idx, PyObject *val)
{
    int64_t i, n;
    shm_value v;
    shm_error err;
    int32_t rc;
    PyObject *memo;
    if (list_index(idx, &i) < 0 || count(ts, o, L.shm_list_len, &n) < 0)
        return NULL;
    if (i < 0)
        i += n;
    if (i < 0)
        i = 0;
    if (i > n)
        i = n;
    if (to_value_top(ts, val, &v, &memo) < 0)
        return NULL;
    if (i == n)
        LIB(rc, L.shm_list_append(ts->tx, o, &v, &err));
    else if (i == 0)
        LIB(rc, L.shm_list_prepend(ts->tx, o, &v, &err));
    else
        LIB(rc, L.shm_list_insert(ts->tx, o, i, &v, &err));
    Py_XDECREF(memo);
    return none_or_raise(rc, &err);
}

/* b: Py_True to prepend */
static PyObject *op_list_append(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *val, PyObject *front)
{
    shm_value v;
    shm_error err;
    int32_t rc;
    PyObject *memo;
    if (to_value_top(ts, val, &v, &memo) < 0)
        return NULL;
    LIB(rc, front == Py_True ? L.shm_list_prepend(ts->tx, o, &v, &err) : L.shm_list_append(ts->tx, o, &v, &err));
    Py_XDECREF(memo);
    return none_or_raise(rc, &err);
}

static PyObject *op_list_extend(txstate *ts, ProxyObject *p, shm_obj o, PyObject *seq, PyObject *b UNUSED)
{
    Py_ssize_t i, n;
    n = PySequence_Fast_GET_SIZE(seq);
    for (i = 0; i < n; i++) {
        PyObject *r = op_list_append(ts, p, o, PySequence_Fast_GET_ITEM(seq, i), Py_False);
        if (!r)
            return NULL;
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
}

static PyObject *op_list_pop(txstate *ts, ProxyObject *p, shm_obj o, PyObject *idx, PyObject *b UNUSED)
{
    int64_t i = -1, n;
    shm_value v;
    shm_error err;
    int32_t rc;
    PyObject *res, *r;
    if (idx && list_index(idx, &i) < 0)
        return NULL;
    if (i == -1 || i == 0) {
        LIB(rc, L.shm_list_pop(ts->tx, o, i == 0, &v, &err));
        if (rc == SHM_ERR_RANGE || rc == SHM_ERR_NOT_FOUND) {
            PyErr_SetString(PyExc_IndexError, "pop from empty list");
            return NULL;
        }
        if (rc < 0)
            return raise_rc(rc, &err);
        return taken(ts, &v);
    }
    if (count(ts, o, L.shm_list_len, &n) < 0)
        return NULL;
    if (n == 0) {
        PyErr_SetString(PyExc_IndexError, "pop from empty list");
        return NULL;
    }
    if (i < -n || i >= n) {
        PyErr_SetString(PyExc_IndexError, "pop index out of range");
        return NULL;
    }
    LIB(rc, L.shm_list_get(ts->tx, o, i, &v, &err));
    if (rc < 0)
        return range_error(rc, &err, "pop");
    res = taken(ts, &v);
    if (!res)
        return NULL;
    r = op_list_del(ts, p, o, idx, NULL);
    if (!r) {
        Py_DECREF(res);
        return NULL;
    }
    Py_DECREF(r);
    return res;
}

static PyObject *op_list_items(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *a UNUSED,
                               PyObject *b UNUSED)
{
    return items_at(ts, o, L.shm_list_len, L.shm_list_get);
}

static PyObject *op_list_clear(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *a UNUSED,
                               PyObject *b UNUSED)
{
    int64_t n, i;
    if (count(ts, o, L.shm_list_len, &n) < 0)
        return NULL;
    for (i = 0; i < n; i++) {
        shm_value v;
        shm_error err;
        int32_t rc;
        LIB(rc, L.shm_list_pop(ts->tx, o, 0, &v, &err));
        if (rc < 0)
            return raise_rc(rc, &err);
    }
    Py_RETURN_NONE;
}

static Py_ssize_t list_len(ProxyObject *p) { return proxy_len(p, op_list_len); }

static PyObject *list_item(ProxyObject *p, Py_ssize_t i)
{
    PyObject *idx = PyLong_FromSsize_t(i), *r;
    if (!idx)
        return NULL;
    r = run(p, op_list_get, idx, NULL, 0);
    Py_DECREF(idx);
    return r;
}

static PyObject *list_getitem(ProxyObject *p, PyObject *key)
{
    if (PySlice_Check(key)) {
        /* the Python layer's _getslice */
        return PyObject_CallMethod((PyObject *)p, "_getslice", "O", key);
    }
    return run(p, op_list_get, key, NULL, 0);
}

static int list_ass(ProxyObject *p, PyObject *key, PyObject *val)
{
    PyObject *r;
    if (PySlice_Check(key))
        r = val ? PyObject_CallMethod((PyObject *)p, "_setslice", "OO", key, val)
                : PyObject_CallMethod((PyObject *)p, "_delslice", "O", key);
    else
        r = val ? run(p, op_list_set, key, val, 1) : run(p, op_list_del, key, NULL, 1);
    if (!r)
        return -1;
    Py_DECREF(r);
    return 0;
}

static PyObject *list_insert(ProxyObject *p, PyObject *const *args, Py_ssize_t n)
{
    if (!nargs("insert", n, 2, 2))
        return NULL;
    return run(p, op_list_insert, args[0], args[1], 1);
}

static PyObject *list_append(ProxyObject *p, PyObject *v) { return run(p, op_list_append, v, Py_False, 1); }
static PyObject *list_appendleft(ProxyObject *p, PyObject *v) { return run(p, op_list_append, v, Py_True, 1); }

static PyObject *list_extend(ProxyObject *p, PyObject *it)
{
    PyObject *seq, *r;
    /* a tuple of the items as they are now (l.extend(l) too; another
     * thread may change a list while the calls run without the GIL) */
    if (PyObject_TypeCheck(it, &ListBaseType))
        it = PyObject_CallMethod(it, "_items", NULL);
    else
        Py_INCREF(it);
    if (!it)
        return NULL;
    seq = PySequence_Tuple(it);
    Py_DECREF(it);
    if (!seq)
        return NULL;
    r = run(p, op_list_extend, seq, NULL, 1);
    Py_DECREF(seq);
    return r;
}

static PyObject *list_pop(ProxyObject *p, PyObject *const *args, Py_ssize_t n)
{
    if (!nargs("pop", n, 0, 1))
        return NULL;
    return run(p, op_list_pop, n ? args[0] : NULL, NULL, 1);
}

static PyObject *list_items_m(ProxyObject *p, PyObject *u UNUSED)
{
    return run(p, op_list_items, NULL, NULL, 0);
}

static PyObject *list_clear(ProxyObject *p, PyObject *u UNUSED)
{
    return run(p, op_list_clear, NULL, NULL, 1);
}

static PyMappingMethods list_as_mapping = {
    .mp_length = (lenfunc)list_len,
    .mp_subscript = (binaryfunc)list_getitem,
    .mp_ass_subscript = (objobjargproc)list_ass,
};

static PySequenceMethods list_as_sequence = {
    .sq_length = (lenfunc)list_len,
    .sq_item = (ssizeargfunc)list_item,
};

static PyMethodDef list_methods[] = {
    {"insert", (PyCFunction)(void (*)(void))list_insert, METH_FASTCALL,
     "insert(index, value, /)\n--\n\nInsert value before index (as list.insert)."},
    {"append", (PyCFunction)list_append, METH_O, "append(value, /)\n--\n\nAdd value at the end."},
    {"appendleft", (PyCFunction)list_appendleft, METH_O,
     "appendleft(value, /)\n--\n\nAdd value at the front (O(1))."},
    {"extend", (PyCFunction)list_extend, METH_O,
     "extend(iterable, /)\n--\n\nAppend every item, in one transaction."},
    {"pop", (PyCFunction)(void (*)(void))list_pop, METH_FASTCALL,
     "pop(index=-1, /)\n--\n\nRemove and return the item at index; pop() and pop(0) are O(1)."},
    {"_items", (PyCFunction)list_items_m, METH_NOARGS, "the items, read in one transaction"},
    {"clear", (PyCFunction)list_clear, METH_NOARGS, "clear()\n--\n\nRemove every item, in one transaction."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ListBaseType = PROXY_TYPE("ListBase", "shmstore.List",
    .tp_as_mapping = &list_as_mapping,
    .tp_as_sequence = &list_as_sequence,
    .tp_methods = list_methods);

/* ------------------------------------------------------------------ */
/* Counter.                                                            */

static PyObject *op_counter_get(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *a UNUSED,
                                PyObject *b UNUSED)
{
    return count_op(ts, o, L.shm_counter_get);
}

/* b: Py_True for a blind add */
static PyObject *op_counter_add(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *delta, PyObject *blind)
{
    int64_t out = 0;
    long long d;
    int overflow = 0;
    shm_error err;
    int32_t rc;
    d = PyLong_AsLongLongAndOverflow(delta, &overflow);
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "shmstore keeps integers of int64 only");
        return NULL;
    }
    if (d == -1 && PyErr_Occurred())
        return NULL;
    ERR_INIT(err);
    if (blind == Py_True) {
        NOGIL(rc = L.shm_counter_add_blind(ts->tx, o, d, &err));
        if (rc < 0)
            return raise_rc(rc, &err);
        Py_RETURN_NONE;
    }
    NOGIL(rc = L.shm_counter_add(ts->tx, o, d, &out, &err));
    if (rc < 0)
        return raise_rc(rc, &err);
    return PyLong_FromLongLong(out);
}

static PyObject *counter_new(PyTypeObject *t, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"value", NULL};
    long long n0 = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|L:Counter", kwlist, &n0))
        return NULL;
    return proxy_new(t, SHM_COUNTER, PyLong_FromLongLong(n0));
}

/* Every operation on a Counter or Queue not stored yet raises UsageError
 * (unbound_error, from run): its local count or bound is only what it is
 * stored with. */
static PyObject *counter_value(ProxyObject *p, void *c UNUSED)
{
    PyObject *res;
    switch (op1_counter(p, NULL, 0, &res)) {
    case 1: return res;
    case -1: return NULL;
    }
    return run(p, op_counter_get, NULL, NULL, 0);
}

/* counter_add_in: n added to a bound Counter (blind: without reading). */
static PyObject *counter_add_in(ProxyObject *p, PyObject *n, int blind)
{
    PyObject *res;
    switch (op1_counter(p, n, blind, &res)) {
    case 1: return res;
    case -1: return NULL;
    }
    return run(p, op_counter_add, n, blind ? Py_True : Py_False, 1);
}

static PyObject *counter_add(ProxyObject *p, PyObject *n)
{
    if (!PyLong_Check(n))
        return PyErr_Format(PyExc_TypeError, "Counter.add takes an int, not %.100s", Py_TYPE(n)->tp_name);
    return counter_add_in(p, n, 0);
}

static PyObject *counter_add_blind(ProxyObject *p, PyObject *n)
{
    if (!PyLong_Check(n))
        return PyErr_Format(PyExc_TypeError, "Counter.add_blind takes an int, not %.100s", Py_TYPE(n)->tp_name);
    return counter_add_in(p, n, 1);
}

static PyObject *counter_iadd(ProxyObject *p, PyObject *n)
{
    PyObject *r;
    if (!PyLong_Check(n) || PyBool_Check(n))
        Py_RETURN_NOTIMPLEMENTED;
    r = counter_add_in(p, n, 1);
    if (!r)
        return NULL;
    Py_DECREF(r);
    Py_INCREF(p);
    return (PyObject *)p;
}

static PyObject *counter_isub(ProxyObject *p, PyObject *n)
{
    PyObject *neg, *r;
    if (!PyLong_Check(n) || PyBool_Check(n))
        Py_RETURN_NOTIMPLEMENTED;
    neg = PyNumber_Negative(n);
    if (!neg)
        return NULL;
    r = counter_iadd(p, neg);
    Py_DECREF(neg);
    return r;
}

static PyObject *counter_int(ProxyObject *p) { return counter_value(p, NULL); }

static PyNumberMethods counter_as_number = {
    .nb_int = (unaryfunc)counter_int,
    .nb_index = (unaryfunc)counter_int,
    .nb_inplace_add = (binaryfunc)counter_iadd,
    .nb_inplace_subtract = (binaryfunc)counter_isub,
};

static PyMethodDef counter_methods[] = {
    {"add", (PyCFunction)counter_add, METH_O,
     "add(n, /)\n--\n\nAdd n and return the new value (reads the counter: concurrent adds conflict)."},
    {"add_blind", (PyCFunction)counter_add_blind, METH_O,
     "add_blind(n, /)\n--\n\nAdd n without reading: never conflicts with other adds. "
     "counter += n does this."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef counter_getset[] = {
    {"value", (getter)counter_value, NULL, "the counter's value", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CounterBaseType = PROXY_TYPE("CounterBase", "shmstore.Counter",
    .tp_as_number = &counter_as_number,
    .tp_methods = counter_methods,
    .tp_getset = counter_getset,
    .tp_new = counter_new);

/* ------------------------------------------------------------------ */
/* Queue.                                                              */

/* queue_args: put's and get's block and timeout (*t: seconds, -1: none). */
static int queue_args(PyObject *block, PyObject *timeout, int *blk, double *t)
{
    *t = -1;
    if ((*blk = PyObject_IsTrue(block)) < 0)
        return -1;
    if (*blk && timeout != Py_None) {
        *t = PyFloat_AsDouble(timeout);
        if (*t == -1 && PyErr_Occurred())
            return -1;
        if (*t < 0) {
            PyErr_SetString(PyExc_ValueError, "'timeout' must be a non-negative number");
            return -1;
        }
    }
    return 0;
}

/* a: the value (put) or NULL (get); b: a tuple (block, timeout-or-None) */
static PyObject *op_queue(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *val, PyObject *bt)
{
    int block;
    double t;
    shm_value v;
    shm_error err;
    int32_t rc;
    PyObject *memo = NULL;
    if (queue_args(PyTuple_GET_ITEM(bt, 0), PyTuple_GET_ITEM(bt, 1), &block, &t) < 0)
        return NULL;
    memset(&v, 0, sizeof v);
    if (val) {
        if (to_value_top(ts, val, &v, &memo) < 0)
            return NULL;
        LIB(rc, L.shm_queue_put(ts->tx, o, &v, !block || t >= 0, &err));
        Py_XDECREF(memo);
    } else
        LIB(rc, L.shm_queue_get(ts->tx, o, !block || t >= 0, &v, &err));
    if (rc == SHM_ERR_RETRY && ts->explicit_)
        return explicit_wait(ts, NULL);
    if (rc < 0)
        return raise_rc(rc, &err);
    if (rc == SHM_FALSE) {
        if (block && t >= 0) {
            double now = monotonic();
            if (ts->deadline == 0)
                ts->deadline = now + t;
            if (now < ts->deadline)
                return tx_retry(ts, val ? QueueFull : QueueEmpty);
        }
        PyErr_SetNone(val ? QueueFull : QueueEmpty);
        return NULL;
    }
    if (val)
        Py_RETURN_NONE;
    return taken(ts, &v);
}

/* cap: Py_True for the bound */
static PyObject *op_queue_len(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *cap, PyObject *b UNUSED)
{
    return count_op(ts, o, cap == Py_True ? L.shm_queue_cap : L.shm_queue_len);
}

static PyObject *queue_new(PyTypeObject *t, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"maxsize", NULL};
    long long cap = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|L:Queue", kwlist, &cap))
        return NULL;
    return proxy_new(t, SHM_QUEUE, PyLong_FromLongLong(cap < 0 ? 0 : cap));
}

/* queue_op: put (item) or get (item NULL): one-shot, else in a
 * transaction (the running one, or one of its own that waits). */
static PyObject *queue_op(ProxyObject *p, PyObject *item, PyObject *block, PyObject *timeout)
{
    PyObject *bt, *r;
    int blk;
    double t, left;
    if (!p->store)
        return unbound_error(p);
    if (queue_args(block, timeout, &blk, &t) < 0)
        return NULL;
    switch (op1_queue(p, item, blk, t, &r, &left)) {
    case 1: return r;
    case -1: return NULL;
    }
    if (!(timeout = blk && t >= 0 ? PyFloat_FromDouble(left) : (Py_INCREF(timeout), timeout)))
        return NULL;
    bt = PyTuple_Pack(2, block, timeout);
    Py_DECREF(timeout);
    if (!bt)
        return NULL;
    r = run(p, op_queue, item, bt, 1);
    Py_DECREF(bt);
    return r;
}

static PyObject *queue_put(ProxyObject *p, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"item", "block", "timeout", NULL};
    PyObject *item, *block = Py_True, *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|OO:put", kwlist, &item, &block, &timeout))
        return NULL;
    return queue_op(p, item, block, timeout);
}

static PyObject *queue_get(ProxyObject *p, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"block", "timeout", NULL};
    PyObject *block = Py_True, *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OO:get", kwlist, &block, &timeout))
        return NULL;
    return queue_op(p, NULL, block, timeout);
}

static PyObject *queue_qsize(ProxyObject *p, PyObject *u UNUSED)
{
    return run(p, op_queue_len, Py_False, NULL, 0);
}

static PyObject *queue_maxsize(ProxyObject *p, void *c UNUSED)
{
    return run(p, op_queue_len, Py_True, NULL, 0);
}

static PyMethodDef queue_methods[] = {
    {"put", (PyCFunction)(void (*)(void))queue_put, METH_VARARGS | METH_KEYWORDS,
     "put(item, block=True, timeout=None)\n--\n\nAdd item at the end. While the queue is full, "
     "block waits (the transaction retries: nothing is held) up to timeout seconds, then raises "
     "queue.Full; block=False raises queue.Full at once."},
    {"get", (PyCFunction)(void (*)(void))queue_get, METH_VARARGS | METH_KEYWORDS,
     "get(block=True, timeout=None)\n--\n\nRemove and return the first item. While the queue is "
     "empty, block waits (the transaction retries) up to timeout seconds, then raises queue.Empty; "
     "block=False raises queue.Empty at once."},
    {"qsize", (PyCFunction)queue_qsize, METH_NOARGS, "qsize()\n--\n\nThe number of items."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef queue_getset[] = {
    {"maxsize", (getter)queue_maxsize, NULL, "the most items the queue holds (0: unbounded)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject QueueBaseType = PROXY_TYPE("QueueBase", "shmstore.Queue",
    .tp_methods = queue_methods,
    .tp_getset = queue_getset,
    .tp_new = queue_new);

/* ------------------------------------------------------------------ */
/* Records.                                                            */

static int record_set_raw(txstate *ts, shm_obj o, PyObject *name, PyObject *val, PyObject **memo)
{
    shm_value v;
    shm_error err;
    int32_t rc;
    const char *cname;
    if (!PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_TypeError, "field names are str");
        return -1;
    }
    if (!(cname = PyUnicode_AsUTF8(name)))
        return -1;
    if (to_value(ts, val, &v, memo) < 0)
        return -1;
    LIB(rc, L.shm_record_set(ts->tx, o, cname, &v, &err));
    if (rc == SHM_ERR_NOT_FOUND) {
        PyErr_Format(PyExc_AttributeError, "the shared record has no field %R", name);
        return -1;
    }
    if (rc < 0)
        return fail_rc(rc, &err);
    return 0;
}

static PyObject *op_record_get(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *name, PyObject *b UNUSED)
{
    shm_value v;
    shm_error err;
    int32_t rc;
    const char *cname;
    if (!(cname = PyUnicode_AsUTF8(name)))
        return NULL;
    LIB(rc, L.shm_record_get(ts->tx, o, cname, &v, &err));
    if (rc == SHM_ERR_NOT_FOUND)
        return PyErr_Format(PyExc_AttributeError, "the shared record has no field %R", name);
    if (rc < 0)
        return raise_rc(rc, &err);
    return from_value(ts, &v);
}

static PyObject *op_record_set(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *name, PyObject *val)
{
    PyObject *memo = NULL;
    int r;
    r = record_set_raw(ts, o, name, val, &memo);
    Py_XDECREF(memo);
    if (r < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* record_fields: the field names of the record o, a tuple. */
static PyObject *record_fields(txstate *ts, shm_obj o)
{
    PyObject *names = items_at(ts, o, L.shm_record_nfields, L.shm_record_field), *res;
    if (!names)
        return NULL;
    res = PyList_AsTuple(names);
    Py_DECREF(names);
    return res;
}

static PyObject *op_record_fields(txstate *ts, ProxyObject *p UNUSED, shm_obj o, PyObject *a UNUSED,
                                  PyObject *b UNUSED)
{
    return record_fields(ts, o);
}

static int check_name(PyObject *name)
{
    if (!PyUnicode_Check(name)) {
        PyErr_SetString(PyExc_TypeError, "field names are str");
        return -1;
    }
    return 0;
}

static PyObject *record_shm_get(ProxyObject *p, PyObject *name)
{
    if (check_name(name) < 0)
        return NULL;
    if (!p->store) {
        PyObject *v = p->local ? PyDict_GetItemWithError(p->local, name) : NULL;
        if (v) {
            Py_INCREF(v);
            return v;
        }
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE; /* fields start as None */
    }
    return run(p, op_record_get, name, NULL, 0);
}

static PyObject *record_shm_set(ProxyObject *p, PyObject *const *args, Py_ssize_t n)
{
    if (!nargs("_shm_set", n, 2, 2))
        return NULL;
    if (check_name(args[0]) < 0)
        return NULL;
    if (!p->store) {
        if (!p->local && !(p->local = PyDict_New()))
            return NULL;
        if (PyDict_SetItem(p->local, args[0], args[1]) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    return run(p, op_record_set, args[0], args[1], 1);
}

static PyObject *record_shm_fields(ProxyObject *p, PyObject *u UNUSED)
{
    if (!p->store)
        return PyObject_GetAttrString((PyObject *)Py_TYPE(p), "_shm_fields_");
    return run(p, op_record_fields, NULL, NULL, 0);
}

/* proxy_new: a new record, Counter or Queue of class t, with its own
 * state local (a new reference, taken: the fields, the count, the
 * bound): made in the thread's innermost transaction if one runs (and
 * writes), else kept unbound, in the proxy, until it is stored. */
static PyObject *proxy_new(PyTypeObject *t, int32_t kind, PyObject *local)
{
    txstate *ts = active_ts();
    ProxyObject *p;
    if (!local)
        return NULL;
    if (!(p = (ProxyObject *)t->tp_alloc(t, 0))) {
        Py_DECREF(local);
        return NULL;
    }
    p->kind = kind;
    p->local = local;
    if (ts && !ts->readonly) {
        PyObject *memo = NULL;
        shm_obj o;
        int r = store_live(ts->store) < 0 ? -1 : materialize(ts, p, &o, &memo, 0);
        Py_XDECREF(memo);
        Py_CLEAR(p->local);
        if (r < 0)
            Py_CLEAR(p);
    }
    return (PyObject *)p;
}

/* Records are made in the thread's innermost transaction, or unbound
 * (their fields kept in the object until it is stored somewhere). */
static PyObject *record_new(PyTypeObject *t, PyObject *args UNUSED, PyObject *kw UNUSED)
{
    return proxy_new(t, SHM_RECORD, PyDict_New());
}

static PyMethodDef record_methods[] = {
    {"_shm_get", (PyCFunction)record_shm_get, METH_O, "_shm_get(name): a field's value"},
    {"_shm_set", (PyCFunction)(void (*)(void))record_shm_set, METH_FASTCALL, "_shm_set(name, value)"},
    {"_shm_stored_fields", (PyCFunction)record_shm_fields, METH_NOARGS,
     "the field names of the shared record (as stored)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RecordBaseType = PROXY_TYPE("RecordBase", "shmstore.Object",
    .tp_methods = record_methods,
    .tp_new = record_new);

/* ------------------------------------------------------------------ */
/* Txn: a transaction the Python layer runs (attempts, begin/commit).   */

typedef struct {
    PyObject_HEAD
    txstate ts;
} TxnObject;

static PyTypeObject TxnType;

static void txn_dealloc(TxnObject *t)
{
    /* never on a thread's stack here: the stack holds a reference */
    ts_rollback(&t->ts);
    Py_CLEAR(t->ts.store);
    Py_CLEAR(t->ts.pending);
    Py_TYPE(t)->tp_free((PyObject *)t);
}

static int txn_live(TxnObject *t)
{
    if (fork_check() < 0)
        return -1;
    if (!t->ts.active) {
        PyErr_SetString(TransactionClosedError, "the transaction is over");
        return -1;
    }
    return 0;
}

/* end(body_rc) -> SHM_OK, SHM_AGAIN or a negative code (see ts_end) */
static PyObject *txn_end(TxnObject *t, PyObject *arg)
{
    long body_rc = PyLong_AsLong(arg);
    int32_t rc;
    if (body_rc == -1 && PyErr_Occurred())
        return NULL;
    if (txn_live(t) < 0)
        return NULL;
    rc = ts_end(&t->ts, (int32_t)body_rc);
    if (rc != SHM_AGAIN)
        ts_pop(&t->ts); /* may drop the last reference but one: the caller holds t */
    if (rc < 0 && body_rc == SHM_OK)
        return NULL;
    return PyLong_FromLong(rc);
}

static PyObject *txn_restart(TxnObject *t, PyObject *u UNUSED)
{
    if (fork_check() < 0)
        return NULL;
    if (!t->ts.active) {
        PyErr_SetString(TransactionClosedError, "the transaction is over");
        return NULL;
    }
    if (ts_restart(&t->ts) < 0) {
        ts_pop(&t->ts);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* _raise_end(): raise the error of the last shm_tx_end that failed */
static PyObject *txn_raise_end(TxnObject *t, PyObject *u UNUSED)
{
    if (t->ts.end_rc >= 0)
        return PyErr_Format(Error, "the transaction's end did not fail");
    return raise_rc(t->ts.end_rc, &t->ts.end_err);
}

static PyObject *txn_rollback(TxnObject *t, PyObject *u UNUSED)
{
    ts_rollback(&t->ts);
    t->ts.ended = 0;
    ts_pop(&t->ts);
    Py_RETURN_NONE;
}

static PyObject *txn_push(TxnObject *t, PyObject *u UNUSED)
{
    if (!t->ts.pushed) {
        t->ts.owner = (PyObject *)t;
        ts_push(&t->ts);
    }
    Py_RETURN_NONE;
}

static PyObject *txn_pop(TxnObject *t, PyObject *u UNUSED)
{
    t->ts.ended = 0;
    ts_pop(&t->ts);
    Py_RETURN_NONE;
}

static PyObject *txn_retry(TxnObject *t, PyObject *u UNUSED)
{
    return txn_live(t) < 0 ? NULL : tx_retry(&t->ts, NULL);
}

static PyObject *txn_explicit(TxnObject *t, PyObject *u UNUSED)
{
    return PyBool_FromLong(t->ts.explicit_);
}

static PyObject *txn_or_else_begin(TxnObject *t, PyObject *u UNUSED)
{
    shm_error err;
    int32_t rc;
    int64_t token = 0;
    if (txn_live(t) < 0)
        return NULL;
    ERR_INIT(err);
    rc = L.shm_tx_or_else_begin(t->ts.tx, &token, &err); /* keeps the GIL: see NOGIL */
    if (rc < 0)
        return raise_rc(rc, &err);
    return Py_BuildValue("(LO)", (long long)token, rc == SHM_OK ? Py_True : Py_False);
}

static PyObject *txn_or_else_retried(TxnObject *t, PyObject *arg)
{
    shm_error err;
    int32_t rc;
    long long token = PyLong_AsLongLong(arg);
    if (token == -1 && PyErr_Occurred())
        return NULL;
    if (txn_live(t) < 0)
        return NULL;
    ERR_INIT(err);
    rc = L.shm_tx_or_else_retried(t->ts.tx, token, &err); /* keeps the GIL: see NOGIL */
    return raise_rc(rc < 0 ? rc : SHM_ERR_RETRY, &err);
}

static PyObject *txn_get_active(TxnObject *t, void *c UNUSED)
{
    return PyBool_FromLong(t->ts.active);
}

static PyObject *txn_get_ended(TxnObject *t, void *c UNUSED)
{
    return PyBool_FromLong(t->ts.ended);
}

static PyObject *txn_get_readonly(TxnObject *t, void *c UNUSED)
{
    return PyBool_FromLong(t->ts.readonly);
}

static PyObject *txn_get_store(TxnObject *t, void *c UNUSED)
{
    if (!t->ts.store)
        Py_RETURN_NONE;
    Py_INCREF(t->ts.store);
    return (PyObject *)t->ts.store;
}

static PyObject *txn_get_attempt(TxnObject *t, void *c UNUSED)
{
    return PyLong_FromUnsignedLongLong(t->ts.serial);
}

static PyMethodDef txn_methods[] = {
    {"end", (PyCFunction)txn_end, METH_O,
     "end(body_rc) -> 0 (committed), 1 (run again after restart()) or a negative code (over)"},
    {"restart", (PyCFunction)txn_restart, METH_NOARGS,
     "restart(): wait (GIL released, Ctrl-C honoured) and begin the next attempt"},
    {"rollback", (PyCFunction)txn_rollback, METH_NOARGS, "rollback(): give the transaction up"},
    {"_raise_end", (PyCFunction)txn_raise_end, METH_NOARGS, "raise the error of the end that failed"},
    {"_push", (PyCFunction)txn_push, METH_NOARGS, "make it the thread's current transaction"},
    {"_pop", (PyCFunction)txn_pop, METH_NOARGS, "no longer the thread's current transaction"},
    {"retry", (PyCFunction)txn_retry, METH_NOARGS, "retry(): raise RetryError after shm_tx_retry"},
    {"or_else_begin", (PyCFunction)txn_or_else_begin, METH_NOARGS, "-> (token, run_first)"},
    {"explicit", (PyCFunction)txn_explicit, METH_NOARGS, "begun with begin(): nothing runs it again"},
    {"or_else_retried", (PyCFunction)txn_or_else_retried, METH_O, "raises RetryError"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef txn_getset[] = {
    {"active", (getter)txn_get_active, NULL, "begun and not over", NULL},
    {"ended", (getter)txn_get_ended, NULL, "begun with begin() and over by a wait, not yet committed or aborted", NULL},
    {"readonly", (getter)txn_get_readonly, NULL, "a read-only transaction", NULL},
    {"store", (getter)txn_get_store, NULL, "the Store", NULL},
    {"attempt", (getter)txn_get_attempt, NULL, "the attempt's serial number (0 when none runs)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TxnType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shmstore._shmstore.Txn",
    .tp_basicsize = sizeof(TxnObject),
    .tp_dealloc = (destructor)txn_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A transaction (one shm_tx), run step by step by shmstore's Python layer.",
    .tp_methods = txn_methods,
    .tp_getset = txn_getset,
};

/* ------------------------------------------------------------------ */
/* Store methods.                                                      */

static void store_dealloc(StoreObject *st)
{
    if (st->weakrefs)
        PyObject_ClearWeakRefs((PyObject *)st);
    if (!st->closed && st->h && lib_loaded && !lib_forked && getpid() == lib_pid)
        L.shm_close(st->h, NULL);
    Py_CLEAR(st->path);
    Py_CLEAR(st->name);
    Py_TYPE(st)->tp_free((PyObject *)st);
}

static PyObject *store_begin(StoreObject *st, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"readonly", "explicit", NULL};
    int readonly = 0, explicit_ = 0;
    TxnObject *t;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|pp:_begin", kwlist, &readonly, &explicit_))
        return NULL;
    if (store_live(st) < 0)
        return NULL;
    t = PyObject_New(TxnObject, &TxnType);
    if (!t)
        return NULL;
    memset(&t->ts, 0, sizeof t->ts);
    t->ts.explicit_ = explicit_;
    if (ts_begin(&t->ts, st, readonly) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    return (PyObject *)t;
}

/* op_call: the body of Store.run: fn(*args, **kwargs), ak the tuple
 * (args, kwargs or None). */
static PyObject *op_call(txstate *ts UNUSED, ProxyObject *p UNUSED, shm_obj o UNUSED, PyObject *fn, PyObject *ak)
{
    PyObject *kw = PyTuple_GET_ITEM(ak, 1);
    return PyObject_Call(fn, PyTuple_GET_ITEM(ak, 0), kw == Py_None ? NULL : kw);
}

/* _run(fn, args, kwargs, readonly): Store.run's loop, in C: fn(*args,
 * **kwargs) as a transaction of its own (a Txn, the thread's current one
 * while it runs), run again after conflicts and retries, as attempts()
 * does in Python at some 800 ns more a transaction. */
static PyObject *store_run(StoreObject *st, PyObject *const *args, Py_ssize_t n)
{
    TxnObject *t;
    PyObject *ak, *res;
    int readonly;
    if (n != 4 || !PyTuple_Check(args[1]) || (args[2] != Py_None && !PyDict_Check(args[2])))
        return PyErr_Format(PyExc_TypeError, "_run(fn, args: tuple, kwargs: dict or None, readonly)");
    if ((readonly = PyObject_IsTrue(args[3])) < 0 || store_live(st) < 0)
        return NULL;
    if (!(ak = PyTuple_Pack(2, args[1], args[2])))
        return NULL;
    if (!(t = PyObject_New(TxnObject, &TxnType))) {
        Py_DECREF(ak);
        return NULL;
    }
    memset(&t->ts, 0, sizeof t->ts);
    t->ts.owner = (PyObject *)t; /* a reference while pushed (ts_push) */
    res = run_ts(&t->ts, st, NULL, op_call, args[0], ak, !readonly);
    Py_DECREF(ak);
    Py_DECREF(t);
    return res;
}

static PyObject *store_current(StoreObject *st, PyObject *u UNUSED)
{
    txstate *ts;
    ts = ts_find(st);
    if (!ts) 
        Py_RETURN_NONE;
    if (ts->owner) {
        Py_INCREF(ts->owner);
        return ts->owner;
    }
    Py_RETURN_TRUE; /* a single operation's own transaction */
}

static PyObject *store_close(StoreObject *st, PyObject *u UNUSED)
{
    shm_error err;
    int32_t rc;
    if (st->closed)
        Py_RETURN_NONE;
    if (fork_check_pid() < 0)
        return NULL;
    LIB(rc, L.shm_close(st->h, &err));
    if (rc < 0)
        return raise_rc(rc, &err);
    st->closed = 1;
    Py_RETURN_NONE;
}

static PyObject *store_check(StoreObject *st, PyObject *u UNUSED)
{
    shm_error err;
    int32_t rc;
    if (store_live(st) < 0)
        return NULL;
    ERR_INIT(err);
    Py_BEGIN_ALLOW_THREADS
    rc = L.shm_check(st->h, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return raise_rc(rc, &err);
    Py_RETURN_NONE;
}

static PyObject *store_recover(StoreObject *st, PyObject *u UNUSED)
{
    shm_error err;
    int32_t rc;
    int64_t n = 0;
    if (store_live(st) < 0)
        return NULL;
    if (st->read_only) {
        read_only_error(st, "recover()");
        return NULL;
    }
    LIB(rc, L.shm_recover(st->h, &n, &err));
    if (rc < 0)
        return raise_rc(rc, &err);
    return PyLong_FromLongLong(n);
}

static PyObject *store_stats(StoreObject *st, PyObject *u UNUSED)
{
    shm_error err;
    int32_t rc;
    int64_t used = 0, max = 0;
    if (store_live(st) < 0)
        return NULL;
    LIB(rc, L.shm_store_stats(st->h, &used, &max, &err));
    if (rc < 0)
        return raise_rc(rc, &err);
    return Py_BuildValue("{sLsL}", "used_bytes", (long long)used, "max_bytes", (long long)max);
}

static PyObject *op_root(txstate *ts, ProxyObject *p UNUSED, shm_obj o UNUSED, PyObject *a UNUSED,
                         PyObject *b UNUSED)
{
    shm_error err;
    shm_obj r = 0;
    int32_t rc;
    LIB(rc, L.shm_tx_root(ts->tx, &r, &err));
    if (rc < 0)
        return raise_rc(rc, &err);
    return make_proxy(ts, r, SHM_DICT);
}

static PyObject *store_root(StoreObject *st, void *c UNUSED)
{
    if (cls_dict && st->root_id && !st->closed)
        return alloc_proxy(cls_dict, st, st->root_id, SHM_DICT);
    return run_store(st, NULL, op_root, NULL, NULL, 0);
}

static PyObject *op_open_id(txstate *ts, ProxyObject *p UNUSED, shm_obj o UNUSED, PyObject *idobj,
                            PyObject *b UNUSED)
{
    shm_error err;
    shm_value v;
    int32_t rc;
    unsigned long long id = PyLong_AsUnsignedLongLong(idobj);
    if (id == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    ERR_INIT(err);
    memset(&v, 0, sizeof v);
    NOGIL(rc = L.shm_tx_open(ts->tx, id, &v, &err));
    if (rc < 0)
        return raise_rc(rc, &err);
    return from_value(ts, &v);
}

static PyObject *store_open_id(StoreObject *st, PyObject *id)
{
    return run_store(st, NULL, op_open_id, id, NULL, 0);
}

static PyObject *store_get_path(StoreObject *st, void *c UNUSED)
{
    Py_INCREF(st->path);
    return st->path;
}

static PyObject *store_get_name(StoreObject *st, void *c UNUSED)
{
    Py_INCREF(st->name);
    return st->name;
}

static PyObject *store_get_closed(StoreObject *st, void *c UNUSED)
{
    return PyBool_FromLong(st->closed);
}

static PyObject *store_get_read_only(StoreObject *st, void *c UNUSED)
{
    return PyBool_FromLong(st->read_only);
}

static PyMethodDef store_methods[] = {
    {"_begin", (PyCFunction)(void (*)(void))store_begin, METH_VARARGS | METH_KEYWORDS,
     "_begin(readonly=False) -> Txn (not yet current in the thread)"},
    {"_run", (PyCFunction)(void (*)(void))store_run, METH_FASTCALL,
     "_run(fn, args, kwargs, readonly): fn(*args, **kwargs) as a transaction of its own, run again "
     "after conflicts"},
    {"_current", (PyCFunction)store_current, METH_NOARGS,
     "the thread's running transaction on this store: a Txn, True (an operation's own), or None"},
    {"close", (PyCFunction)store_close, METH_NOARGS,
     "close()\n--\n\nClose the store (fails while transactions run). Proxies then raise ClosedError."},
    {"check", (PyCFunction)store_check, METH_NOARGS,
     "check()\n--\n\nCheck the store's consistency; raises shmstore.Error listing the problems."},
    {"stats", (PyCFunction)store_stats, METH_NOARGS, "stats()\n--\n\n{'used_bytes': ..., 'max_bytes': ...}"},
    {"recover", (PyCFunction)store_recover, METH_NOARGS,
     "recover()\n--\n\nRepair what dead processes (killed in the middle of a transaction, say) left "
     "behind; returns how many it recovered. Any process waiting on a dead one does this by itself; "
     "check() does it first."},
    {"_open_id", (PyCFunction)store_open_id, METH_O, "_open_id(id): the container with that id, as a proxy"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef store_getset[] = {
    {"root", (getter)store_root, NULL, "the root Dict: everything reachable from it lives", NULL},
    {"path", (getter)store_get_path, NULL, "the store's directory (its identity across processes)", NULL},
    {"name", (getter)store_get_name, NULL, "the store's name", NULL},
    {"closed", (getter)store_get_closed, NULL, "whether close() was called", NULL},
    {"read_only", (getter)store_get_read_only, NULL,
     "whether the store was opened with read_only=True (check() and stats() only)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject StoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shmstore._shmstore.StoreBase",
    .tp_basicsize = sizeof(StoreObject),
    .tp_dealloc = (destructor)store_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The C part of shmstore.Store.",
    .tp_methods = store_methods,
    .tp_getset = store_getset,
    .tp_weaklistoffset = offsetof(StoreObject, weakrefs),
};

/* ------------------------------------------------------------------ */
/* Module functions.                                                   */

static PyObject *mod_load(PyObject *m UNUSED, PyObject *arg)
{
    const char *path;
    void *h;
    PyObject *missing;
    if (!PyUnicode_Check(arg) || !(path = PyUnicode_AsUTF8(arg)))
        return PyErr_Format(PyExc_TypeError, "_load(path: str)");
    if (lib_loaded) {
        if (fork_check_pid() < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return PyErr_Format(PyExc_ImportError, "cannot load %s: %s", path, dlerror());
    missing = PyList_New(0);
    if (!missing)
        return NULL;
#define X(f)                                                               \
    L.f = (__typeof__(f) *)dlsym(h, #f);                                   \
    if (!L.f) {                                                            \
        PyObject *s = PyUnicode_FromString(#f);                            \
        if (!s || PyList_Append(missing, s) < 0) {                         \
            Py_XDECREF(s);                                                 \
            Py_DECREF(missing);                                            \
            return NULL;                                                   \
        }                                                                  \
        Py_DECREF(s);                                                      \
    }
    SHM_FUNCS(X)
#undef X
    if (PyList_GET_SIZE(missing) > 0) {
        PyErr_Format(PyExc_ImportError, "%s does not export %R (an older libshmstore?)", path, missing);
        Py_DECREF(missing);
        dlclose(h);
        memset(&L, 0, sizeof L);
        return NULL;
    }
    Py_DECREF(missing);
    if (L.shm_abi_version() != SHM_ABI_VERSION) {
        long long v = (long long)L.shm_abi_version();
        dlclose(h);
        memset(&L, 0, sizeof L);
        return PyErr_Format(PyExc_ImportError, "%s has ABI version %lld, this extension needs %d", path, v,
                            SHM_ABI_VERSION);
    }
    lib_handle = h;
    lib_pid = getpid();
    lib_forked = 0;
    lib_loaded = 1;
    Py_RETURN_NONE;
}

static PyObject *mod_open(PyObject *m UNUSED, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"cls", "name", "dir", "create", "region_size", "max_size", "mode", "read_only", NULL};
    PyObject *cls, *dirobj = Py_None;
    const char *name, *dir = NULL;
    int create = SHM_OPEN_CREATE, read_only = 0;
    long long region_size = 0, max_size = 0;
    unsigned int mode = 0600;
    shm_options opts;
    shm_error err;
    shm_store h = 0;
    int32_t rc;
    StoreObject *st;
    char pathbuf[4096];
    if (!PyArg_ParseTupleAndKeywords(args, kw, "Os|OiLLIp:_open", kwlist, &cls, &name, &dirobj, &create,
                                     &region_size, &max_size, &mode, &read_only))
        return NULL;
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &StoreType))
        return PyErr_Format(PyExc_TypeError, "cls must be a Store class");
    if (dirobj != Py_None && !(dir = PyUnicode_AsUTF8(dirobj)))
        return NULL;
    if (fork_check_pid() < 0)
        return NULL;
    memset(&opts, 0, sizeof opts);
    opts.dir = dir;
    opts.region_size = region_size;
    opts.max_size = max_size;
    opts.mode = mode;
    opts.create = create;
    opts.read_only = read_only;
    ERR_INIT(err);
    Py_BEGIN_ALLOW_THREADS
    rc = L.shm_open(name, &opts, &h, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return raise_rc(rc, &err);
    st = (StoreObject *)((PyTypeObject *)cls)->tp_alloc((PyTypeObject *)cls, 0);
    if (!st) {
        L.shm_close(h, NULL);
        return NULL;
    }
    st->h = h;
    st->read_only = read_only;
    ERR_INIT(err);
    rc = L.shm_store_path(h, pathbuf, sizeof pathbuf, &err); /* keeps the GIL: see NOGIL */
    if (rc < 0) {
        Py_DECREF(st);
        return raise_rc(rc, &err);
    }
    pathbuf[sizeof pathbuf - 1] = 0;
    if (!(st->path = PyUnicode_DecodeFSDefault(pathbuf)) || !(st->name = PyUnicode_FromString(name))) {
        Py_DECREF(st);
        return NULL;
    }
    /* the root's id, so that store.root is a proxy like any other; not
     * read-only, where it would take a transaction (store.root raises
     * ReadOnlyError then, as every transaction does) */
    if (!read_only) {
        PyObject *root = run_store(st, NULL, op_root, NULL, NULL, 0);
        if (!root) {
            Py_DECREF(st);
            return NULL;
        }
        st->root_id = ((ProxyObject *)root)->id;
        Py_DECREF(root);
    }
    return (PyObject *)st;
}

static PyObject *mod_remove(PyObject *m UNUSED, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"name", "dir", "force", NULL};
    const char *name;
    PyObject *dirobj = Py_None;
    const char *dir = NULL;
    int force = 0;
    shm_error err;
    int32_t rc;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "s|Op:_remove", kwlist, &name, &dirobj, &force))
        return NULL;
    if (dirobj != Py_None && !(dir = PyUnicode_AsUTF8(dirobj)))
        return NULL;
    if (fork_check_pid() < 0)
        return NULL;
    ERR_INIT(err);
    Py_BEGIN_ALLOW_THREADS
    rc = L.shm_remove(name, dir, force, &err);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return raise_rc(rc, &err);
    Py_RETURN_NONE;
}

/* retry(): in the thread's innermost transaction */
static PyObject *mod_retry(PyObject *m UNUSED, PyObject *u UNUSED)
{
    txstate *ts = active_ts();
    if (fork_check() < 0)
        return NULL;
    if (!ts)
        return PyErr_Format(UsageError, "retry() outside a transaction (it waits for a change to what the "
                                        "transaction read): call it in a transaction's body");
    return tx_retry(ts, NULL);
}

static PyObject *mod_set_classes(PyObject *m UNUSED, PyObject *args)
{
    PyObject *d, *l, *c, *q, *r, *reg;
    if (!PyArg_ParseTuple(args, "OOOOOO!", &d, &l, &c, &q, &r, &PyDict_Type, &reg))
        return NULL;
    Py_INCREF(d);
    Py_XSETREF(cls_dict, d);
    Py_INCREF(l);
    Py_XSETREF(cls_list, l);
    Py_INCREF(c);
    Py_XSETREF(cls_counter, c);
    Py_INCREF(q);
    Py_XSETREF(cls_queue, q);
    Py_INCREF(r);
    Py_XSETREF(cls_record, r);
    Py_INCREF(reg);
    Py_XSETREF(record_classes, reg);
    Py_RETURN_NONE;
}

/* _rebuild(cls, store, id, kind): a proxy without a transaction (unpickling) */
static PyObject *mod_proxy(PyObject *m UNUSED, PyObject *args)
{
    PyObject *cls, *st;
    unsigned long long id;
    int kind;
    if (!PyArg_ParseTuple(args, "OO!Ki", &cls, &StoreType, &st, &id, &kind))
        return NULL;
    return alloc_proxy(cls, (StoreObject *)st, id, kind);
}

/* _call_ns(n, release_gil): the mean ns of a call of the library that
 * does nothing (shm_abi_version), with the GIL released around each or
 * not: the floor of every operation (the benchmarks print it). */
static PyObject *mod_call_ns(PyObject *m UNUSED, PyObject *args)
{
    Py_ssize_t n, i;
    int release;
    int64_t sum = 0;
    double t0;
    if (!PyArg_ParseTuple(args, "np:_call_ns", &n, &release))
        return NULL;
    if (fork_check() < 0)
        return NULL;
    if (n <= 0)
        return PyErr_Format(PyExc_ValueError, "n must be positive");
    t0 = monotonic();
    for (i = 0; i < n; i++) {
        if (release)
            NOGIL(sum += L.shm_abi_version());
        else
            sum += L.shm_abi_version();
    }
    if (sum != (int64_t)n * SHM_ABI_VERSION)
        return PyErr_Format(Error, "shm_abi_version answered otherwise");
    return PyFloat_FromDouble((monotonic() - t0) * 1e9 / (double)n);
}

static PyObject *mod_loaded(PyObject *m UNUSED, PyObject *u UNUSED)
{
    return PyBool_FromLong(lib_loaded);
}

static PyObject *mod_in_transaction(PyObject *m UNUSED, PyObject *u UNUSED)
{
    txstate *ts = active_ts();
    return PyBool_FromLong(ts != NULL);
}

static PyMethodDef module_methods[] = {
    {"_load", (PyCFunction)mod_load, METH_O, "_load(path): dlopen libshmstore.so"},
    {"_loaded", (PyCFunction)mod_loaded, METH_NOARGS, "whether libshmstore.so is loaded"},
    {"_open", (PyCFunction)(void (*)(void))mod_open, METH_VARARGS | METH_KEYWORDS, "_open(cls, name, ...)"},
    {"_remove", (PyCFunction)(void (*)(void))mod_remove, METH_VARARGS | METH_KEYWORDS,
     "_remove(name, dir=None, force=False)"},
    {"retry", (PyCFunction)mod_retry, METH_NOARGS,
     "retry()\n--\n\nGive up this run of the transaction and wait until something it read changes, "
     "then run it again (raises RetryError, which the transaction loop handles). Outside a transaction: "
     "UsageError."},
    {"in_transaction", (PyCFunction)mod_in_transaction, METH_NOARGS,
     "in_transaction()\n--\n\nWhether this thread runs a transaction."},
    {"_set_classes", (PyCFunction)mod_set_classes, METH_VARARGS, "the Python proxy classes"},
    {"_proxy", (PyCFunction)mod_proxy, METH_VARARGS, "_proxy(cls, store, id, kind)"},
    {"_call_ns", (PyCFunction)mod_call_ns, METH_VARARGS,
     "_call_ns(n, release_gil): mean ns of an empty call of the library (shm_abi_version)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "shmstore._shmstore",
    .m_doc = "The C extension of shmstore over libshmstore.so (see the shmstore package).",
    .m_size = -1,
    .m_methods = module_methods,
};

/* new_exc makes shmstore.<name>, of bases (NULL: Exception), as an
 * attribute of m: a borrowed reference (m holds one), or NULL. */
static PyObject *new_exc(PyObject *m, const char *name, PyObject *bases, const char *doc)
{
    char full[128];
    PyObject *e;
    snprintf(full, sizeof full, "shmstore.%s", name);
    e = PyErr_NewExceptionWithDoc(full, doc, bases, NULL);
    if (!e)
        return NULL;
    if (PyModule_AddObjectRef(m, name, e) < 0) {
        Py_DECREF(e);
        return NULL;
    }
    return e;
}

/* set_code sets the class attribute code of the exception class cls (an
 * instance raised for a failed call holds the call's own). */
static int set_code(PyObject *cls, int32_t code)
{
    PyObject *c = PyLong_FromLong(code);
    int r = c ? PyObject_SetAttrString(cls, "code", c) : -1;
    Py_XDECREF(c);
    return r;
}

/* new_excs makes Error, UsageError (also a RuntimeError: shmstore used in
 * a way the state of the thread or of the object does not allow, no
 * call of the library failed) and the exceptions of the codes table,
 * each with its code; Error's and UsageError's is SHM_ERR_OTHER. */
static int new_excs(PyObject *m)
{
    size_t i;
    PyObject *bases;
    if (!(Error = new_exc(m, "Error", NULL, "The base of shmstore's errors; .code is the ABI's result code.")) ||
        set_code(Error, SHM_ERR_OTHER) < 0)
        return -1;
    if (!(bases = PyTuple_Pack(2, Error, PyExc_RuntimeError)))
        return -1;
    UsageError = new_exc(m, "UsageError", bases,
                         "shmstore used in a way the state does not allow: retry() outside a transaction, "
                         "begin() while a transaction begun with begin() runs in the thread, an operation "
                         "on an object not stored yet (also a RuntimeError).");
    Py_DECREF(bases);
    if (!UsageError)
        return -1;
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        if (!codes[i].name)
            continue;
        if (codes[i].base == &UsageError)
            bases = (Py_INCREF(UsageError), UsageError); /* already an Error */
        else
            bases = codes[i].base ? PyTuple_Pack(2, Error, *codes[i].base) : (Py_INCREF(Error), Error);
        if (!bases)
            return -1;
        *codes[i].cls = new_exc(m, codes[i].name, bases, codes[i].doc);
        Py_DECREF(bases);
        if (!*codes[i].cls || set_code(*codes[i].cls, codes[i].code) < 0)
            return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__shmstore(void)
{
    PyObject *m, *qmod;
    PyTypeObject *types[] = {&ProxyType, &DictBaseType, &ListBaseType, &CounterBaseType, &QueueBaseType,
                             &RecordBaseType, &TxnType, &StoreType};
    const char *tnames[] = {"Proxy", "DictBase", "ListBase", "CounterBase", "QueueBase",
                            "RecordBase", "Txn", "StoreBase"};
    size_t i;

    for (i = 1; i <= 5; i++) {
        types[i]->tp_base = &ProxyType;
        types[i]->tp_dealloc = (destructor)proxy_dealloc;
    }
    for (i = 0; i < sizeof types / sizeof types[0]; i++)
        if (PyType_Ready(types[i]) < 0)
            return NULL;
    m = PyModule_Create(&module_def);
    if (!m)
        return NULL;
    for (i = 0; i < sizeof types / sizeof types[0]; i++)
        if (PyModule_AddObjectRef(m, tnames[i], (PyObject *)types[i]) < 0)
            goto fail;

    if (new_excs(m) < 0)
        goto fail;

    qmod = PyImport_ImportModule("queue");
    if (!qmod)
        goto fail;
    QueueEmpty = PyObject_GetAttrString(qmod, "Empty");
    QueueFull = PyObject_GetAttrString(qmod, "Full");
    Py_DECREF(qmod);
    if (!QueueEmpty || !QueueFull)
        goto fail;

#define K(n)                                          \
    if (PyModule_AddIntConstant(m, #n, n) < 0)        \
        goto fail;
    K(SHM_OK) K(SHM_AGAIN) K(SHM_TIMEOUT) K(SHM_FALSE) K(SHM_ERR_NOT_FOUND) K(SHM_ERR_RANGE) K(SHM_ERR_TYPE)
    K(SHM_ERR_CONFLICT) K(SHM_ERR_RETRY) K(SHM_ERR_TX_CLOSED) K(SHM_ERR_STALE) K(SHM_ERR_NO_MEMORY)
    K(SHM_ERR_TOO_LARGE) K(SHM_ERR_READ_ONLY) K(SHM_ERR_NO_STORE) K(SHM_ERR_EXISTS) K(SHM_ERR_DAMAGED)
    K(SHM_ERR_CLOSED) K(SHM_ERR_FORKED) K(SHM_ERR_PERMISSION) K(SHM_ERR_BAD_ARG) K(SHM_ERR_IN_USE)
    K(SHM_ERR_OVERFLOW) K(SHM_ERR_RETRY_NOTHING) K(SHM_ERR_OTHER) K(SHM_NONE) K(SHM_BOOL) K(SHM_INT)
    K(SHM_FLOAT) K(SHM_STRING) K(SHM_BYTES) K(SHM_DICT) K(SHM_LIST) K(SHM_RECORD) K(SHM_COUNTER) K(SHM_QUEUE)
    K(SHM_OPEN_CREATE) K(SHM_OPEN_MUST_EXIST) K(SHM_OPEN_MUST_CREATE) K(SHM_ABI_VERSION)
#undef K

    {
        static int atfork_done;
        if (!atfork_done) {
            pthread_atfork(NULL, NULL, atfork_child);
            atfork_done = 1;
        }
    }
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
