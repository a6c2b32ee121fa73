"""Go and Python processes on one store: `shmctl bank` (Go worker
processes) and Python workers move money between the same accounts while
a Python reader checks the total, and bank checks it too."""
import json
import os
import subprocess

import helpers

from test_processes import SPAWN

N_ACCOUNTS = 20
START = 1000


def shmctl():
    """The Go command built by make (the Makefile passes SHMCTL)."""
    path = os.environ.get("SHMCTL") or os.path.join(os.path.dirname(__file__), "..", "..", "..", "bin", "shmctl")
    assert os.access(path, os.X_OK), f"{path}: build it first (make build), or set SHMCTL"
    return path


def test_go_and_python_transfer_together(store):
    store.root["accounts"] = {f"acct-{i:05d}": START for i in range(N_ACCOUNTS)}
    accounts = store.root["accounts"]
    args = helpers.store_args(store)
    bank = subprocess.Popen(
        [shmctl(), "--dir", args["dir"], "bank", args["name"], "--accounts", str(N_ACCOUNTS),
         "--procs", "2", "--duration", "2s", "--interval", "200ms", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        started, stop, results = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
        checker = SPAWN.Process(target=helpers.total_checker,
                                args=(accounts, N_ACCOUNTS * START, started, stop, results))
        checker.start()
        assert started.wait(30)
        workers = [SPAWN.Process(target=helpers.transfer_worker, args=(accounts, 2000, seed)) for seed in range(2)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
            assert w.exitcode == 0
        out, err = bank.communicate(timeout=60)
    finally:
        if bank.poll() is None:
            bank.kill()
            bank.wait()
    stop.set()
    checks, bad = results.get(timeout=30)
    checker.join(30)
    assert bank.returncode == 0, err
    report = json.loads(out)
    assert report["ok"] is True, out
    assert all(s["total"] == N_ACCOUNTS * START for s in report["samples"]), out
    assert sum(w["transfers"] for w in report["workers"]) > 0, "the Go workers transferred"
    assert bad == 0 and checks > 1
    assert sum(accounts.values()) == N_ACCOUNTS * START
