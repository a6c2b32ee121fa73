"""A producer process and consumer processes connected by a shared Queue.
Each consumer takes a job and records its result in the same transaction,
so a job is never lost or done twice, even if a consumer dies.

    make python
    PYTHONPATH=bindings/python /usr/bin/python3 bindings/python/examples/producer_consumer.py [--jobs 500] [--consumers 3]
"""
import argparse
import multiprocessing as mp
import os
import tempfile
import time

import shmstore


def producer(jobs, n, consumers):
    for i in range(n):
        jobs.put({"id": i, "n": i})  # waits while the queue is full (maxsize)
    for _ in range(consumers):
        jobs.put(None)  # one stop sign each


def consumer(jobs, results, name):
    store = jobs._shm_store

    @store.transaction
    def take_one():
        job = jobs.get()  # waits while empty: the transaction sleeps, nothing held
        if job is None:
            return False
        results[job["id"]] = {"square": job["n"] ** 2, "by": name}  # commits with the get
        return True

    while take_one():
        pass


def existing_dir(text):
    """An argparse type: a directory that exists (shmstore.open makes
    only the store's own directory in it)."""
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"no such directory: {text} (make it first)")
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--consumers", type=int, default=3)
    ap.add_argument("--dir", type=existing_dir, default=None,
                    help="the stores' directory, which must exist (default: a temporary one)")
    args = ap.parse_args()
    if args.jobs < 0 or args.consumers < 1:
        ap.error("--jobs must be 0 or more, --consumers 1 or more")
    # the stores' directory: --dir, or a temporary one, removed at the end
    # (also after an error or Ctrl-C)
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="shmstore-example-") as tmp:
        run(args.dir or tmp, args.jobs, args.consumers)


def run(store_dir, n_jobs, n_consumers):
    with shmstore.open("pipeline", dir=store_dir) as store:
        jobs = store.root.queue("jobs", maxsize=50)
        results = store.root.dict("results")
        ctx = mp.get_context("spawn")
        t0 = time.monotonic()
        procs = [ctx.Process(target=consumer, args=(jobs, results, f"consumer{i}"), name=f"consumer{i}")
                 for i in range(n_consumers)]
        procs.append(ctx.Process(target=producer, args=(jobs, n_jobs, n_consumers), name="producer"))
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        elapsed = time.monotonic() - t0
        by = {f"consumer{i}": 0 for i in range(n_consumers)}
        for r in results.values():
            by[r["by"]] = by.get(r["by"], 0) + 1
        for name, n in sorted(by.items()):
            print(f"{name} did {n} jobs")  # who was ready first takes most
        print(f"{len(results)} results in {elapsed:.2f}s; queue left with {jobs.qsize()} items")
        store.check()  # raises if anything in the store is inconsistent
        failed = [f"{p.name} (exit {p.exitcode})" for p in procs if p.exitcode != 0]
        if failed:
            raise SystemExit("failed: " + ", ".join(failed))
        if len(results) != n_jobs or any(results[i]["square"] != i * i for i in range(n_jobs)):
            raise SystemExit("a job was lost or done wrong")
        print("ok")

if __name__ == "__main__":
    main()
