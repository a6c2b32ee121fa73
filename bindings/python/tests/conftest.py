import multiprocessing as mp
import os
import shutil
import subprocess
import tempfile
import uuid

import pytest

import shmstore

# Hooks for later suites (Go+Python mixed processes, benchmarks) live in
# helpers.py: store_args(store) gives what another process needs to open
# the same store.


@pytest.fixture(scope="session")
def shm_dir():
    d = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None, prefix="shmstore-pytest-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def store(shm_dir, request):
    """A fresh store, checked (store.check()) and removed at the end."""
    name = "t-" + request.node.name[:40].replace("[", "-").replace("]", "").replace("/", "-") + "-" + uuid.uuid4().hex[:6]
    st = shmstore.open(name, dir=shm_dir)
    yield st
    if not st.closed:
        st.check()
        st.close()
    shmstore.remove(name, dir=shm_dir, force=True)


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
                p.kill()  # by pid, and only while not reaped
            p.communicate(timeout=30)  # reaps it, closes its pipes


@pytest.fixture
def procs(store):
    """Starts processes for a test (Procs) and ends those still running
    when it ends, before the store fixture checks and removes the store."""
    ps = Procs()
    yield ps
    ps.end()
