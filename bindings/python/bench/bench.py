"""Benchmarks of shmstore's Python binding against its peers, printed as
one table from one run (make python-bench):

  * get and set on a shared Dict, outside a transaction (one transaction
    each) and N in one transaction, against a plain dict, py-lmdb (a
    transaction per operation, and N in one), a multiprocessing Manager
    dict and a multiprocessing.shared_memory.ShareableList;
  * two processes incrementing one counter, an increment a transaction
    (Counter.add, which reads; c += 1, which does not; c += 1 in
    store.run) against LMDB (a write transaction of a read and a put per
    increment): increments/s of both together;
  * a Queue round trip (a put in one process, a get in another, the reply
    back through a second queue) against multiprocessing.Queue.

Every figure is the median of several repetitions, timed with
time.perf_counter_ns. Each row says its ratio to the peer its target names
and whether the target (from issue 10) is met. The load average is printed
before and after: the machine may be shared.

    PYTHONPATH=bindings/python /usr/bin/python3 bindings/python/bench/bench.py [--quick]
"""
import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time

import shmstore
from shmstore import _shmstore

try:
    import lmdb
except ImportError:  # make python-bench-deps installs python3-lmdb
    lmdb = None

SPAWN = mp.get_context("spawn")
KEYS = 1000  # keys of every dict (k0 ... k999), cycled through


