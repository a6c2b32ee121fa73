"""Values, errors, containers, records and transactions in one process."""
import copy
import dataclasses
import os
import pathlib
import pickle
import queue
import subprocess
import sys
import threading
import time

import pytest

import shmstore


def test_scalars_round_trip(store):
    r = store.root
    vals = {"none": None, "t": True, "f": False, "i": -(2**63), "j": 2**63 - 1, "fl": 1.5,
            "s": "héllo", "b": b"\x00\xff", "e": "", "eb": b""}
    for k, v in vals.items():
        r[k] = v
    for k, v in vals.items():
        got = r[k]
        assert got == v and type(got) is type(v), k


def test_int64_bounds(store):
    r = store.root
    with pytest.raises(OverflowError):
        r["x"] = 2**63
    with pytest.raises(OverflowError):
        r[2**64] = 1
    assert "x" not in r
    assert 2**64 not in r and r.get(2**64) is None and r.pop(2**64, "d") == "d"
    with pytest.raises(KeyError):
        r[2**64]


def test_errors_python_users_expect(store):
    r = store.root
    with pytest.raises(KeyError):
        r["missing"]
    with pytest.raises(KeyError):
        del r["missing"]
    with pytest.raises(shmstore.TypeMismatch, match=r"^cannot store a value of type 'object': values are None"):
        r["x"] = object()
    with pytest.raises(shmstore.TypeMismatch, match=r"^cannot store a value of type 'set'"):
        r["x"] = {1}
    with pytest.raises(TypeError, match=r"^cannot pickle this Counter: it is not in a store yet"):
        pickle.dumps(shmstore.Counter(1))
    with pytest.raises(TypeError):  # TypeMismatch is a TypeError
        r[1.5] = 1
    assert 1.5 not in r
    lst = r.list("l")
    with pytest.raises(IndexError):
        lst[0]
    with pytest.raises(IndexError):
        lst.pop()
    with pytest.raises(IndexError):
        lst.pop(0)
    assert issubclass(shmstore.StoreFullError, MemoryError)
    assert issubclass(shmstore.TypeMismatch, TypeError)
    for e in (shmstore.ConflictError, shmstore.StaleObjectError, shmstore.StoreFullError,
              shmstore.TypeMismatch, shmstore.DamagedStoreError, shmstore.ClosedError,
              shmstore.ForkError):
        assert issubclass(e, shmstore.Error)


def test_dict_mapping_api(store):
    d = store.root.dict("d")
    d.update({"a": 1, "b": 2}, c=3)
    assert d == {"a": 1, "b": 2, "c": 3}
    assert d != {"a": 1}
    assert sorted(d) == ["a", "b", "c"]
    assert sorted(d.keys()) == ["a", "b", "c"]
    assert sorted(d.values()) == [1, 2, 3]
    assert sorted(d.items()) == [("a", 1), ("b", 2), ("c", 3)]
    assert ("a", 1) in d.items() and "a" in d.keys()
    assert d.get("zz") is None and d.get("zz", 5) == 5
    assert d.setdefault("a", 9) == 1 and d.setdefault("z", 9) == 9 and d["z"] == 9
    assert d.pop("z") == 9 and d.pop("z", "gone") == "gone"
    with pytest.raises(KeyError):
        d.pop("z")
    k, v = d.popitem()
    assert k not in d and len(d) == 2
    d.clear()
    assert len(d) == 0 and not d and d == {}
    for key in (None, True, 7, -1, "s", b"b"):
        d[key] = repr(key)
    assert {k: d[k] for k in d} == {None: "None", True: "True", 7: "7", -1: "-1", "s": "'s'", b"b": "b'b'"}


def test_list_sequence_api(store):
    lst = store.root.list("l")
    lst.extend([1, 2, 3])
    lst.append(4)
    lst.insert(0, 0)
    lst.insert(-1, 3.5)
    lst.insert(100, 5)
    lst.insert(-100, -1)
    assert lst == [-1, 0, 1, 2, 3, 3.5, 4, 5]
    assert lst[-1] == 5 and lst[-8] == -1
    assert lst[1:3] == [0, 1] and lst[::-3] == [5, 3, 0]
    lst[1:3] = ["a", "b", "c"]
    assert lst == [-1, "a", "b", "c", 2, 3, 3.5, 4, 5]
    del lst[1:4]
    assert lst == [-1, 2, 3, 3.5, 4, 5]
    lst[::2] = [10, 30, 50]
    assert lst == [10, 2, 30, 3.5, 50, 5]
    with pytest.raises(ValueError):
        lst[::2] = [1]
    assert lst.pop(0) == 10 and lst.pop() == 5 and lst.pop(1) == 30
    lst.remove(50)
    assert 2 in lst and lst.index(3.5) == 1 and lst.count(2) == 1
    lst.reverse()
    lst += [9]
    lst.sort()
    assert lst == sorted(lst.to_python())
    lst.clear()
    assert lst == [] and len(lst) == 0
    lst.extend([1, 2])
    lst.extend(lst)  # the items as they were
    store.root["dd"] = {"a": 1}
    lst.extend(store.root["dd"])  # a Dict extends with its keys
    lst.append(bytearray(b"ba"))
    assert lst == [1, 2, 1, 2, "a", b"ba"]


