import os
import shutil
import tempfile
import uuid

import pytest

import helpers
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


@pytest.fixture
def procs(store):
    """Starts processes for a test (Procs) and ends those still running
    when it ends, before the store fixture checks and removes the store."""
    ps = helpers.Procs()
    yield ps
    ps.end()
