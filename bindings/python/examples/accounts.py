"""200 shared Account objects; worker processes move money between them
in transactions while the main process checks that no money appears or
vanishes; the sum is checked at the end.

    make python
    PYTHONPATH=bindings/python /usr/bin/python3 bindings/python/examples/accounts.py [--procs 4] [--transfers 2000]

Workers are started with multiprocessing's 'spawn' method: a child made by
plain fork() of a process that opened a store cannot use it (ForkError).
"""
import argparse
import multiprocessing as mp
import os
import random
import tempfile
import time

import shmstore

N_ACCOUNTS = 200
START = 1000


class Account(shmstore.Object):
    """A bank account. Its fields live in shared memory; its methods live
    here, in the program."""

    owner: str
    balance: int

    def __init__(self, owner, balance=0):  # runs once, when the account is made
        self.owner = owner
        self.balance = balance

    def withdraw(self, amount):
        if amount > self.balance:
            raise ValueError(f"{self.owner} has {self.balance}, not {amount}")
        self.balance -= amount

    def deposit(self, amount):
        self.balance += amount


def worker(accounts, transfers, seed):
    """Moves money between random accounts: each transfer one transaction."""
    store = accounts._shm_store  # the pickled List reopened its store here
    rnd = random.Random(seed)

    @store.transaction  # runs again if another process changed what it read
    def transfer(i, j, amount):
        src, dst = accounts[i], accounts[j]
        src.withdraw(amount)  # a ValueError aborts: nothing is written
        dst.deposit(amount)

    done = refused = 0
    for _ in range(transfers):
        i, j = rnd.sample(range(len(accounts)), 2)
        try:
            transfer(i, j, rnd.randint(1, 200))
            done += 1
        except ValueError:
            refused += 1
    return done, refused


def total(store, accounts):
    return store.view(lambda: sum(a.balance for a in accounts))


def int_at_least(low):
    """An argparse type: an int of at least low (argparse says which
    argument is wrong, without a traceback)."""
    def parse(text):
        try:
            n = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if n < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {n}")
        return n
    return parse


def existing_dir(text):
    """An argparse type: a directory that exists (shmstore.open makes
    only the store's own directory in it)."""
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"no such directory: {text} (make it first)")
    return text


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int_at_least(1), default=4, help="worker processes (default 4)")
    ap.add_argument("--transfers", type=int_at_least(0), default=2000, help="per process (default 2000)")
    ap.add_argument("--dir", type=existing_dir, default=None,
                    help="the stores' directory, which must exist (default: a temporary one)")
    args = ap.parse_args()
    # the stores' directory: --dir, or a temporary one, removed at the end
    # (also after an error or Ctrl-C)
    with tempfile.TemporaryDirectory(dir="/dev/shm", prefix="shmstore-example-") as tmp:
        run(args.dir or tmp, args.procs, args.transfers)


def run(store_dir, procs, transfers):
    with shmstore.open("accounts", dir=store_dir) as store:
        @store.transaction
        def setup():
            # made inside the transaction: shared records, linked by the list
            store.root["accounts"] = [Account(f"owner{i:03d}", START) for i in range(N_ACCOUNTS)]

        setup()
        accounts = store.root["accounts"]
        expected = N_ACCOUNTS * START
        print(f"{len(accounts)} accounts, {total(store, accounts)} in all; "
              f"{procs} processes x {transfers} transfers")

        ctx = mp.get_context("spawn")
        t0 = time.monotonic()
        with ctx.Pool(procs) as pool:
            result = pool.starmap_async(worker, [(accounts, transfers, s) for s in range(procs)], chunksize=1)
            checks = wrong = 0
            while not result.ready():  # meanwhile: every snapshot adds up
                if total(store, accounts) != expected:
                    wrong += 1
                checks += 1
                time.sleep(0.01)
            counts = result.get()
        elapsed = time.monotonic() - t0
        done = sum(d for d, _ in counts)
        refused = sum(r for _, r in counts)
        final = total(store, accounts)
        richest = max(accounts, key=lambda a: a.balance)
        print(f"{done} transfers ({refused} refused: not enough money) in {elapsed:.2f}s; "
              f"{checks} snapshots meanwhile, {wrong} of them with another total")
        print(f"total at the end: {final} (expected {expected}); richest: {richest.owner} with {richest.balance}")
        store.check()  # raises if anything in the store is inconsistent
        if final != expected or wrong:
            raise SystemExit("money appeared or vanished")
        print("ok")

if __name__ == "__main__":
    main()