def test_containers_copied_in_live_out(store):
    r = store.root
    src = {"x": [1, {"y": (2, 3)}]}
    r["tree"] = src
    src["x"].append("local only")
    t = r["tree"]
    assert isinstance(t, shmstore.Dict) and isinstance(t["x"], shmstore.List)
    t["x"][1]["y"].append(4)  # a live proxy: the change is in the store
    assert r["tree"].to_python() == {"x": [1, {"y": [2, 3, 4]}]}


def test_aliasing_and_cycles(store):
    r = store.root
    shared = [1]
    r["a"] = {"p": shared, "q": shared}
    a = r["a"]
    a["p"].append(2)
    assert a["q"] == [1, 2] and a["p"]._shm_same(a["q"])
    r["b"] = a["p"]  # storing a proxy links the same object
    r["b"].append(3)
    assert a["q"] == [1, 2, 3]
    c = {"name": "c"}
    c["self"] = c
    r["c"] = c
    out = r["c"].to_python()
    assert out["self"] is out and out["name"] == "c"
    cp = r.to_python()
    assert cp["a"]["p"] is cp["a"]["q"] is cp["b"]


def test_counter(store):
    c = store.root.counter("hits")
    assert c.value == 0
    assert c.add(5) == 5
    c += 3
    c -= 1
    assert c.value == 7 and int(c) == 7 and c == 7
    store.root["hits2"] = shmstore.Counter(10)
    assert store.root["hits2"].add(1) == 11
    with pytest.raises(OverflowError):
        c.add(2**63)


def test_counter_overflow_keeps_the_value(store):
    c = store.root.counter("big")
    assert c.add(2**63 - 2) == 2**63 - 2
    with pytest.raises(OverflowError):
        c.add(2)
    with pytest.raises(OverflowError):
        c += 2
    with pytest.raises(OverflowError):
        c.add_blind(2)  # found at commit: it never read the value
    store.begin()
    big = store.root.counter("big")
    big.add_blind(1)
    big.add_blind(1)
    with pytest.raises(OverflowError):
        store.commit()  # the commit failed: nothing written, the transaction over
    low = store.root.counter("low")
    low.add(-(2**63))
    with pytest.raises(OverflowError):
        low -= 1
    assert c.value == 2**63 - 2 and low.value == -(2**63)
    assert c.add(1) == 2**63 - 1


def test_queue_single_process(store):
    q = store.root.queue("q", maxsize=2)
    assert q.maxsize == 2 and q.empty() and not q.full()
    q.put(1)
    q.put_nowait({"two": 2})
    assert q.full() and q.qsize() == 2
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    t0 = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.2)
    assert 0.15 < time.monotonic() - t0 < 2
    assert q.get() == 1
    assert q.get_nowait() == {"two": 2}
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.1)
    with pytest.raises(queue.Empty):
        q.get(block=False)
    store.root["q2"] = shmstore.Queue()
    store.root["q2"].put("x")
    assert store.root["q2"].get() == "x"


def test_queue_to_python_copies_without_taking(store):
    r = store.root
    q = r.queue("q")
    q.put("a")
    q.put({"b": [1, 2]})
    q.put(3)
    assert q.to_python() == ["a", {"b": [1, 2]}, 3]
    r["holder"] = {"q": q, "n": 1}
    assert r["holder"].to_python() == {"q": ["a", {"b": [1, 2]}, 3], "n": 1}
    assert q.qsize() == 3  # nothing taken
    assert q.get() == "a"
    assert q.to_python() == [{"b": [1, 2]}, 3]


class Account(shmstore.Object):
    owner: str
    balance: int = 0

    def __init__(self, owner, balance=0):
        self.owner = owner
        self.balance = balance
        self.inits = (self.inits or 0) + 1  # counts __init__ runs

    inits: int

    def deposit(self, n):
        self.balance += n


@shmstore.record
class Point:
    x: int = 0
    y: int = 0
    tags: list = dataclasses.field(default_factory=list)


