"""A producer process and consumer processes connected by a shared Queue.
Each consumer takes a job and records its result in the same transaction,
so a job is never lost or done twice, even if a consumer dies.

    make python
    PYTHONPATH=bindings/python /usr/bin/python3 bindings/python/examples/producer_consumer.py [--jobs 500] [--consumers 3]
"""
import argparse
import multiprocessing as mp
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--consumers", type=int, default=3)
    ap.add_argument("--dir", default=None)
    args = ap.parse_args()
    tmp = None
    if args.dir is None:
        tmp = tempfile.TemporaryDirectory(dir="/dev/shm", prefix="shmstore-example-")
        args.dir = tmp.name

    with shmstore.open("pipeline", dir=args.dir) as store:
        jobs = store.root.queue("jobs", maxsize=50)
        results = store.root.dict("results")
        ctx = mp.get_context("spawn")
        t0 = time.monotonic()
        procs = [ctx.Process(target=consumer, args=(jobs, results, f"consumer{i}"))
                 for i in range(args.consumers)]
        procs.append(ctx.Process(target=producer, args=(jobs, args.jobs, args.consumers)))
        for p in procs:
            p.start()
        for p in procs:
            p.join()
            assert p.exitcode == 0
        elapsed = time.monotonic() - t0
        by = {f"consumer{i}": 0 for i in range(args.consumers)}
        for r in results.values():
            by[r["by"]] = by.get(r["by"], 0) + 1
        for name, n in sorted(by.items()):
            print(f"{name} did {n} jobs")  # who was ready first takes most
        print(f"{len(results)} results in {elapsed:.2f}s; queue left with {jobs.qsize()} items")
        assert len(results) == args.jobs
        assert all(results[i]["square"] == i * i for i in range(args.jobs))
        store.check()
        print("ok")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
