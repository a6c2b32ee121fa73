"""The examples run (small sizes); demo_bank.py beside shmctl bank."""
import os
import subprocess
import sys

import pytest

import helpers

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "examples")
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))  # the package in place, as the tests use it


@pytest.mark.parametrize("script,args,says", [
    ("accounts.py", ["--procs", "2", "--transfers", "200"],
     ["200 accounts, 200000 in all; 2 processes x 200 transfers", "0 of them with another total",
      "total at the end: 200000 (expected 200000)"]),
    ("producer_consumer.py", ["--jobs", "100", "--consumers", "2"], ["100 results in", "queue left with 0 items"]),
])
def test_example_runs(script, args, says, shm_dir):
    p = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), "--dir", shm_dir, *args],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    for s in says:
        assert s in p.stdout, p.stdout
    assert p.stdout.rstrip().endswith("ok")


@pytest.mark.parametrize("script,args,says", [
    ("accounts.py", ["--procs", "0"], "argument --procs: must be at least 1, not 0"),
    ("accounts.py", ["--procs", "two"], "argument --procs: 'two' is not a whole number"),
    ("accounts.py", ["--transfers", "-1"], "argument --transfers: must be at least 0, not -1"),
    ("accounts.py", ["--dir", "{missing}"], "argument --dir: no such directory: {missing} (make it first)"),
    ("producer_consumer.py", ["--dir", "{missing}"], "argument --dir: no such directory: {missing}"),
    ("producer_consumer.py", ["--consumers", "0"], "--consumers 1 or more"),
    ("demo_bank.py", ["nosuch", "--dir", "{dir}"],
     "no store 'nosuch' in {dir}: make it first (bin/shmctl --dir {dir} create nosuch, as make demo does)"),
    ("demo_bank.py", ["demo", "--dir", "{missing}"], "argument --dir: no such directory: {missing}"),
    ("demo_bank.py", ["demo", "--duration", "0"], "argument --duration: must be more than 0, not 0"),
])
def test_example_refuses_bad_arguments(script, args, says, shm_dir):
    """A wrong argument is argparse's error (usage, the message, exit 2),
    never a traceback; nothing runs."""
    where = {"dir": shm_dir, "missing": os.path.join(shm_dir, "no", "such")}
    p = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), *[a.format(**where) for a in args]],
                       capture_output=True, text=True, env=ENV, timeout=60)
    assert p.returncode == 2 and p.stdout == "", p.stdout + p.stderr
    assert "Traceback" not in p.stderr and p.stderr.startswith("usage: "), p.stderr
    assert f"{script}: error: " in p.stderr and says.format(**where) in p.stderr, p.stderr


@pytest.mark.mixed
def test_demo_bank_beside_shmctl_bank(store, procs):
    """make demo's Python process: it waits in Retry for the accounts that
    shmctl bank makes (a Go commit wakes it), then transfers beside bank's
    Go workers; both see the total unchanged throughout."""
    where = helpers.store_args(store)
    py = procs.popen([sys.executable, os.path.join(EXAMPLES, "demo_bank.py"), where["name"], "--dir", where["dir"],
                      "--duration", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    helpers.wait_retrying(store, py.pid)
    bank = helpers.start_shmctl(procs, store, "bank", "--procs", "2", "--duration", "1s")
    bank_out, bank_err = bank.communicate(timeout=60)
    assert bank.returncode == 0, bank_out + bank_err
    assert "all" in bank_out and "totals were 100000: ok" in bank_out, bank_out
    out, err = py.communicate(timeout=60)
    assert py.returncode == 0, out + err
    lines = out.splitlines()
    assert f"python (pid {py.pid}): found 100 accounts holding 100000" in lines[0], out
    moved = int(lines[1].split(": ")[1].split()[0])
    assert moved > 0, out
    assert lines[2].endswith("always 100000") and lines[3] == "ok", out
    assert sum(store.root["accounts"].values()) == 100000
    store.check()