def test_records(store):
    r = store.root
    a = Account("bob", 10)  # outside a transaction: kept here until stored
    assert a._shm_id is None and a.balance == 10
    r["bob"] = a
    assert a._shm_id is not None  # now bound to the shared record
    a.deposit(5)
    b = r["bob"]
    assert type(b) is Account and b.balance == 15 and b.owner == "bob" and b.inits == 1
    assert b == a and b._shm_same(a)
    with pytest.raises(AttributeError):
        b.nosuchfield = 1

    @store.transaction
    def make():
        acc = Account("alice")  # made in the transaction
        r["alice"] = acc
        return acc

    alice = make()
    assert alice.balance == 0 and alice.inits == 1 and r["alice"].owner == "alice"
    p = Point(1, 2)
    r["p"] = p
    p.tags.append("t")
    assert r["p"] == Point(1, 2, ["t"]) and r["p"].tags == ["t"]
    cp = r["bob"].to_python()
    assert type(cp) is Account and cp._shm_id is None and cp.balance == 15
    assert "balance=15" in repr(r["bob"])
    assert pickle.loads(pickle.dumps(alice))._shm_same(alice)


def test_records_without_init_take_fields_as_arguments(store):
    class Acct(shmstore.Object, name="test.ArgsAcct"):
        owner: str
        balance: int = 0

    class Savings(Acct, name="test.ArgsSavings"):
        rate: float = 0.5

    a = Acct("ann", 1)
    assert (a.owner, a.balance) == ("ann", 1)
    a = Acct(owner="ann", balance=3)
    assert (a.owner, a.balance) == ("ann", 3)
    a = Acct("ann", balance=4)
    assert (a.owner, a.balance) == ("ann", 4)
    a = Acct("ann")
    assert (a.owner, a.balance) == ("ann", 0)  # not given: the class default
    a = Acct()
    assert (a.owner, a.balance) == (None, 0)  # no default: None, as documented
    s = Savings("bo", 2, 0.25)  # the base's fields first
    assert (s.owner, s.balance, s.rate) == ("bo", 2, 0.25)
    assert (Savings(rate=1.0).owner, Savings(rate=1.0).rate) == (None, 1.0)

    with pytest.raises(TypeError, match=r"Acct\(\) takes at most 2 positional arguments .* but 4 were given"):
        Acct(1, 2, 3, 4)
    with pytest.raises(TypeError, match=r"Acct\(\) got an unexpected keyword argument 'nofield'"):
        Acct(nofield=1)
    with pytest.raises(TypeError, match=r"Acct\(\) got multiple values for argument 'owner'"):
        Acct("ann", owner="bob")
    with pytest.raises(TypeError, match=r"Object\(\) takes no arguments"):
        shmstore.Object(1)

    r = store.root
    r["out"] = Acct("ann", 3)  # made outside a transaction, stored with its fields
    r["out2"] = Savings(owner="cy", rate=2.0)

    @store.transaction
    def make():
        r["in"] = Acct(owner="bo", balance=7)  # made in the transaction

    make()
    out, out2, inside = r["out"], r["out2"], r["in"]
    assert type(out) is Acct and (out.owner, out.balance) == ("ann", 3)
    assert type(out2) is Savings and (out2.owner, out2.balance, out2.rate) == ("cy", 0, 2.0)
    assert (inside.owner, inside.balance) == ("bo", 7)
    # read back, copied out and unpickled with their fields (test_records: no __init__ runs)
    cp = out.to_python()
    assert type(cp) is Acct and (cp.owner, cp.balance) == ("ann", 3)
    back = pickle.loads(pickle.dumps(out))
    assert back._shm_same(out) and (back.owner, back.balance) == ("ann", 3)

    @store.transaction
    def bad():
        r["bad"] = Acct(nofield=1)

    with pytest.raises(TypeError, match="nofield"):
        bad()
    assert "bad" not in r  # the transaction ended: nothing written


def test_records_of_unknown_classes(store):
    class Point(shmstore.Object, name="test.GeoPoint"):
        x: int
        y: int

    store.root["p"] = Point()
    store.root["p"].x = 3
    del shmstore._record_classes["test.GeoPoint"]  # as in a process without the class
    try:
        g = store.root["p"]
        assert type(g) is shmstore.Object and g.x == 3 and g.y is None
        g.y = 4
        with pytest.raises(AttributeError):
            g.z
        copy = g.to_python()
        assert copy._shm_class_ == "test.GeoPoint" and copy.x == 3 and copy.y == 4
        store.root["copy"] = copy  # stored again under its own class name
    finally:
        shmstore._record_classes["test.GeoPoint"] = Point
    back = store.root["copy"]
    assert type(back) is Point and (back.x, back.y) == (3, 4)


