"""The examples run (small sizes)."""
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(HERE, "..", "examples")


@pytest.mark.parametrize("script,args", [
    ("accounts.py", ["--procs", "2", "--transfers", "200"]),
    ("producer_consumer.py", ["--jobs", "100", "--consumers", "2"]),
])
def test_example_runs(script, args, shm_dir):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    p = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), "--dir", shm_dir, *args],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.rstrip().endswith("ok")
