"""The Python process of `make demo`: it moves money between the accounts
that `shmctl bank` (Go worker processes) moves money between, on the same
store at the same time, and reads their total now and then; at the end it
says what it did.

    make demo       # runs it beside shmctl bank; or, by hand:
    bin/shmctl create demo
    PYTHONPATH=bindings/python /usr/bin/python3 bindings/python/examples/demo_bank.py demo &
    bin/shmctl bank demo

It waits for the accounts (the Dict "accounts" of the root, which bank
makes) without polling: a transaction that finds none calls
shmstore.retry() and sleeps until a commit, from Go, changes what it read.
"""
import argparse
import os
import random
import time

import shmstore


def wait_for_accounts(store):
    """The accounts, once some process has made them."""
    def ready():
        accounts = store.root.get("accounts")
        if accounts is None or len(accounts) == 0:
            shmstore.retry()  # sleeps until another commit changes the root's "accounts"
        return accounts
    return store.run(ready)


def existing_dir(text):
    """An argparse type: a directory that exists (shmstore.open makes
    only the store's own directory in it)."""
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"no such directory: {text} (make it first)")
    return text


def positive_float(text):
    """An argparse type: a number of seconds above 0."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", nargs="?", default="demo", help="the store's name (default demo)")
    ap.add_argument("--dir", type=existing_dir, default=None,
                    help="the stores' directory (default $SHMSTORE_DIR, else /dev/shm/shmstore)")
    ap.add_argument("--duration", type=positive_float, default=5.0, help="seconds of transfers (default 5)")
    args = ap.parse_args()
    me = f"python (pid {os.getpid()})"

    try:
        store = shmstore.open(args.store, dir=args.dir, create=False)
    except shmstore.NoStoreError:
        where = args.dir or os.environ.get("SHMSTORE_DIR") or "/dev/shm/shmstore"
        dir_flag = f"--dir {args.dir} " if args.dir else ""
        ap.error(f"no store {args.store!r} in {where}: make it first "
                 f"(bin/shmctl {dir_flag}create {args.store}, as make demo does), or name another store")
    with store:
        accounts = wait_for_accounts(store)
        keys = list(accounts.keys())

        def total():
            return store.view(lambda: sum(accounts.values()))  # one snapshot

        expected = total()
        print(f"{me}: found {len(keys)} accounts holding {expected} in store {args.store!r}")

        @store.transaction  # runs again when a Go worker changed what it read
        def transfer(a, b, amount):
            if accounts[a] < amount:
                return False  # declined: nothing written
            accounts[a] -= amount
            accounts[b] += amount
            return True

        rnd = random.Random()
        moved = declined = 0
        totals = []
        t0 = time.monotonic()
        next_check = t0
        while time.monotonic() - t0 < args.duration:
            a, b = rnd.sample(keys, 2)
            if transfer(a, b, rnd.randint(1, 100)):
                moved += 1
            else:
                declined += 1
            if time.monotonic() >= next_check:
                totals.append(total())
                next_check += 0.5
        final = total()
        wrong = [t for t in totals + [final] if t != expected]
        print(f"{me}: {moved} transfers beside the Go workers in {time.monotonic() - t0:.1f}s "
              f"({declined} declined: the source was short)")
        print(f"{me}: read the total {len(totals) + 1} times: "
              + ("always " + str(expected) if not wrong else f"WRONG {len(wrong)} times: {wrong[:5]}"))
        if wrong:
            raise SystemExit(1)
        print("ok")


if __name__ == "__main__":
    main()