def test_copy_is_the_handle_deepcopy_a_plain_copy(store):
    r = store.root
    r["d"] = {"a": [1, 2], "c": shmstore.Counter(3)}
    r["l"] = [1, {"x": 1}]
    r["q"] = shmstore.Queue(5)
    r["q"].put("item")
    r["bob"] = Account("bob", 10)
    for key in ("d", "l", "q", "bob"):
        proxy = r[key]
        assert copy.copy(proxy) is proxy, key  # a handle: the same shared object
        plain = copy.deepcopy(proxy)
        assert not isinstance(plain, (shmstore.Dict, shmstore.List, shmstore.Queue)), key
        assert getattr(plain, "_shm_store", None) is None, key  # not a proxy of the store
    c = r["d"]["c"]
    assert copy.copy(c) is c and copy.deepcopy(c) == 3 and type(copy.deepcopy(c)) is int
    d = copy.deepcopy(r["d"])
    assert type(d) is dict and d == {"a": [1, 2], "c": 3} == r["d"].to_python()
    d["a"].append(3)  # the copy is the caller's own: the store keeps its value
    assert r["d"]["a"] == [1, 2]
    assert copy.deepcopy(r["q"]) == ["item"] and r["q"].qsize() == 1  # read, not taken
    bob = copy.deepcopy(r["bob"])
    assert type(bob) is Account and bob._shm_id is None and bob.balance == 10
    bob.balance = 99
    assert r["bob"].balance == 10
    # inside a structure: each proxy copied out, one copy per proxy object
    lst = r["l"]
    nested = copy.deepcopy({"twice": [lst, lst]})
    assert nested == {"twice": [[1, {"x": 1}]] * 2} and nested["twice"][0] is nested["twice"][1]
    assert store.view(lambda: copy.deepcopy(r["d"])) == {"a": [1, 2], "c": 3}


def test_copy_of_objects_not_stored_yet(store):
    acct = Account("ann", 5)
    for cp in (copy.copy(acct), copy.deepcopy(acct)):
        assert type(cp) is Account and cp is not acct and cp._shm_store is None
        assert (cp.owner, cp.balance, cp.inits) == ("ann", 5, 1)  # __init__ did not run again
        cp.balance = 6
        assert acct.balance == 5  # its own state
    p = Point(1, 2, ["a"])
    assert copy.copy(p).tags is p.tags  # shallow
    deep = copy.deepcopy(p)
    assert deep == p and deep.tags is not p.tags
    for obj, value in ((shmstore.Counter(4), 4), (shmstore.Queue(7), 7)):
        for cp in (copy.copy(obj), copy.deepcopy(obj)):
            assert type(cp) is type(obj) and cp is not obj and cp._shm_store is None
            assert cp._shm_local == value
    store.root["copies"] = [copy.copy(shmstore.Counter(4)), copy.deepcopy(acct)]
    assert store.root["copies"][0].value == 4 and store.root["copies"][1].owner == "ann"
    assert acct._shm_store is None  # only its copy was stored


def test_transaction_reruns_and_returns(store):
    r = store.root
    r["n"] = 0
    runs = []

    @store.transaction
    def inc(by):
        runs.append(1)
        v = r["n"]
        if len(runs) == 1:  # another commit between our read and our commit
            t = threading.Thread(target=lambda: r.__setitem__("n", 100))
            t.start()
            t.join()
        r["n"] = v + by
        return r["n"]

    assert inc(1) == 101 and len(runs) == 2


def test_attempts_block_form_and_abort_on_exception(store):
    r = store.root
    r["n"] = 1
    for attempt in store.attempts():
        with attempt:
            r["n"] = r["n"] + 1
    assert r["n"] == 2
    with pytest.raises(ZeroDivisionError):
        for attempt in store.attempts():
            with attempt:
                r["n"] = 50
                1 / 0
    assert r["n"] == 2  # nothing written


def test_view_is_read_only(store):
    store.root["x"] = 1
    assert store.view(lambda: store.root["x"] + 1) == 2
    with pytest.raises(shmstore.ReadOnlyError):
        store.view(lambda: store.root.__setitem__("x", 2))


def test_open_read_only(store):
    store.root["x"] = 1
    name, d = store.name, os.path.dirname(store.path)
    for kw in ({}, {"create": False}):
        with shmstore.open(name, dir=d, read_only=True, **kw) as ro:
            assert ro.read_only and not store.read_only and "read-only" in repr(ro)
            ro.check()  # without recovering: a read-only store is not attached
            ro.check(recover=False)
            assert ro.stats()["used_bytes"] > 0
            for op in (lambda: ro.root, lambda: ro.view(lambda: None), lambda: ro.run(lambda: None),
                       lambda: next(ro.attempts()), ro.begin, ro.recover, lambda: ro.get("x")):
                with pytest.raises(shmstore.ReadOnlyError, match="opened with read_only=True") as e:
                    op()
                assert e.value.code == shmstore.ReadOnlyError.code
            # a proxy unpickled meanwhile binds to the store that runs transactions
            assert pickle.loads(pickle.dumps(store.root))._shm_store is store
        assert ro.closed
    with pytest.raises(shmstore.BadArgumentError, match="exclusive"):
        shmstore.open(name, dir=d, read_only=True, exclusive=True)
    with pytest.raises(shmstore.NoStoreError):
        shmstore.open(name + "-missing", dir=d, read_only=True)  # never made
    assert not os.path.exists(os.path.join(d, name + "-missing"))
    store.root["x"] = 2  # the store itself is as usable as before
    assert store.root["x"] == 2


