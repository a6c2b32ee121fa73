"""The benchmark script runs (bench/bench.py --quick: small sizes, one
repetition) and prints its one table: every row, a verdict per target."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(HERE, "..", "bench", "bench.py")


def test_bench_quick_prints_one_table():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    p = subprocess.run([sys.executable, BENCH, "--quick"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout
    for row in ("Dict get, own transaction", "Dict set, own transaction", "in one transaction",
                "Counter.add(1), 2 processes", "c += 1 in store.run", "Queue round trip, p50"):
        assert row in out, out
    verdicts = out.count("target met") + out.count("target missed") + out.count("no peer")
    assert verdicts == 8, out  # get: 2 + 1 in a transaction; set: 1; three counters; the queue
    assert out.count("load average") == 2 and "floor:" in out
