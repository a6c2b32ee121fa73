"""Several Python processes (multiprocessing 'spawn' and 'forkserver')
sharing a store: bank transfers with a checker, a worker SIGKILLed in the
middle of transactions, a Queue between processes, pickled proxies, and
the fork error."""
import multiprocessing as mp
import os
import pickle
import signal
import subprocess
import sys
import time

import pytest

import helpers
import shmstore

SPAWN = mp.get_context("spawn")
N_ACCOUNTS = 20
START = 1000


def make_accounts(store):
    store.root["accounts"] = {f"acct{i:03d}": START for i in range(N_ACCOUNTS)}
    return store.root["accounts"]


def test_bank_transfers_spawn(store):
    accounts = make_accounts(store)
    started, stop, results = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
    checker = SPAWN.Process(target=helpers.total_checker,
                            args=(accounts, N_ACCOUNTS * START, started, stop, results))
    checker.start()
    assert started.wait(30)
    workers = [SPAWN.Process(target=helpers.transfer_worker, args=(accounts, 1000, seed)) for seed in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    stop.set()
    checks, bad = results.get(timeout=30)
    checker.join(30)
    assert checker.exitcode == 0
    assert bad == 0 and checks > 1
    assert sum(accounts.values()) == N_ACCOUNTS * START
    assert accounts != {f"acct{i:03d}": START for i in range(N_ACCOUNTS)}  # money moved


def test_worker_killed_mid_transaction(store):
    accounts = make_accounts(store)
    ready = SPAWN.Event()
    victim = SPAWN.Process(target=helpers.slow_transfer_worker, args=(accounts, ready))
    other = SPAWN.Process(target=helpers.transfer_worker, args=(accounts, 200, 7))
    victim.start()
    assert ready.wait(30)
    time.sleep(0.3)  # it sleeps inside each transaction: the kill lands in one
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(10)
    assert victim.exitcode == -signal.SIGKILL
    other.start()  # nobody is blocked by what the dead process held
    other.join(60)
    assert other.exitcode == 0
    assert store.view(lambda: sum(accounts.values())) == N_ACCOUNTS * START
    for k in list(accounts):
        accounts[k] = accounts[k]  # every account still writable
    store.check()


def test_recover_counts_dead_processes(store):
    d = store.root.dict("d")
    ready = SPAWN.Event()
    victim = SPAWN.Process(target=helpers.hold_transaction, args=(d, ready))
    victim.start()
    assert ready.wait(30)
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(10)
    assert store.recover() == 1
    assert store.recover() == 0
    assert "held" not in d


def test_queue_between_processes(store):
    q = store.root.queue("jobs", maxsize=10)  # bounded: the producer waits too
    out = store.root.queue("out")
    cons = SPAWN.Process(target=helpers.consumer, args=(q, out))
    prod = SPAWN.Process(target=helpers.producer, args=(q, 500))
    cons.start()
    prod.start()
    prod.join(60)
    cons.join(60)
    assert prod.exitcode == 0 and cons.exitcode == 0
    assert out.get(timeout=10) == [sum(range(500)), 500]
    assert q.qsize() == 0


def test_pickled_proxies_in_a_spawned_child(store):
    r = store.root
    r["d"] = {"x": [1, 2, 3]}
    r["c"] = shmstore.Counter(5)
    out = r.queue("out")
    for obj, key in ((r["d"], "x"), (r, "c")):
        p = SPAWN.Process(target=helpers.read_key, args=(obj, key, out))
        p.start()
        p.join(30)
        assert p.exitcode == 0
    assert out.get(timeout=5) == [1, 2, 3]
    assert out.get(timeout=5) == 5  # a Counter in a queue comes out as its value
    data = pickle.dumps(r["d"])
    assert b"accounts" not in data and store.path.encode() in data


def test_forkserver_children_can_use_the_store(store):
    ctx = mp.get_context("forkserver")
    store.root["k"] = "from parent"
    out = store.root.queue("out")
    p = ctx.Process(target=helpers.read_key, args=(store.root, "k", out))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert out.get(timeout=5) == "from parent"


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_children_close_their_stores_at_exit(store, method):
    """A worker that leaves normally closes the stores it opened (by
    unpickling a proxy among its arguments, by name in its target, in a
    Pool): it departs, and leaves no dead entry in the process table.
    Checked after each child: a process that opens the store later may
    recover a dead entry by itself."""
    ctx = mp.get_context(method)
    r = store.root
    where = helpers.store_args(store)

    def only_this_process():
        return [(p["pid"], p["state"]) for p in helpers.store_procs(store)] == [(os.getpid(), "alive")]

    for target, args in ((helpers.write_pid, (r, "unpickled")),
                         (helpers.open_and_write, (where["name"], where["dir"], "opened"))):
        p = ctx.Process(target=target, args=args)
        p.start()
        p.join(60)
        assert p.exitcode == 0
        assert only_this_process(), (target.__name__, helpers.store_procs(store))
    pool = ctx.Pool(2)
    try:
        pool.starmap(helpers.write_pid, [(r, f"pool{i}") for i in range(4)])
        pool.close()  # the workers leave normally (terminate() would kill them)
        pool.join()
    finally:
        pool.terminate()
    assert only_this_process(), ("Pool", helpers.store_procs(store))
    assert os.getpid() not in {r["unpickled"], r["opened"]} | {r[f"pool{i}"] for i in range(4)}
    assert store.recover() == 0


def test_fork_error_plain_fork(store):
    d = store.root.dict("d")
    d["x"] = 0
    pid = os.fork()
    if pid == 0:  # the child: must be refused in C, before Go
        code = 1
        try:
            d["x"] = 1
        except shmstore.ForkError as e:
            code = 17 if "spawn" in str(e) else 2
        except BaseException:
            code = 3
        try:
            shmstore.open("other", dir=os.path.dirname(store.path))
        except shmstore.ForkError:
            pass
        else:
            code = 4
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 17
    assert d["x"] == 0


def test_fork_error_multiprocessing_fork(store):
    ctx = mp.get_context("fork")
    p = ctx.Process(target=helpers.touch_after_fork, args=(store.root,))
    p.start()
    p.join(30)
    assert p.exitcode == 17


def test_import_only_parent_may_fork(shm_dir):
    """A process that imported shmstore but opened nothing has no Go
    runtime yet: its fork children can open stores (the forkserver case)."""
    code = (
        "import os, sys, shmstore\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        f"    st = shmstore.open('importonly', dir={shm_dir!r}); st.root['x'] = 1; st.close(); os._exit(0)\n"
        "_, s = os.waitpid(pid, 0); sys.exit(os.WEXITSTATUS(s))\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=60).returncode == 0
    shmstore.remove("importonly", dir=shm_dir, force=True)