def test_explicit_begin_commit_abort(store):
    r = store.root
    r["n"] = 0
    store.begin()
    r["n"] = 1
    store.abort()
    assert r["n"] == 0
    store.begin()
    r["n"] = 2
    store.commit()
    assert r["n"] == 2
    store.begin()
    v = r["n"]
    t = threading.Thread(target=lambda: r.__setitem__("n", 100))
    t.start()
    t.join()
    r["n"] = v + 1
    with pytest.raises(shmstore.ConflictError):
        store.commit()
    assert r["n"] == 100
    with pytest.raises(shmstore.TransactionClosedError):
        store.commit()


def test_misuse_raises_usage_error(store):
    """Misuse of state is a UsageError (a RuntimeError too), each saying
    what to do; no call of the library failed."""
    assert issubclass(shmstore.UsageError, shmstore.Error) and issubclass(shmstore.UsageError, RuntimeError)
    assert issubclass(shmstore.TransactionClosedError, shmstore.UsageError)
    with pytest.raises(shmstore.UsageError, match=r"retry\(\) outside a transaction .*call it in a transaction's body"):
        shmstore.retry()
    store.begin()
    try:
        with pytest.raises(shmstore.UsageError, match=r"runs in this thread: commit\(\) or abort\(\) it first") as e:
            store.begin()
        assert e.value.code == shmstore._c.SHM_ERR_OTHER
        with pytest.raises(shmstore.UsageError, match=r"or_else\(\) needs a transaction that can run again"):
            store.or_else(lambda: 1, lambda: 2)
    finally:
        store.abort()
    with pytest.raises(RuntimeError, match="no transaction begun with begin"):  # TransactionClosedError
        store.commit()
    with pytest.raises(shmstore.UsageError, match="this Queue is not stored yet: assign it into a stored Dict"):
        shmstore.Queue(2).put(1)
    # every class has its code: one raised by Python code too
    assert shmstore.TransactionClosedError.code == shmstore._c.SHM_ERR_TX_CLOSED
    assert shmstore.NotFoundError.code == shmstore._c.SHM_ERR_NOT_FOUND
    assert shmstore.Error.code == shmstore.UsageError.code == shmstore._c.SHM_ERR_OTHER


def test_counter_and_queue_not_stored_yet_raise_usage_error(store):
    """Every operation on a Counter or Queue not stored yet raises
    UsageError saying how to store it (a Counter used to count in the
    proxy, a Queue's qsize said 0); copying one and storing it still work."""
    c, q = shmstore.Counter(3), shmstore.Queue(2)

    def iadd():
        x = c
        x += 1

    def isub():
        x = c
        x -= 1

    for name, op in (("Counter", lambda: c.add(1)), ("Counter", lambda: c.add_blind(1)),
                     ("Counter", iadd), ("Counter", isub), ("Counter", lambda: c.value),
                     ("Counter", lambda: int(c)), ("Counter", lambda: [0][c]),
                     ("Counter", lambda: c == 3), ("Counter", c.to_python),
                     ("Queue", lambda: q.put(1)), ("Queue", lambda: q.put_nowait(1)),
                     ("Queue", lambda: q.get()), ("Queue", q.get_nowait), ("Queue", q.qsize),
                     ("Queue", q.empty), ("Queue", q.full), ("Queue", lambda: q.maxsize),
                     ("Queue", q.to_python)):
        with pytest.raises(shmstore.UsageError,
                           match=rf"^this {name} is not stored yet: assign it into a stored Dict, "
                                 rf"List or record first"):
            op()
    assert c._shm_local == 3 and q._shm_local == 2  # nothing changed
    assert "not stored yet" in repr(c) and "not stored yet" in repr(q)
    assert copy.copy(c)._shm_local == 3 and copy.deepcopy(q)._shm_local == 2
    store.root["c"] = c
    store.root.list("l").append(q)
    assert c.add(1) == 4 and store.root["c"].value == 4
    c += 1
    q.put("x")
    assert int(c) == 5 and q.qsize() == 1 and q.maxsize == 2 and store.root["l"][0].get() == "x"


