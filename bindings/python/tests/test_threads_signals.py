"""Threads of one process running their own transactions, and Ctrl-C
ending a blocking wait promptly with nothing left held."""
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

import helpers


def test_threads_run_their_own_transactions(store):
    r = store.root
    r["n"] = 0
    c = r.counter("c")
    errors = []

    @store.transaction
    def inc():
        r["n"] = r["n"] + 1  # conflicts between threads: re-run

    def work():
        try:
            for _ in range(300):
                inc()
                c.add_blind(1)
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert r["n"] == 1200 and c.value == 1200


def test_threads_each_have_their_current_transaction(store):
    r = store.root
    r["a"] = 0
    in_tx, go = threading.Event(), threading.Event()
    seen = {}

    def other():
        in_tx.wait()
        seen["other"] = r["a"]  # its own small transaction: the committed 0
        r["b"] = 1
        go.set()

    t = threading.Thread(target=other)
    t.start()
    store.begin()
    r["a"] = 5  # not visible to the other thread before commit
    in_tx.set()
    go.wait(10)
    store.commit()
    t.join()
    assert seen["other"] == 0 and r["a"] == 5 and r["b"] == 1


def test_blocking_get_releases_the_gil(store):
    q = store.root.queue("q")
    got = []
    t = threading.Thread(target=lambda: got.append(q.get(timeout=10)))
    t.start()
    n = 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.2:  # this thread runs meanwhile
        n += 1
    q.put("item")
    t.join(10)
    assert got == ["item"] and n > 1000


def interrupt(store, main):
    """Runs helpers.main(name, dir) in another process; once it says
    "ready" (and has had 0.3 s to start waiting), sends it SIGINT, and
    checks that it ends promptly with KeyboardInterrupt."""
    code = f"import helpers, sys; helpers.{main}(sys.argv[1], sys.argv[2])"
    args = helpers.store_args(store)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    p = subprocess.Popen([sys.executable, "-c", code, args["name"], args["dir"]],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        time.sleep(0.3)  # now waiting
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
    assert "interrupted" in out and "KeyboardInterrupt" in err
    assert p.returncode != 0 and elapsed < 5, (elapsed, err)  # generous: CI machines are shared


def _wakeups(pid):
    """Voluntary context switches of every thread of pid so far."""
    n = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        n += int(line.split()[1])
        except FileNotFoundError:
            pass  # the thread ended since the listing
    return n


def test_a_blocking_get_sleeps(store):
    """A process blocked in get on an empty queue wakes to check for
    Ctrl-C every 100 ms, and the Go runtime's monitor a few dozen times
    after each: some 600 wake-ups a second in all. The engine's 5 ms
    ticker, which these restarts kept running, added 800 more."""
    store.root.queue("jobs")
    args = helpers.store_args(store)
    code = "import helpers, sys; helpers.blocked_get_main(sys.argv[1], sys.argv[2])"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    p = subprocess.Popen([sys.executable, "-c", code, args["name"], args["dir"]],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        time.sleep(1)  # waiting, and any ticker stopped
        w0 = _wakeups(p.pid)
        time.sleep(2)
        woke = (_wakeups(p.pid) - w0) / 2
    finally:
        p.kill()
        p.wait()
    print(f"a blocked get woke {woke:.0f} times a second")
    assert woke < 1000, woke


def test_ctrl_c_ends_a_blocking_get(store):
    q = store.root.queue("jobs")
    interrupt(store, "blocked_get_main")
    # nothing held: the queue works, the store is clean
    q.put(1)
    assert q.get(timeout=5) == 1
    store.check()


def test_ctrl_c_ends_a_blocking_get_in_an_explicit_transaction(store):
    q = store.root.queue("jobs")
    interrupt(store, "blocked_explicit_get_main")
    assert "x" not in store.root and store.root["after"] == "outside"
    q.put(1)
    assert q.get(timeout=5) == 1
    store.check()


@pytest.mark.parametrize("main", ["blocked_begin_main", "blocked_op_main"])
def test_ctrl_c_ends_a_wait_for_a_transaction_slot(store, main):
    interrupt(store, main)
    assert "x" not in store.root
    store.root["x"] = 1
    store.check()


@pytest.mark.parametrize("value", [[1], 1], ids=["transaction", "one-shot"])
def test_a_begin_waits_for_a_free_slot(store, value):
    release = threading.Timer(0.2, helpers.hold_slots(store, 16))
    release.start()
    t0 = time.monotonic()
    store.root["x"] = value  # its own transaction: waits for a slot
    assert time.monotonic() - t0 >= 0.15
    assert store.root["x"] == value
    release.join()  # every holder done: the store closes after the test


def test_queue_timeout_across_threads(store):
    q = store.root.queue("q")
    t0 = time.monotonic()
    try:
        q.get(timeout=0.3)
    except queue.Empty:
        pass
    assert 0.25 < time.monotonic() - t0 < 10


def test_starved_view_and_a_writer_thread_do_not_deadlock(store):
    args = helpers.store_args(store)
    code = "import helpers, sys; helpers.starved_view_main(sys.argv[1], sys.argv[2])"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    p = subprocess.run([sys.executable, "-c", code, args["name"], args["dir"]],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert int(p.stdout.split()[1]) >= 2
