"""Workers for the multi-process tests (spawned processes import them
from here). Each takes what it needs as arguments: proxies pickle as
(store path, id)."""
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time

import shmstore


def store_args(store):
    """What another process (Python or Go) needs to open store."""
    return {"name": os.path.basename(store.path), "dir": os.path.dirname(store.path)}


def shmctl():
    """The Go command built by make (the Makefile passes SHMCTL)."""
    path = os.environ.get("SHMCTL") or os.path.join(os.path.dirname(__file__), "..", "..", "..", "bin", "shmctl")
    assert os.access(path, os.X_OK), f"{path}: build it first (make build), or set SHMCTL"
    return path


def start_shmctl(procs, store, command, *args):
    """Starts `shmctl COMMAND STORE ARGS...` on store (procs: the fixture),
    its output piped."""
    where = store_args(store)
    return procs.popen([shmctl(), "--dir", where["dir"], command, where["name"], *args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_retrying(store, pid, timeout=30):
    """Waits until process pid has a transaction sleeping in Retry (shmctl
    txns shows it)."""
    where = store_args(store)
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run([shmctl(), "--dir", where["dir"], "txns", where["name"], "--json"],
                             check=True, capture_output=True, text=True).stdout
        if any(s["pid"] == pid and s["retry_on"] > 0 for s in json.loads(out)["slots"]):
            return
        assert time.monotonic() < deadline, f"pid {pid} is not waiting in Retry: {out}"
        time.sleep(0.01)


class Procs:
    """The processes one test starts: spawned Python workers and commands.
    Whatever still runs when the test ends is SIGKILLed, by its own pid,
    and reaped; no other process is touched."""

    SPAWN = mp.get_context("spawn")

    def __init__(self):
        self._workers = []
        self._commands = []

    def spawn(self, target, *args):
        """Starts target(*args) in a spawned Python process."""
        p = self.SPAWN.Process(target=target, args=args)
        p.start()
        self._workers.append(p)
        return p

    def popen(self, argv, **kwargs):
        """Starts a command (subprocess.Popen's arguments)."""
        p = subprocess.Popen(argv, **kwargs)
        self._commands.append(p)
        return p

    def end(self):
        for p in self._workers:
            if p.exitcode is None:
                p.kill()  # os.kill(p.pid, SIGKILL)
            p.join(30)
        for p in self._commands:
            if p.poll() is None:
                # a command still running: it and the processes it started
                # (a script's multiprocessing children), each by its pid
                for pid in _descendants(p.pid):
                    _kill(pid)
                p.kill()  # by pid, and only while not reaped
            p.communicate(timeout=30)  # reaps it, closes its pipes


def _descendants(pid):
    """The pids of the processes below pid (children, theirs, ...), read
    from /proc; a process that ended meanwhile is left out."""
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children = [int(c) for c in f.read().split()]
        except FileNotFoundError:
            continue
        for c in children:
            found += [c] + _descendants(c)
    return found


def _kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def transfer_worker(accounts, n, seed):
    """n random transfers between the accounts (a pickled Dict)."""
    store = accounts._shm_store
    keys = list(accounts.keys())
    rnd = random.Random(seed)

    @store.transaction
    def transfer(a, b, amount):
        accounts[a] = accounts[a] - amount
        accounts[b] = accounts[b] + amount

    for _ in range(n):
        a, b = rnd.sample(keys, 2)
        transfer(a, b, rnd.randint(1, 10))


def slow_transfer_worker(accounts, ready):
    """Transfers forever, sleeping inside each transaction, so that a
    SIGKILL lands in the middle of one."""
    store = accounts._shm_store
    keys = list(accounts.keys())
    rnd = random.Random(os.getpid())

    @store.transaction
    def transfer(a, b, amount):
        accounts[a] = accounts[a] - amount
        time.sleep(0.002)
        accounts[b] = accounts[b] + amount

    ready.set()
    while True:
        a, b = rnd.sample(keys, 2)
        transfer(a, b, rnd.randint(1, 10))


def total_checker(accounts, expected, started, stop, result):
    """Reads the sum in read-only transactions until stop is set; result
    gets the number of checks and of wrong sums."""
    store = accounts._shm_store
    checks = bad = 0
    while not stop.is_set() or checks == 0:
        total = store.view(lambda: sum(accounts.values()))
        checks += 1
        if total != expected:
            bad += 1
        started.set()
    result.put((checks, bad))


def producer(q, n):
    for i in range(n):
        q.put(i)
    q.put(None)


def consumer(q, out):
    """Gets until None; puts the sum of what it got, and the count, into
    out (a shmstore Queue too)."""
    total = count = 0
    while True:
        item = q.get()
        if item is None:
            break
        total += item
        count += 1
    out.put([total, count])


def id_consumer(q, out):
    """Gets jobs {"id": i, "name": "job-<i>"} until None (each get its own
    transaction); puts the ids it got, in order, into out."""
    ids = []
    while True:
        job = q.get()
        if job is None:
            break
        assert job == {"id": job["id"], "name": f"job-{job['id']}"}, job
        ids.append(job["id"])
    out.put(ids)


def item_producer(q, p, n):
    """Puts n items {"p": p, "i": i, "tags": [...]} for i in order."""
    for i in range(n):
        q.put({"p": p, "i": i, "tags": ["x", i * 0.5]})


def touch_after_fork(d):
    """Target of a multiprocessing 'fork' child: must get ForkError."""
    try:
        d["x"] = 1
    except shmstore.ForkError:
        sys.exit(17)
    sys.exit(0)


def read_key(d, key, out):
    out.put(d[key])


def blocked_get_main(name, dir):
    """python -c: block in queue.get until SIGINT."""
    st = shmstore.open(name, dir=dir, create=False)
    q = st.root.queue("jobs")
    print("ready", flush=True)
    try:
        q.get()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        raise


def blocked_explicit_get_main(name, dir):
    """python -c: block in queue.get in a transaction begun with begin()
    until SIGINT; then the thread is free: abort() and a write work."""
    st = shmstore.open(name, dir=dir, create=False)
    q = st.root.queue("jobs")
    st.begin()
    st.root["x"] = "in the transaction"
    print("ready", flush=True)
    try:
        q.get()
    except KeyboardInterrupt:
        st.abort()
        st.root["after"] = "outside"
        print("interrupted", flush=True)
        raise


def hold_slots(store, n):
    """n threads that each begin a transaction and hold it (taking every
    transaction slot of the process when n is 16); returns a function that
    ends them."""
    import threading
    began = threading.Semaphore(0)
    stop = threading.Event()

    def hold():
        store.begin()
        began.release()
        stop.wait()
        store.abort()

    threads = [threading.Thread(target=hold) for _ in range(n)]
    for t in threads:
        t.start()
    for _ in threads:
        assert began.acquire(timeout=30)

    def release():
        stop.set()
        for t in threads:
            t.join()
    return release


def blocked_begin_main(name, dir, value=(1,)):
    """python -c: an operation that waits for a transaction slot (every
    slot held by other threads) until SIGINT: a transaction's begin (the
    value is a new container), or a one-shot call (value=1)."""
    st = shmstore.open(name, dir=dir, create=False)
    release = hold_slots(st, 16)
    try:
        print("ready", flush=True)
        st.root["x"] = value
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        raise
    finally:
        release()


def blocked_op_main(name, dir):
    """blocked_begin_main with a one-shot call."""
    blocked_begin_main(name, dir, 1)


def starved_view_main(name, dir):
    """python -c: a read-only transaction that writes from another thread
    of this process keep aborting, until it locks what it reads (prelock)
    and runs its Python body holding those locks; the writer thread's
    reads then wait for them, and must do so without the GIL."""
    import threading
    st = shmstore.open(name, dir=dir, create=False)
    r = st.root
    r["k"] = 0
    stop = threading.Event()

    @st.transaction
    def inc():
        r["k"] = r["k"] + 1

    def writer():
        while not stop.is_set():
            inc()

    attempts = []

    def body():
        attempts.append(1)
        v = r["k"]
        time.sleep(0.02)  # the writer commits meanwhile: this attempt aborts
        return v, r["k"]

    t = threading.Thread(target=writer)
    t.start()
    try:
        a, b = st.view(body)
    finally:
        stop.set()
        t.join()
    assert a == b
    print("attempts", len(attempts), flush=True)
    st.close()


def hold_transaction(d, ready):
    """Writes d["held"] in a transaction that never ends (to be killed)."""
    d._shm_store.begin()
    d["held"] = 1
    ready.set()
    time.sleep(3600)


def store_procs(store):
    """The process table of store as `shmctl procs --json` lists it:
    [{"pid": ..., "state": "alive" | "dead" | "recovering", ...}]."""
    where = store_args(store)
    out = subprocess.run([shmctl(), "--dir", where["dir"], "procs", where["name"], "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["processes"]


def open_and_write(name, dir, key):
    """Opens the store by name and writes its pid under key; leaves it
    open (closing it is left to the exit)."""
    st = shmstore.open(name, dir=dir, create=False)
    st.root[key] = os.getpid()


def write_pid(d, key):
    """d[key] = this process's pid (d a pickled Dict: the store is opened
    while the arguments are unpickled)."""
    d[key] = os.getpid()