def test_explicit_transaction_that_waits(store):
    """A wait in a transaction begun with begin() (nothing can run it
    again) waits for a change to what it read, then ends it: ConflictError,
    nothing written; the thread's next operations on the store raise
    TransactionClosedError instead of running outside it, until begin(),
    commit() (ConflictError) or abort()."""
    r = store.root
    q = r.queue("q")
    r["n"] = 0
    store.begin()
    r["n"] = 1
    put = threading.Timer(0.2, lambda: q.put("job"))
    put.start()
    t0 = time.monotonic()
    with pytest.raises(shmstore.ConflictError):
        q.get()  # empty: waits for the put
    put.join()
    assert time.monotonic() - t0 >= 0.15, "it waited for the put"
    with pytest.raises(shmstore.TransactionClosedError, match="ended when it waited"):
        r["n"] = 2  # never a write outside the transaction
    with pytest.raises(shmstore.TransactionClosedError):
        q.qsize()
    with pytest.raises(shmstore.ConflictError):
        store.commit()
    assert r["n"] == 0 and q.qsize() == 1
    store.begin()
    assert q.get() == "job"  # begin() again: the get finds its item
    r["n"] = 3
    store.commit()
    assert r["n"] == 3 and q.qsize() == 0

    # a timeout: queue.Empty, the transaction ended; begin() goes on
    store.begin()
    r["n"] = 4
    with pytest.raises(queue.Empty):
        q.get(timeout=0.1)
    with pytest.raises(shmstore.TransactionClosedError):
        r["n"]
    store.begin()
    assert r["n"] == 3
    store.abort()

    # a full bounded queue: put waits for room the same way
    b = r.queue("b", maxsize=1)
    b.put(1)
    store.begin()
    threading.Timer(0.1, b.get).start()
    with pytest.raises(shmstore.ConflictError):
        b.put(2)
    store.abort()
    assert b.qsize() == 0

    # retry() with nothing read: RetryNothingError at once, ended too
    store.begin()
    with pytest.raises(shmstore.RetryNothingError):
        shmstore.retry()
    with pytest.raises(shmstore.TransactionClosedError):
        r["n"] = 5
    store.abort()
    with pytest.raises(shmstore.TransactionClosedError):
        store.abort()  # nothing left to abort

    # retry() after a read waits for a change to it
    store.begin()
    r["n"]
    threading.Timer(0.1, lambda: r.__setitem__("n", 6)).start()
    with pytest.raises(shmstore.ConflictError):
        shmstore.retry()
    store.begin()
    assert r["n"] == 6
    with pytest.raises(shmstore.Error, match="or_else"):
        store.or_else(lambda: 1, lambda: 2)
    store.commit()


def test_nested_transactions_join(store):
    r = store.root
    r["n"] = 0

    @store.transaction
    def inner():
        r["n"] = r["n"] + 1

    @store.transaction
    def outer():
        inner()
        inner()
        1 / 0

    with pytest.raises(ZeroDivisionError):
        outer()
    assert r["n"] == 0


def test_retry_waits_for_a_change(store):
    r = store.root
    r["ready"] = False

    def later():
        time.sleep(0.2)
        r["ready"] = True

    th = threading.Thread(target=later)
    th.start()

    @store.transaction
    def wait():
        if not r["ready"]:
            shmstore.retry()
        return "ready"

    t0 = time.monotonic()
    assert wait() == "ready"
    assert time.monotonic() - t0 >= 0.15
    th.join()  # its commit wakes wait() before its call returns: the store must not close under it
    with pytest.raises(shmstore.UsageError):
        shmstore.retry()  # outside a transaction

    runs = []

    @store.transaction
    def wait_for_nothing():
        runs.append(1)
        shmstore.retry()  # read nothing: it would wait forever

    with pytest.raises(shmstore.RetryNothingError, match="without reads") as e:
        wait_for_nothing()
    assert e.value.code == shmstore._c.SHM_ERR_RETRY_NOTHING
    assert len(runs) == 1  # raised at once, not after running it again


def test_or_else(store):
    r = store.root
    q1, q2 = r.queue("q1"), r.queue("q2")
    q2.put("b")
    assert store.or_else(q1.get, q2.get) == "b"
    q1.put("a")
    q2.put("b2")
    assert store.or_else(q1.get, q2.get) == "a"

    def later():
        time.sleep(0.2)
        q1.put("late")

    th = threading.Thread(target=later)
    th.start()
    assert store.run(lambda: store.or_else(q1.get, q2.get)) == "b2"
    assert store.run(lambda: store.or_else(q1.get, q2.get)) == "late"
    th.join()


def test_objects_made_in_aborted_attempt_unbind(store):
    c = shmstore.Counter(3)
    runs = []

    @store.transaction
    def put():
        runs.append(1)
        store.root["c"] = c
        if len(runs) == 1:  # this attempt conflicts: c is unbound again, made anew next time
            raise_conflict()

    def raise_conflict():
        e = shmstore.ConflictError("forced")
        e.code = shmstore._c.SHM_ERR_CONFLICT
        raise e

    put()
    assert len(runs) == 2 and c._shm_id is not None and store.root["c"].value == 3


