/*
 * abi_test.c: libshmstore.so driven from C as shmstore.h says, with the
 * caller's retry loop. Built and run by bindings/capi's Go test
 * (TestC): abi_test DIR, with the library on its rpath. Exits 0 when
 * every check holds, else prints the first that failed and exits 1.
 */
#define _GNU_SOURCE
#include "shmstore.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static __thread shm_error err;

#define FAIL(...)                                                     \
    do {                                                              \
        fprintf(stderr, "abi_test.c:%d: ", __LINE__);                 \
        fprintf(stderr, __VA_ARGS__);                                 \
        fprintf(stderr, "\n");                                        \
        exit(1);                                                      \
    } while (0)

#define CHECK(cond, ...)        \
    do {                        \
        if (!(cond))            \
            FAIL(__VA_ARGS__);  \
    } while (0)

/* IS(call, want): the call returns want; a failure fills err with its
 * code and a message. */
#define IS(call, want)                                                               \
    do {                                                                             \
        err.code = 12345;                                                            \
        int32_t rc_ = (call);                                                        \
        if (rc_ != (want))                                                           \
            FAIL("%s: got %d, want %d (%s)", #call, rc_, (int)(want), err.msg);      \
        if (rc_ < 0 && (err.code != rc_ || err.msg[0] == 0))                         \
            FAIL("%s: error not filled (code %d, msg \"%s\")", #call, err.code, err.msg); \
    } while (0)

#define MUST(call) IS(call, SHM_OK)

/* STOP(call): in a body, return the call's code if it failed. */
#define STOP(call)              \
    do {                        \
        int32_t rc_ = (call);   \
        if (rc_ < 0)            \
            return rc_;         \
    } while (0)

static shm_value v_str(const char *s) {
    shm_value v = {0};
    v.kind = SHM_STRING;
    v.str = s;
    v.len = (int64_t)strlen(s);
    return v;
}

static shm_value v_int(int64_t i) {
    shm_value v = {0};
    v.kind = SHM_INT;
    v.i = i;
    return v;
}

typedef int32_t (*body_fn)(shm_tx tx, void *arg);

/* run is the header's loop: the body may run more than once. */
static int32_t run(shm_store st, int32_t flags, body_fn body, void *arg, int *runs) {
    shm_tx tx;
    int32_t rc = shm_tx_begin(st, flags, &tx, &err);
    if (rc != SHM_OK)
        return rc;
    for (;;) {
        if (runs)
            (*runs)++;
        rc = body(tx, arg);
        rc = shm_tx_end(tx, rc, &err);
        if (rc != SHM_AGAIN)
            return rc;
        while ((rc = shm_tx_restart(tx, 100, &err)) == SHM_TIMEOUT)
            ;
        if (rc != SHM_OK) {
            shm_tx_rollback(tx);
            return rc;
        }
    }
}

/* incr adds 1 to the Int under "n" (absent: 0). */
static int32_t incr(shm_tx tx, void *arg) {
    (void)arg;
    shm_obj root;
    STOP(shm_tx_root(tx, &root, &err));
    shm_value k = v_str("n"), v;
    int32_t rc = shm_dict_get(tx, root, &k, &v, &err);
    if (rc == SHM_ERR_NOT_FOUND)
        v = v_int(0);
    else if (rc < 0)
        return rc;
    shm_value nv = v_int(v.i + 1);
    return shm_dict_set(tx, root, &k, &nv, &err);
}

static int64_t get_n(shm_store st) {
    shm_tx tx;
    shm_obj root;
    shm_value k = v_str("n"), v;
    MUST(shm_tx_begin(st, 1, &tx, &err));
    MUST(shm_tx_root(tx, &root, &err));
    MUST(shm_dict_get(tx, root, &k, &v, &err));
    MUST(shm_tx_end(tx, SHM_OK, &err));
    CHECK(v.kind == SHM_INT, "n is of kind %d", v.kind);
    return v.i;
}

/* A conflict: a commit between this attempt's read and its end. */
static void test_conflict(shm_store st) {
    MUST(run(st, 0, incr, NULL, NULL));
    shm_tx tx;
    shm_obj root;
    shm_value k = v_str("n"), v;
    MUST(shm_tx_begin(st, 0, &tx, &err));
    MUST(shm_tx_root(tx, &root, &err));
    MUST(shm_dict_get(tx, root, &k, &v, &err));
    MUST(run(st, 0, incr, NULL, NULL)); /* another transaction commits */
    shm_value nv = v_int(v.i + 100);
    MUST(shm_dict_set(tx, root, &k, &nv, &err));
    IS(shm_tx_end(tx, SHM_OK, &err), SHM_AGAIN);
    IS(shm_dict_get(tx, root, &k, &v, &err), SHM_ERR_TX_CLOSED); /* the attempt's object died */
    MUST(shm_tx_restart(tx, 1000, &err));
    MUST(shm_tx_root(tx, &root, &err));
    MUST(shm_dict_get(tx, root, &k, &v, &err));
    CHECK(v.i == 2, "n = %lld after two increments", (long long)v.i);
    nv = v_int(v.i + 100);
    MUST(shm_dict_set(tx, root, &k, &nv, &err));
    MUST(shm_tx_end(tx, SHM_OK, &err));
    CHECK(get_n(st) == 102, "n = %lld", (long long)get_n(st));
    IS(shm_tx_end(tx, SHM_OK, &err), SHM_ERR_TX_CLOSED);
}

/* Concurrent increments from two threads: none lost. */
struct incr_arg {
    shm_store st;
    int n, runs;
    int32_t rc;
};

static void *incr_thread(void *p) {
    struct incr_arg *a = p;
    for (int i = 0; i < a->n && a->rc == SHM_OK; i++)
        a->rc = run(a->st, 0, incr, NULL, &a->runs);
    return NULL;
}

static void test_threads(shm_store st) {
    int64_t before = get_n(st);
    struct incr_arg a = {st, 200, 0, SHM_OK}, b = a;
    pthread_t ta, tb;
    pthread_create(&ta, NULL, incr_thread, &a);
    pthread_create(&tb, NULL, incr_thread, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(a.rc == SHM_OK && b.rc == SHM_OK, "increments failed: %d %d", a.rc, b.rc);
    CHECK(get_n(st) == before + 400, "n = %lld, want %lld", (long long)get_n(st), (long long)before + 400);
}

/* A queue between two threads: the producer waits while it is full, the
 * consumer while it is empty, both in shm_tx_restart. */
#define ITEMS 100

struct item {
    int i;
    char got[64];
};

static int32_t put(shm_tx tx, void *arg) {
    struct item *it = arg;
    shm_obj root, q;
    char buf[32];
    snprintf(buf, sizeof buf, "item-%d", it->i);
    shm_value k = v_str("jobs"), v = v_str(buf);
    STOP(shm_tx_root(tx, &root, &err));
    STOP(shm_dict_container(tx, root, &k, SHM_QUEUE, 4, &q, &err));
    return shm_queue_put(tx, q, &v, 0, &err);
}

static int32_t get(shm_tx tx, void *arg) {
    struct item *it = arg;
    shm_obj root;
    shm_value k = v_str("jobs"), qv, v;
    STOP(shm_tx_root(tx, &root, &err));
    STOP(shm_dict_get(tx, root, &k, &qv, &err));
    if (qv.kind != SHM_QUEUE)
        return SHM_ERR_TYPE;
    STOP(shm_queue_get(tx, qv.obj, 0, &v, &err));
    if (v.kind != SHM_STRING || v.len >= (int64_t)sizeof it->got)
        return SHM_ERR_TYPE;
    memcpy(it->got, v.str, (size_t)v.len); /* copy at once: the buffer is the transaction's */
    it->got[v.len] = 0;
    return SHM_OK;
}

static void *producer(void *p) {
    shm_store st = *(shm_store *)p;
    for (int i = 0; i < ITEMS; i++) {
        struct item it = {i, ""};
        int32_t rc = run(st, 0, put, &it, NULL);
        if (rc != SHM_OK) {
            fprintf(stderr, "put %d: %d %s\n", i, rc, err.msg);
            exit(1);
        }
        if (i % 10 == 0)
            usleep(1000);
    }
    return NULL;
}

static void test_queue(shm_store st) {
    /* The queue exists before the consumer's first get waits on it. */
    shm_tx tx;
    shm_obj root, q;
    shm_value k = v_str("jobs");
    MUST(shm_tx_begin(st, 0, &tx, &err));
    MUST(shm_tx_root(tx, &root, &err));
    MUST(shm_dict_container(tx, root, &k, SHM_QUEUE, 4, &q, &err));
    int64_t cap;
    MUST(shm_queue_cap(tx, q, &cap, &err));
    CHECK(cap == 4, "capacity %lld", (long long)cap);
    MUST(shm_tx_end(tx, SHM_OK, &err));

    pthread_t t;
    pthread_create(&t, NULL, producer, &st);
    int waits = 0;
    for (int i = 0; i < ITEMS; i++) {
        struct item it = {i, ""};
        int runs = 0;
        MUST(run(st, 0, get, &it, &runs));
        char want[32];
        snprintf(want, sizeof want, "item-%d", i);
        CHECK(strcmp(it.got, want) == 0, "got %s, want %s", it.got, want);
        waits += runs - 1;
    }
    pthread_join(t, NULL);
    fprintf(stderr, "queue: %d items, the consumer waited %d times\n", ITEMS, waits);

    /* Peek reads an item without taking it. */
    shm_value a = v_str("a"), b = v_str("b"), v;
    int64_t n;
    MUST(shm_tx_begin(st, 0, &tx, &err));
    MUST(shm_tx_root(tx, &root, &err));
    MUST(shm_dict_container(tx, root, &k, SHM_QUEUE, 4, &q, &err));
    MUST(shm_queue_put(tx, q, &a, 0, &err));
    MUST(shm_queue_put(tx, q, &b, 0, &err));
    MUST(shm_queue_peek(tx, q, -1, &v, &err));
    CHECK(v.kind == SHM_STRING && strcmp(v.str, "b") == 0, "peek -1: kind %d", v.kind);
    MUST(shm_queue_peek(tx, q, 0, &v, &err));
    CHECK(v.kind == SHM_STRING && strcmp(v.str, "a") == 0, "peek 0: kind %d", v.kind);
    IS(shm_queue_peek(tx, q, 2, &v, &err), SHM_ERR_RANGE);
    MUST(shm_queue_len(tx, q, &n, &err));
    CHECK(n == 2, "%lld items after peeks", (long long)n);
    MUST(shm_queue_get(tx, q, 0, &v, &err));
    MUST(shm_queue_get(tx, q, 0, &v, &err));
    MUST(shm_tx_end(tx, SHM_OK, &err));
}

/* Errors carry their code and a message; err may be NULL. */
static void test_errors(shm_store st, const char *dir) {
    shm_options o = {0};
    o.dir = dir;
    o.create = SHM_OPEN_MUST_EXIST;
    shm_store s2;
    IS(shm_open("nosuchstore", &o, &s2, &err), SHM_ERR_NO_STORE);
    CHECK(strstr(err.msg, "nosuchstore") != NULL, "message \"%s\"", err.msg);
    CHECK(shm_open("nosuchstore", &o, &s2, NULL) == SHM_ERR_NO_STORE, "NULL err");
    IS(shm_open(NULL, &o, &s2, &err), SHM_ERR_BAD_ARG);

    shm_tx tx;
    shm_obj root, l;
    shm_value k = v_str("absent"), v;
    MUST(shm_tx_begin(st, 0, &tx, &err));
    MUST(shm_tx_root(tx, &root, &err));
    IS(shm_dict_get(tx, root, &k, &v, &err), SHM_ERR_NOT_FOUND);
    CHECK(strstr(err.msg, "absent") != NULL, "message \"%s\"", err.msg);
    IS(shm_dict_get(tx, root, &k, NULL, &err), SHM_ERR_BAD_ARG);
    IS(shm_list_len(tx, root, (int64_t *)&v.i, &err), SHM_ERR_TYPE);
    IS(shm_dict_len(tx, 0, (int64_t *)&v.i, &err), SHM_ERR_BAD_ARG);
    MUST(shm_tx_new(tx, SHM_LIST, 0, &l, &err));
    IS(shm_list_get(tx, l, 5, &v, &err), SHM_ERR_RANGE);
    IS(shm_tx_retry(tx, &err), SHM_ERR_RETRY);
    shm_tx_rollback(tx);
    IS(shm_tx_root(tx, &root, &err), SHM_ERR_TX_CLOSED);
    CHECK(shm_tx_rollback(tx) == SHM_OK, "rollback twice");

    /* A retry in an attempt that read nothing would wait forever. */
    MUST(shm_tx_begin(st, 0, &tx, &err));
    IS(shm_tx_retry(tx, &err), SHM_ERR_RETRY);
    IS(shm_tx_end(tx, SHM_ERR_RETRY, &err), SHM_ERR_RETRY_NOTHING);
    IS(shm_tx_restart(tx, 0, &err), SHM_ERR_TX_CLOSED);
}

/* Values of every kind, a Record, Bytes with NULs, ids across
 * transactions, keys. */
static void test_values(shm_store st) {
    shm_tx tx;
    shm_obj root, rec, q;
    MUST(shm_tx_begin(st, 0, &tx, &err));
    MUST(shm_tx_root(tx, &root, &err));
    const char *const fields[] = {"x", "y"};
    MUST(shm_tx_new_record(tx, "Point", fields, 2, &rec, &err));
    shm_value x = v_int(3), k = v_str("p"), r = {0}, bytes = {0}, f = {0}, v;
    MUST(shm_record_set(tx, rec, "x", &x, &err));
    r.kind = SHM_RECORD;
    r.obj = rec;
    MUST(shm_dict_set(tx, root, &k, &r, &err));
    bytes.kind = SHM_BYTES;
    bytes.str = "a\0b\0c";
    bytes.len = 5;
    k = v_str("bytes");
    MUST(shm_dict_set(tx, root, &k, &bytes, &err));
    f.kind = SHM_FLOAT;
    f.f = 2.5;
    k = v_str("float");
    MUST(shm_dict_set(tx, root, &k, &f, &err));
    k = v_str("q");
    MUST(shm_dict_container(tx, root, &k, SHM_QUEUE, 0, &q, &err));
    uint64_t qid;
    MUST(shm_obj_id(tx, q, &qid, &err));
    MUST(shm_tx_end(tx, SHM_OK, &err));

    MUST(shm_tx_begin(st, 1, &tx, &err));
    MUST(shm_tx_root(tx, &root, &err));
    k = v_str("p");
    MUST(shm_dict_get(tx, root, &k, &v, &err));
    CHECK(v.kind == SHM_RECORD, "record came out as %d", v.kind);
    rec = v.obj;
    MUST(shm_record_class(tx, rec, &v, &err));
    CHECK(v.kind == SHM_STRING && v.len == 5 && memcmp(v.str, "Point", 5) == 0, "class");
    int64_t n;
    MUST(shm_record_nfields(tx, rec, &n, &err));
    CHECK(n == 2, "%lld fields", (long long)n);
    MUST(shm_record_field(tx, rec, 1, &v, &err));
    CHECK(v.len == 1 && v.str[0] == 'y' && v.str[1] == 0, "field 1");
    MUST(shm_record_get(tx, rec, "x", &v, &err));
    CHECK(v.kind == SHM_INT && v.i == 3, "x");
    IS(shm_record_get(tx, rec, "z", &v, &err), SHM_ERR_NOT_FOUND);
    k = v_str("bytes");
    MUST(shm_dict_get(tx, root, &k, &v, &err));
    CHECK(v.kind == SHM_BYTES && v.len == 5 && memcmp(v.str, "a\0b\0c", 5) == 0, "bytes");
    k = v_str("float");
    MUST(shm_dict_get(tx, root, &k, &v, &err));
    CHECK(v.kind == SHM_FLOAT && v.f == 2.5, "float");
    MUST(shm_tx_open(tx, qid, &v, &err));
    CHECK(v.kind == SHM_QUEUE, "queue by id came out as %d", v.kind);
    int64_t len;
    MUST(shm_dict_len(tx, root, &len, &err));
    int64_t i = 0;
    int32_t rc;
    while ((rc = shm_dict_key(tx, root, i, &v, &err)) == SHM_OK)
        i++;
    CHECK(rc == SHM_ERR_RANGE && i == len, "%lld keys of %lld (%d)", (long long)i, (long long)len, rc);
    MUST(shm_tx_end(tx, SHM_OK, &err));
}

/* OrElse: the first alternative's queue is empty, the second's is not. */
static int32_t either(shm_tx tx, void *arg) {
    char *got = arg;
    shm_obj root, q1, q2;
    shm_value k1 = v_str("e1"), k2 = v_str("e2"), v;
    STOP(shm_tx_root(tx, &root, &err));
    STOP(shm_dict_container(tx, root, &k1, SHM_QUEUE, 0, &q1, &err));
    STOP(shm_dict_container(tx, root, &k2, SHM_QUEUE, 0, &q2, &err));
    int64_t tok;
    int32_t rc = shm_tx_or_else_begin(tx, &tok, &err);
    if (rc == SHM_OK) {
        rc = shm_queue_get(tx, q1, 0, &v, &err);
        if (rc == SHM_ERR_RETRY)
            return shm_tx_or_else_retried(tx, tok, &err);
    } else if (rc == SHM_FALSE) {
        rc = shm_queue_get(tx, q2, 0, &v, &err);
    }
    if (rc == SHM_OK)
        snprintf(got, 32, "%.*s", (int)v.len, v.str);
    return rc;
}

static int32_t fill_e2(shm_tx tx, void *arg) {
    (void)arg;
    shm_obj root, q;
    shm_value k = v_str("e2"), v = v_str("second");
    STOP(shm_tx_root(tx, &root, &err));
    STOP(shm_dict_container(tx, root, &k, SHM_QUEUE, 0, &q, &err));
    return shm_queue_put(tx, q, &v, 0, &err);
}

static void test_or_else(shm_store st) {
    MUST(run(st, 0, fill_e2, NULL, NULL));
    char got[32] = "";
    int runs = 0;
    MUST(run(st, 0, either, got, &runs));
    CHECK(strcmp(got, "second") == 0 && runs == 2, "got \"%s\" in %d runs", got, runs);
}

/* A forked child must not use the library: every entry point says
 * SHM_ERR_FORKED (if the Go runtime answers at all; a child that hangs
 * is killed by its alarm, which is allowed). */
static void test_fork(shm_store st) {
    pid_t pid = fork();
    if (pid == 0) {
        alarm(5);
        shm_tx tx;
        int32_t rc = shm_tx_begin(st, 0, &tx, NULL);
        _exit(rc == SHM_ERR_FORKED ? 0 : 2);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
    if (WIFEXITED(status))
        CHECK(WEXITSTATUS(status) == 0, "the forked child got no SHM_ERR_FORKED");
    else
        fprintf(stderr, "fork: the child hung in the library (killed by signal %d)\n", WTERMSIG(status));
}

/* With every slot of the process in use, shm_tx_begin_timeout gives up
 * (SHM_TIMEOUT) and begins once one is free. */
static void test_begin_timeout(shm_store st) {
    shm_tx held[64], tx = 0;
    int n = 0;
    int32_t rc;
    while ((rc = shm_tx_begin_timeout(st, 0, 20, &held[n], &err)) == SHM_OK)
        CHECK(++n < 64, "%d transactions begun", n);
    CHECK(rc == SHM_TIMEOUT && n == 16, "%d transactions begun, then %d", n, rc);
    IS(shm_tx_begin_timeout(st, 1, 0, &tx, &err), SHM_TIMEOUT);
    CHECK(tx == 0, "a begin that timed out wrote *out");
    shm_tx_rollback(held[0]);
    MUST(shm_tx_begin_timeout(st, 1, -1, &tx, &err));
    MUST(shm_tx_end(tx, SHM_OK, &err));
    for (int i = 1; i < n; i++)
        shm_tx_rollback(held[i]);
}

/* One-shot calls: by id, a String out in the caller's buffer (SHM_SHORT
 * when it does not fit), counters, a queue without waiting. */
static void test_one_shot(shm_store st) {
    shm_tx tx;
    shm_obj root, d, c, q;
    uint64_t did, cid, qid;
    shm_value kd = v_str("od"), kc = v_str("oc"), kq = v_str("oq");
    MUST(shm_tx_begin(st, 0, &tx, &err));
    MUST(shm_tx_root(tx, &root, &err));
    MUST(shm_dict_container(tx, root, &kd, SHM_DICT, 0, &d, &err));
    MUST(shm_dict_container(tx, root, &kc, SHM_COUNTER, 0, &c, &err));
    MUST(shm_dict_container(tx, root, &kq, SHM_QUEUE, 1, &q, &err));
    MUST(shm_obj_id(tx, d, &did, &err));
    MUST(shm_obj_id(tx, c, &cid, &err));
    MUST(shm_obj_id(tx, q, &qid, &err));
    MUST(shm_tx_end(tx, SHM_OK, &err));

    char buf[8];
    shm_value k = v_str("k"), v = v_str("a longer string"), out;
    IS(shm_op_dict_get(st, did, &k, -1, &out, buf, sizeof buf, &err), SHM_ERR_NOT_FOUND);
    MUST(shm_op_dict_set(st, did, &k, &v, -1, &err));
    IS(shm_op_dict_get(st, did, &k, -1, &out, buf, sizeof buf, &err), SHM_SHORT);
    CHECK(out.kind == SHM_STRING && out.len == 15, "short: kind %d len %lld", out.kind, (long long)out.len);
    char *big = malloc((size_t)out.len + 1);
    MUST(shm_op_dict_get(st, did, &k, -1, &out, big, out.len + 1, &err));
    CHECK(out.str == big && strcmp(big, "a longer string") == 0, "got \"%s\"", big);
    free(big);
    shm_value cv = {0};
    cv.kind = SHM_COUNTER;
    cv.obj = cid;
    MUST(shm_op_dict_set(st, did, &kc, &cv, -1, &err)); /* linked by id */
    MUST(shm_op_dict_get(st, did, &kc, -1, &out, buf, sizeof buf, &err));
    CHECK(out.kind == SHM_COUNTER && out.obj == cid, "linked counter: kind %d", out.kind);
    MUST(shm_op_dict_delete(st, did, &k, -1, &err));
    IS(shm_op_dict_delete(st, did, &k, -1, &err), SHM_ERR_NOT_FOUND);

    int64_t n = 0;
    MUST(shm_op_counter_add(st, cid, 3, 0, -1, &n, &err));
    CHECK(n == 3, "counter %lld", (long long)n);
    MUST(shm_op_counter_add(st, cid, 4, 1, -1, NULL, &err));
    MUST(shm_op_counter_get(st, cid, -1, &n, &err));
    CHECK(n == 7, "counter %lld", (long long)n);
    IS(shm_op_counter_get(st, did, -1, &n, &err), SHM_ERR_TYPE);

    shm_value one = v_int(1);
    IS(shm_op_queue_get(st, qid, 0, &out, buf, sizeof buf, &err), SHM_FALSE);
    MUST(shm_op_queue_put(st, qid, &one, 0, &err));
    IS(shm_op_queue_put(st, qid, &one, 0, &err), SHM_FALSE);
    IS(shm_op_queue_put(st, qid, &one, 10, &err), SHM_TIMEOUT);
    MUST(shm_op_queue_get(st, qid, -1, &out, buf, sizeof buf, &err));
    CHECK(out.kind == SHM_INT && out.i == 1, "got kind %d", out.kind);
    IS(shm_op_queue_get(st, qid, 10, &out, buf, sizeof buf, &err), SHM_TIMEOUT);
}

/* abi_test DIR hold: open the store, write "held" in a transaction left
 * running, write a byte to stdout and wait to be killed. */
static int hold(const char *dir) {
    shm_options o = {0};
    o.dir = dir;
    o.create = SHM_OPEN_MUST_EXIST;
    shm_store st;
    shm_tx tx;
    shm_obj root;
    shm_value k = v_str("held"), v = v_int(1);
    MUST(shm_open("ctest", &o, &st, &err));
    MUST(shm_tx_begin(st, 0, &tx, &err));
    MUST(shm_tx_root(tx, &root, &err));
    MUST(shm_dict_set(tx, root, &k, &v, &err));
    CHECK(write(1, "r", 1) == 1, "write");
    for (;;)
        pause();
}

/* A process killed in the middle of a transaction (this program run
 * again as "hold") is recovered by shm_recover, once; its write is gone. */
static void test_recover(shm_store st, const char *self, const char *dir) {
    int64_t n = -1;
    MUST(shm_recover(st, &n, &err));
    CHECK(n == 0, "recovered %lld on a store without dead processes", (long long)n);
    int fds[2];
    CHECK(pipe(fds) == 0, "pipe");
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        execl(self, self, dir, "hold", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char c;
    CHECK(read(fds[0], &c, 1) == 1, "the holder did not get ready");
    close(fds[0]);
    kill(pid, SIGKILL);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status), "the holder was not killed");
    MUST(shm_recover(st, &n, &err));
    CHECK(n == 1, "recovered %lld, want 1", (long long)n);
    MUST(shm_recover(st, &n, &err));
    CHECK(n == 0, "recovered %lld again", (long long)n);
    IS(shm_recover(st, NULL, &err), SHM_ERR_BAD_ARG);
    shm_tx tx;
    shm_obj root;
    shm_value k = v_str("held"), v;
    MUST(shm_tx_begin(st, 1, &tx, &err));
    MUST(shm_tx_root(tx, &root, &err));
    IS(shm_dict_get(tx, root, &k, &v, &err), SHM_ERR_NOT_FOUND);
    MUST(shm_tx_end(tx, SHM_OK, &err));
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[2], "hold") == 0)
        return hold(argv[1]);
    if (argc != 2) {
        fprintf(stderr, "usage: abi_test DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    CHECK(shm_abi_version() == SHM_ABI_VERSION, "ABI version %lld", (long long)shm_abi_version());

    shm_options o = {0};
    o.dir = dir;
    o.region_size = 1 << 20;
    o.max_size = 16 << 20;
    o.create = SHM_OPEN_MUST_CREATE;
    shm_store st;
    MUST(shm_open("ctest", &o, &st, &err));

    test_conflict(st);
    test_threads(st);
    test_queue(st);
    test_errors(st, dir);
    test_values(st);
    test_or_else(st);
    test_fork(st);
    test_recover(st, argv[0], dir);
    test_begin_timeout(st);
    test_one_shot(st);

    char path[4096];
    MUST(shm_store_path(st, path, sizeof path, &err));
    CHECK(strstr(path, "/ctest") != NULL && path[0] == '/', "path %s", path);
    int64_t used, max;
    MUST(shm_store_stats(st, &used, &max, &err));
    CHECK(used > 0 && max == 16 << 20, "stats %lld %lld", (long long)used, (long long)max);
    MUST(shm_check(st, &err));
    IS(shm_remove("ctest", dir, 0, &err), SHM_ERR_IN_USE);
    MUST(shm_close(st, &err));
    IS(shm_close(st, &err), SHM_ERR_CLOSED);
    MUST(shm_remove("ctest", dir, 0, &err));
    printf("abi_test: ok\n");
    return 0;
}