def per_op(fn, n, reps):
    """The median over reps of fn(n)'s time per operation, in ns."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter_ns()
        fn(n)
        times.append((time.perf_counter_ns() - t0) / n)
    return statistics.median(times)


def keys_for(n, encode=False):
    ks = [f"k{i % KEYS}" for i in range(n)]
    return [k.encode() for k in ks] if encode else ks


# -- single operations --------------------------------------------------------


def get_set(c, ks):
    """Loops of a get and of a set of each key of ks on c (a mapping, or a
    sequence with indexes for keys), to time with per_op(fn, len(ks))."""
    def get(n):
        for k in ks:
            c[k]

    def set_(n):
        for i, k in enumerate(ks):
            c[k] = i

    return get, set_


def without_transactions(c, ks, reps):
    """The ns per get and set on c, which has no transactions: the same
    figures for one and for N in one."""
    get, set_ = get_set(c, ks)
    g, s = per_op(get, len(ks), reps), per_op(set_, len(ks), reps)
    return {"get": g, "set": s, "get_tx": g, "set_tx": s}


def bench_dict_ops(st, n, reps):
    """ns per get and set of a shmstore Dict: outside a transaction (one
    each) and n in one transaction."""
    d = st.root.dict("bench")
    d.update({f"k{i}": i for i in range(KEYS)})
    get, set_ = get_set(d, keys_for(n))
    return {"get": per_op(get, n, reps), "set": per_op(set_, n, reps),
            "get_tx": per_op(lambda n: st.run(get, n), n, reps),
            "set_tx": per_op(lambda n: st.run(set_, n), n, reps)}


def bench_plain_dict(n, reps):
    return without_transactions({f"k{i}": i for i in range(KEYS)}, keys_for(n), reps)


def bench_lmdb(path, n, reps):
    """py-lmdb: a transaction per operation, and n in one. No fsync
    (sync=False, metasync=False): shmstore keeps nothing on disk either."""
    env = lmdb.open(path, map_size=1 << 28, sync=False, metasync=False)
    with env.begin(write=True) as txn:
        for i in range(KEYS):
            txn.put(f"k{i}".encode(), str(i).encode())
    ks = keys_for(n, encode=True)

    def get(n):
        for k in ks:
            with env.begin() as txn:
                txn.get(k)

    def set_(n):
        for i, k in enumerate(ks):
            with env.begin(write=True) as txn:
                txn.put(k, b"%d" % i)

    def get_tx(n):
        with env.begin() as txn:
            for k in ks:
                txn.get(k)

    def set_tx(n):
        with env.begin(write=True) as txn:
            for i, k in enumerate(ks):
                txn.put(k, b"%d" % i)

    res = {"get": per_op(get, n, reps), "set": per_op(set_, n, reps),
           "get_tx": per_op(get_tx, n, reps), "set_tx": per_op(set_tx, n, reps)}
    env.close()
    return res


def bench_manager(n, reps):
    """A multiprocessing Manager dict: every operation a round trip to the
    manager process (nothing to batch)."""
    with SPAWN.Manager() as m:
        return without_transactions(m.dict({f"k{i}": i for i in range(KEYS)}), keys_for(n), reps)


def bench_shareable_list(n, reps):
    """multiprocessing.shared_memory.ShareableList of ints, by index (no
    keys, no transactions)."""
    sl = shared_memory_list([0] * KEYS)
    try:
        return without_transactions(sl, [i % KEYS for i in range(n)], reps)
    finally:
        sl.shm.close()
        sl.shm.unlink()


def shared_memory_list(items):
    from multiprocessing import shared_memory
    return shared_memory.ShareableList(items)


# -- two processes, one counter -----------------------------------------------


def counter_worker(kind, where, n, start, out):
    """Increments one counter n times once start is set; puts its elapsed ns."""
    if kind == "lmdb":
        env = lmdb.open(where, map_size=1 << 24, sync=False, metasync=False)

        def inc():
            with env.begin(write=True) as txn:
                txn.put(b"n", b"%d" % (int(txn.get(b"n")) + 1))
    else:
        st = shmstore.open(os.path.basename(where), dir=os.path.dirname(where), create=False)
        c = st.root["counter"]
        if kind == "add":
            def inc():
                c.add(1)  # reads: concurrent adds conflict, and run again
        elif kind == "iadd":
            def inc():
                c.__iadd__(1)  # c += 1: adds without reading, its own transaction
        else:
            def inc():
                st.run(c.__iadd__, 1)  # c += 1 in a transaction (of its own)
    inc()  # warm
    start.wait()
    t0 = time.perf_counter_ns()
    for _ in range(n - 1):
        inc()
    out.put(time.perf_counter_ns() - t0)


def counter_rate(kind, where, n):
    """Total increments/s of two processes, each n increments."""
    start, out = SPAWN.Event(), SPAWN.Queue()
    procs = [SPAWN.Process(target=counter_worker, args=(kind, where, n, start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    time.sleep(0.5 if kind == "lmdb" else 0.3)  # both started and warm
    start.set()
    elapsed = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
        if p.exitcode != 0:
            sys.exit(f"counter worker ({kind}) failed: exit {p.exitcode}")
    return 2 * (n - 1) / (max(elapsed) / 1e9)


def interleaved(measures, reps):
    """The median of reps runs of each of measures (name: function), run
    in turn (one of each, then again): a load that comes and goes on a
    shared machine weighs on all alike."""
    runs = {name: [] for name in measures}
    for _ in range(reps):
        for name, fn in measures.items():
            runs[name].append(fn())
    return {name: (statistics.median(r) if not isinstance(r[0], tuple)
                   else tuple(statistics.median(x) for x in zip(*r))) for name, r in runs.items()}


# -- queue round trip ---------------------------------------------------------


def echo_worker(q1, q2, n):
    """Gets n items from q1 and puts each back on q2."""
    for _ in range(n):
        q2.put(q1.get())


def round_trip(what, q1, q2, n):
    """p50 and mean round trip in us: put on q1, the echo process puts it
    back on q2, get from q2."""
    warm = 200
    p = SPAWN.Process(target=echo_worker, args=(q1, q2, n + warm))
    p.start()
    rtts = []
    for i in range(n + warm):
        t0 = time.perf_counter_ns()
        q1.put(i)
        q2.get()
        if i >= warm:
            rtts.append(time.perf_counter_ns() - t0)
    p.join(60)
    if p.exitcode != 0:
        sys.exit(f"echo worker ({what}) failed: exit {p.exitcode}")
    return statistics.median(rtts) / 1e3, statistics.fmean(rtts) / 1e3


# -- the table ----------------------------------------------------------------


def fmt(x, unit):
    if x is None:
        return "-"
    if unit == "incr/s":
        return f"{x / 1e3:.0f}k"
    if unit == "us":
        return f"{x:.1f}"
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}"


def loadavg():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer operations and repetitions (a smoke run)")
    args = ap.parse_args()
    n, reps = (2000, 3) if args.quick else (20000, 7)
    n_mgr = 200 if args.quick else 2000
    n_cnt, reps_cnt = (2000, 1) if args.quick else (20000, 3)
    n_rt, reps_rt = (300, 1) if args.quick else (3000, 3)

    print(f"shmstore Python benchmarks: {os.cpu_count()} CPUs, load average {loadavg()} (before)",
          flush=True)
    tmp = tempfile.mkdtemp(prefix="shmstore-bench-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        st = shmstore.open("bench", dir=tmp)
        call_gil, call_nogil = _shmstore._call_ns(200000, False), _shmstore._call_ns(200000, True)
        shm = bench_dict_ops(st, n, reps)
        peers = {"dict": bench_plain_dict(n, reps), "ShareableList": bench_shareable_list(n, reps),
                 "Manager": bench_manager(n_mgr, max(3, reps // 2))}
        peers["lmdb"] = bench_lmdb(os.path.join(tmp, "lmdb-ops"), n, reps) if lmdb else None

        st.root["counter"] = shmstore.Counter(0)
        where, lpath = os.path.join(tmp, "bench"), os.path.join(tmp, "lmdb-counter")
        kinds = {k: (lambda k=k: counter_rate(k, where, n_cnt)) for k in ("add", "iadd", "iadd_tx")}
        if lmdb:
            env = lmdb.open(lpath, map_size=1 << 24, sync=False, metasync=False)
            with env.begin(write=True) as txn:
                txn.put(b"n", b"0")
            kinds["lmdb"] = lambda: counter_rate("lmdb", lpath, n_cnt)
        cnt = interleaved(kinds, reps_cnt)
        cnt_lmdb = cnt.pop("lmdb", None)
        expected = 2 * n_cnt * reps_cnt * len(cnt)
        if st.root["counter"].value != expected:
            sys.exit(f"counter is {st.root['counter'].value}, want {expected}: increments lost")
        if lmdb:
            with env.begin() as txn:
                if int(txn.get(b"n")) != 2 * n_cnt * reps_cnt:
                    sys.exit("LMDB counter lost increments")
            env.close()

        q1, q2, m1, m2 = st.root.queue("q1"), st.root.queue("q2"), SPAWN.Queue(), SPAWN.Queue()
        rts = interleaved({"shmstore": lambda: round_trip("shmstore", q1, q2, n_rt),
                           "mp": lambda: round_trip("mp", m1, m2, n_rt)}, reps_rt)
        rt, rt_mp = rts["shmstore"], rts["mp"]
        st.check()
        st.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def peer(name, key):
        p = peers.get(name)
        return p[key] if p else None

    rows = []  # (row, unit, shmstore, {peer: value}, [(target text, ratio, min ratio)])

    def ratio(slower, faster):
        return slower / faster if slower and faster else None

    for key, what in (("get", "get, own transaction"), ("get_tx", f"get, {n} in one transaction"),
                      ("set", "set, own transaction"), ("set_tx", f"set, {n} in one transaction")):
        v = shm[key]
        ps = {name: peer(name, key) for name in ("dict", "lmdb", "Manager", "ShareableList")}
        targets = []
        if key.startswith("get"):
            targets.append(("<= lmdb", ratio(ps["lmdb"], v), 1.0))
        if key in ("get", "set"):
            targets.append((">= 100x Manager", ratio(ps["Manager"], v), 100.0))
        rows.append((f"Dict {what}", "ns/op", v, ps, targets))
    for key, what in (("add", "Counter.add(1), 2 processes"), ("iadd", "c += 1, 2 processes"),
                      ("iadd_tx", "c += 1 in store.run, 2 processes")):
        rows.append((what, "incr/s", cnt[key], {"lmdb": cnt_lmdb}, [(">= 4x lmdb", ratio(cnt[key], cnt_lmdb), 4.0)]))
    rows.append(("Queue round trip, p50", "us", rt[0], {"mp.Queue": rt_mp[0]},
                 [(">= 5x mp.Queue", ratio(rt_mp[0], rt[0]), 5.0)]))
    rows.append(("Queue round trip, mean", "us", rt[1], {"mp.Queue": rt_mp[1]}, []))

    cols = ["dict", "lmdb", "Manager", "ShareableList", "mp.Queue"]
    head = f"{'':40} {'unit':>7} {'shmstore':>9} " + " ".join(f"{c:>13}" for c in cols) + "  target            ratio   verdict"
    print()
    print(head)
    print("-" * len(head))
    for name, unit, v, ps, targets in rows:
        line = f"{name:40} {unit:>7} {fmt(v, unit):>9} " + " ".join(f"{fmt(ps.get(c), unit):>13}" for c in cols)
        if not targets:
            print(line)
        for i, (text, r, want) in enumerate(targets):
            verdict = "no peer" if r is None else ("target met" if r >= want else "target missed")
            rs = "-" if r is None else f"{r:.2f}x"
            print((line if i == 0 else " " * len(line)) + f"  {text:16} {rs:>7}   {verdict}")
    print()
    print(f"ratio: how many times the peer's time (or, for the counter, shmstore's rate) the other's; "
          f"median of {reps} runs ({reps_cnt} for the counter, {reps_rt} for the queue); Manager and "
          f"ShareableList have no transactions (the same figure in both rows of an operation).")
    print(f"floor: an empty call of the library (shm_abi_version, in a C loop): {call_nogil:.0f} ns with the GIL "
          f"released around it, {call_gil:.0f} ns holding it.")
    print(f"load average {loadavg()} (after)")


if __name__ == "__main__":
    main()