def test_stale_and_closed(store, shm_dir):
    r = store.root
    r["d"] = {"k": 1}
    d = r["d"]
    del r["d"]
    with pytest.raises(shmstore.StaleObjectError):
        d["k"]
    st2 = shmstore.open(store.name, dir=shm_dir, create=False)
    root2 = st2.root

    @store.transaction
    def both():  # a second handle of the same store joins the transaction
        root2["via2"] = [1]
        r["via1"] = root2["via2"]
        raise ValueError("abort")

    with pytest.raises(ValueError):
        both()
    assert "via2" not in r and "via1" not in root2
    r["shared"] = root2.list("l2")
    assert r["shared"]._shm_same(root2["l2"])
    st2.close()
    with pytest.raises(shmstore.ClosedError):
        root2["x"]
    with pytest.raises(shmstore.NoStoreError):
        shmstore.open("no-such-store", dir=shm_dir, create=False)
    with pytest.raises(FileNotFoundError):
        shmstore.open("no-such-store", dir=shm_dir, create=False)


def test_with_on_a_closed_store_raises_closed_error(store):
    store.close()
    with pytest.raises(shmstore.ClosedError, match="^the store is closed$"):
        store.root
    ran = []
    with pytest.raises(shmstore.ClosedError, match="^the store is closed$") as e:
        with store:
            ran.append(1)
    assert not ran and store.closed and e.value.code == shmstore._c.SHM_ERR_CLOSED


def test_dir_takes_a_path_like(shm_dir):
    base = pathlib.Path(shm_dir)
    with shmstore.open("pathlike", dir=base) as st:
        assert st.path == os.path.join(shm_dir, "pathlike")
        st.root["x"] = 1
    with shmstore.open("pathlike", dir=base, create=False) as st:
        assert st.root["x"] == 1
    shmstore.remove("pathlike", dir=base)
    with pytest.raises(shmstore.NoStoreError):
        shmstore.open("pathlike", dir=base, create=False)
    for bad, fn in ((shm_dir.encode(), "open"), (shm_dir.encode(), "remove"), (3, "open")):
        with pytest.raises(TypeError, match=rf"{fn}\(\): dir must be a str or an os.PathLike") as e:
            getattr(shmstore, fn)("pathlike", dir=bad)
        assert ("os.fsdecode" in str(e.value)) == isinstance(bad, bytes)


def test_missing_dir_is_named_as_python_passes_it(shm_dir):
    missing = os.path.join(shm_dir, "no", "such")
    with pytest.raises(shmstore.BadArgumentError) as e:
        shmstore.open("x", dir=pathlib.Path(missing))
    assert str(e.value) == (f"open(): the directory dir={missing!r} does not exist: make it first "
                            f"(os.makedirs(dir)); open() makes only the store's own directory in it")
    assert isinstance(e.value, ValueError) and e.value.code == shmstore._c.SHM_ERR_BAD_ARG
    assert not os.path.exists(missing)
    with pytest.raises(shmstore.NoStoreError):  # create=False: no store there, as before
        shmstore.open("x", dir=missing, create=False)
    # $SHMSTORE_DIR: the library reads the environment when it is loaded,
    # so in a process of its own
    code = ("import shmstore\n"
            "try:\n    shmstore.open('x')\n"
            "except shmstore.BadArgumentError as e:\n    print(e)\n")
    env = dict(os.environ, SHMSTORE_DIR=missing, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout == (f"open(): the directory {missing!r} does not exist ($SHMSTORE_DIR, used when "
                          f"open() is given no dir=): make it first (os.makedirs), or pass another dir=\n"), \
        out.stdout + out.stderr


def test_store_full(shm_dir):
    st = shmstore.open("full", dir=shm_dir, region_size=1 << 20, max_size=4 << 20)
    try:
        with pytest.raises(MemoryError):
            for i in range(100):
                st.root[i] = b"x" * (512 << 10)
        st.root["after"] = "still usable"
        assert st.root["after"] == "still usable"
        st.check()
    finally:
        st.close()
        shmstore.remove("full", dir=shm_dir, force=True)


def test_pickle_round_trips_in_process(store):
    r = store.root
    r["d"] = {"a": [1, 2]}
    r["c"] = shmstore.Counter(4)
    r["q"] = shmstore.Queue(3)
    for obj in (r["d"], r["d"]["a"], r["c"], r["q"], r):
        back = pickle.loads(pickle.dumps(obj))
        assert type(back) is type(obj) and back._shm_same(obj)
    assert pickle.loads(pickle.dumps(store)) is store


def test_no_leaks_in_the_hot_paths(store):
    """No reference leaks in the hot paths (errors included): Python memory
    does not grow with the number of operations (a leak of one object per
    operation would add at least 32 bytes x 2000 x the operations here)."""
    import gc
    import sys
    import tracemalloc
    r = store.root
    r["d"] = {"k": 1}
    lst = r.list("l")
    c = r.counter("c")
    q = r.queue("q")

    def ops():
        d = r["d"]
        d["k"] = d["k"] + 1
        d.get("nope")
        "k" in d
        try:
            d["missing"]
        except KeyError:
            pass
        try:
            d["big"] = 2**70
        except OverflowError:
            pass
        lst.append(b"x" * 10)
        lst[-1]
        lst.pop(0)
        c.add(1)
        q.put({"j": [1]})
        q.get()
        r["s"] = ("str", 1.5, None)
        r["s"]
        list(r.items())
        d.to_python()
        store.view(lambda: len(r))
        acc = Account("x")
        r["acc"] = acc
        acc.balance

    for _ in range(200):
        ops()
    gc.collect()
    rc_before = sys.gettotalrefcount() if hasattr(sys, "gettotalrefcount") else None
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(2000):
            ops()
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 32 * 1024, grown
    if rc_before is not None:
        assert sys.gettotalrefcount() - rc_before < 100


def test_single_operations_outside_a_transaction(store):
    """Outside a transaction a Dict's get/set/delete, a Counter's read and
    add and a Queue's put/get are one call of the library each (one-shot):
    what they give back is what a transaction gives back."""
    r = store.root
    r["d"] = {"in": 1}
    r["l"] = [1, 2]
    r["c"] = shmstore.Counter(5)
    r["q"] = shmstore.Queue()
    r["acc"] = Account("ann", 3)
    d = r["d"]
    assert isinstance(d, shmstore.Dict) and d == {"in": 1}
    assert isinstance(r["l"], shmstore.List) and r["l"] == [1, 2]
    assert isinstance(r["c"], shmstore.Counter) and r["c"].value == 5
    assert isinstance(r["q"], shmstore.Queue)
    acc = r["acc"]  # a record: its class is read in a transaction
    assert type(acc) is Account and acc.owner == "ann" and acc.balance == 3
    # a proxy of the store, set by its id: linked, not copied
    r["d2"] = d
    assert r["d2"]._shm_id == d._shm_id
    d["x"] = 1
    assert r["d2"]["x"] == 1
    # strings and bytes larger than the call's stack buffer
    big, blob = "é" * 5000, bytes(range(256)) * 40
    d["big"], d["blob"] = big, blob
    assert d["big"] == big and d["blob"] == blob and d.get("big") == big
    assert "big" in d and "nope" not in d
    # keys the store cannot hold are absent; an int beyond int64 too
    assert d.get(2**70, "dflt") == "dflt" and d.get(1.5) is None and 2**70 not in d
    with pytest.raises(KeyError):
        d[2**70]
    with pytest.raises(KeyError):
        del d["nope"]
    with pytest.raises(OverflowError):
        d["x"] = 2**70
    del d["x"]
    assert "x" not in d
    c = r["c"]
    assert c.add(2) == 7 and int(c) == 7
    c += 3
    c -= 1
    c.add_blind(1)
    assert c.value == 10
    with pytest.raises(OverflowError):
        c.add(2**63)
    q = r["q"]
    q.put(big)
    q.put(blob)
    q.put({"job": [1, 2]})  # a new container: put in a transaction
    q.put(d)  # a container of the store: by its id
    assert q.get() == big and q.get_nowait() == blob
    assert q.get() == {"job": [1, 2]}  # a container item: taken in a transaction, copied out
    assert q.get(timeout=1) == {"in": 1, "big": big, "blob": blob}
    assert q.qsize() == 0 and d["big"] == big  # taking the copy left the Dict linked elsewhere alone


def test_single_operations_fail_as_in_a_transaction(store, shm_dir):
    """A one-shot call that fails takes the transaction path, which raises
    what a transaction raises."""
    r = store.root
    d = r.dict("gone")
    c = r.counter("c")
    del r["gone"]
    with pytest.raises(shmstore.StaleObjectError):
        d["k"]
    with pytest.raises(shmstore.StaleObjectError):
        d["k"] = 1
    r["c"] = "not a counter any more"
    with pytest.raises(shmstore.StaleObjectError):
        c.value
    with pytest.raises(shmstore.TypeMismatch):
        r[1.5] = 1
    other = shmstore.open("other-" + os.path.basename(store.path), dir=shm_dir)
    try:
        with pytest.raises(shmstore.TypeMismatch):
            r["x"] = other.root  # a container of another store
    finally:
        other.close()
        shmstore.remove("other-" + os.path.basename(store.path), dir=shm_dir)
    store.close()
    with pytest.raises(shmstore.ClosedError):
        r["k"]


def test_keyboard_interrupt_ends_a_transaction_at_once(store):
    """A KeyboardInterrupt from the body ends the transaction, written
    nothing, and propagates, even from a run whose reads failed (which
    a transaction runs again after any Exception)."""
    r = store.root
    r["a"], r["b"] = 0, 0
    runs = []

    @store.transaction
    def body():
        runs.append(1)
        r["a"]
        if len(runs) == 1:
            t = threading.Thread(target=lambda: r.update(a=1, b=1))
            t.start()
            t.join()
        try:
            r["b"]  # after a commit to what this run read: its read fails
        except shmstore.ConflictError:
            raise KeyboardInterrupt
        r["written"] = True

    with pytest.raises(KeyboardInterrupt):
        body()
    assert runs == [1] and "written" not in r
