"""shmstore: Python objects shared between processes in shared memory.

Processes open the same store by name and share dicts, lists, records,
counters and queues that live in mmap'd shared memory, changed with
serializable transactions::

    import shmstore

    with shmstore.open("bank") as store:
        accounts = store.root.dict("accounts")      # made if missing

        @store.transaction                          # runs again on conflict
        def transfer(a, b, amount):
            accounts[a] -= amount
            accounts[b] += amount

        transfer("alice", "bob", 10)

Values are None, bool, int (int64), float, str and bytes (copied), and
shared containers: Dict (a MutableMapping), List (a MutableSequence),
Counter, Queue (queue.Queue's methods) and records (subclasses of
shmstore.Object). Storing a dict, list or tuple stores a shared copy;
reading a container gives a live proxy, which stays usable across
transactions and pickles (for multiprocessing with the 'spawn' or
'forkserver' start method). to_python() copies a subtree out, and so does
copy.deepcopy(proxy); copy.copy(proxy) is the proxy itself (a handle).

Transactions: outside of one every operation is its own small
transaction. @store.transaction, store.view(fn), ``for attempt in
store.attempts(): with attempt: ...`` run a function as one transaction
and run it again when another transaction changed what it read: **the
body may run more than once**, so it must have no effects outside the
store (print, send, append to a local list) that cannot be repeated.
store.begin()/commit()/abort() run one attempt by hand (the REPL), and
commit() raises ConflictError instead of running anything again.

A child made by plain fork() of a process that opened a store cannot use
shmstore (the Go runtime inside does not survive fork): it gets
shmstore.ForkError. Use multiprocessing.get_context("spawn") or
"forkserver".
"""

import collections.abc as _abc
import copy as _copy
import dataclasses as _dataclasses
import functools as _functools
import os as _os
import threading as _threading
import weakref as _weakref

from . import _shmstore as _c
from ._shmstore import (  # noqa: F401  (re-exported)
    BadArgumentError,
    ClosedError,
    ConflictError,
    DamagedStoreError,
    Error,
    ExistsError,
    ForkError,
    InUseError,
    NoStoreError,
    NotFoundError,
    PermissionDenied,
    ReadOnlyError,
    RetryError,
    RetryNothingError,
    StaleObjectError,
    StoreFullError,
    TooLargeError,
    TransactionClosedError,
    TypeMismatch,
    UsageError,
    in_transaction,
    retry,
)

__all__ = [
    "open", "remove", "Store", "Dict", "List", "Counter", "Queue", "Object", "record",
    "retry", "in_transaction", "Error", "ConflictError", "RetryError", "StaleObjectError",
    "StoreFullError", "TypeMismatch", "DamagedStoreError", "ClosedError", "ForkError",
    "TransactionClosedError", "ReadOnlyError", "TooLargeError", "NoStoreError", "ExistsError",
    "PermissionDenied", "InUseError", "BadArgumentError", "NotFoundError", "RetryNothingError",
    "UsageError",
]

LIBRARY_NAME = "libshmstore.so"


def library_path():
    """The libshmstore.so this package loads: $SHMSTORE_LIBRARY, else the
    copy in the package directory."""
    return _os.environ.get("SHMSTORE_LIBRARY") or _os.path.join(
        _os.path.dirname(_os.path.abspath(__file__)), LIBRARY_NAME)


def _load():
    # Loaded at the first open, not at import: a process that only
    # imported shmstore (a forkserver preloading __main__) can still fork.
    _c._load(library_path())


_MISSING = object()
_stores = _weakref.WeakValueDictionary()  # path -> Store, for unpickling
_kept_open = {}  # path -> Store opened by unpickling (kept for the process)
_kept_lock = _threading.Lock()


# --------------------------------------------------------------------------
# Stores and transactions


def _dir_arg(fn, dir):
    """dir as the str the library takes: None, a str or an os.PathLike
    (pathlib.Path) of a str; bytes are refused."""
    if dir is None:
        return None
    try:
        path = _os.fspath(dir)
    except TypeError:
        raise TypeError(f"{fn}(): dir must be a str or an os.PathLike such as pathlib.Path, "
                        f"not {type(dir).__name__}") from None
    if isinstance(path, bytes):
        raise TypeError(f"{fn}(): dir must be a str or an os.PathLike of a str, not bytes: "
                        f"pass os.fsdecode(dir)")
    return path


def open(name, *, dir=None, create=True, exclusive=False, region_size=0, max_size=0,
         mode=0o600, read_only=False):
    """Open the store `name` (a directory under `dir`, a str or an
    os.PathLike such as pathlib.Path; default $SHMSTORE_DIR or
    /dev/shm/shmstore), making it if create (the default)
    and it is missing. exclusive=True fails with ExistsError if it exists;
    create=False fails with NoStoreError if it does not. region_size
    bounds the largest value (0: 64 MiB), max_size the store (0: 4 GiB);
    mode is the files' permission bits. Returns a Store (a context manager
    that closes it). A dir (or $SHMSTORE_DIR) that does not exist is not
    made: BadArgumentError (only /dev/shm/shmstore is made when missing).

    read_only=True maps an existing store for inspection, without
    attaching to it (it never writes; a missing store raises NoStoreError
    whatever create says; exclusive=True with it is a BadArgumentError):
    store.check() (which then does not recover first) and store.stats()
    work, while store.root, transactions (and so every read and write)
    and recover() raise ReadOnlyError."""
    if read_only and exclusive:
        raise BadArgumentError("open(): exclusive=True makes a new store, read_only=True opens an "
                               "existing one: pass one of them")
    _load()
    flag = _c.SHM_OPEN_MUST_CREATE if exclusive else (
        _c.SHM_OPEN_CREATE if create else _c.SHM_OPEN_MUST_EXIST)
    path = _dir_arg("open", dir)
    try:
        st = _c._open(Store, name, path, flag, int(region_size), int(max_size), int(mode),
                      bool(read_only))
    except BadArgumentError as e:
        missing = _missing_dir(path)
        if missing is None:
            raise
        err = BadArgumentError(missing)
        err.code = e.code
        raise err from None  # the library's message names its Go option
    if not st.read_only:
        # for unpickling proxies, which need a store that runs
        # transactions; a read-only one is not attached, so not closed at
        # exit either (nothing to depart from)
        _stores[st.path] = st
    _close_at_exit()
    return st


def _missing_dir(path):
    """What to say when the directory open() was to use does not exist
    (None when it does): dir, else $SHMSTORE_DIR."""
    if path is None:
        env = _os.environ.get("SHMSTORE_DIR")
        if not env or _os.path.isdir(env):
            return None
        return (f"open(): the directory {env!r} does not exist ($SHMSTORE_DIR, used when open() "
                f"is given no dir=): make it first (os.makedirs), or pass another dir=")
    if _os.path.isdir(path):
        return None
    return (f"open(): the directory dir={path!r} does not exist: make it first "
            f"(os.makedirs(dir)); open() makes only the store's own directory in it")


_exit_hooks = []


def _close_all():
    """Close the stores still open when the process exits, so that it
    leaves them as a departed process, not a dead one (which the next
    process to open the store must recover)."""
    for st in list(_stores.values()) + list(_kept_open.values()):
        try:
            st.close()
        except Error:
            pass


def _close_at_exit():
    # atexit for the main program and spawn children (which leave through
    # sys.exit); multiprocessing's own finalizers for fork and forkserver
    # children, which leave through os._exit after running them
    # (util._exit_function, at the end of Process._bootstrap). A child
    # clears the finalizers at the start of _bootstrap, after it unpickled
    # the Process object: a store opened by unpickling a proxy among its
    # arguments has lost its finalizer by the time the target runs, so an
    # after-fork hook (run just after the clearing) registers it again.
    pid = _os.getpid()
    if pid in _exit_hooks:
        return
    _exit_hooks.append(pid)
    import atexit
    atexit.register(_close_all)
    try:
        import multiprocessing.util as mpu
    except ImportError:
        return
    _finalize_at_exit(_close_all)
    mpu.register_after_fork(_close_all, _finalize_at_exit)


def _finalize_at_exit(close_all):
    import multiprocessing.util as mpu
    mpu.Finalize(None, close_all, exitpriority=-100)


def remove(name, *, dir=None, force=False):
    """Remove the store `name` (under `dir`, as open() takes it):
    InUseError while live processes are attached, unless force."""
    _load()
    _c._remove(name, _dir_arg("remove", dir), bool(force))


class _Attempt:
    """One run of a transaction's body: use it as a context manager (see
    Store.attempts)."""

    __slots__ = ("txn", "again", "fresh", "fresh_ok", "done")

    def __init__(self, txn, fresh_ok=True):
        self.txn = txn
        self.again = False
        self.fresh = False
        self.fresh_ok = fresh_ok
        self.done = False

    def __enter__(self):
        self.txn._push()
        return self

    def __exit__(self, et, e, tb):
        txn = self.txn
        txn._pop()
        if e is not None and not isinstance(e, Exception):
            # KeyboardInterrupt, SystemExit: give up, never run again
            txn.rollback()
            self.done = True
            return False
        if e is None:
            rc = 0
        elif isinstance(e, Error) and getattr(e, "code", None) in (
                _c.SHM_ERR_CONFLICT, _c.SHM_ERR_RETRY):
            rc = e.code
        else:
            rc = _c.SHM_ERR_OTHER
        r = txn.end(rc)  # raises when the commit itself fails
        if r == _c.SHM_AGAIN:
            self.again = True
            return True  # the body runs again: whatever it raised was from a state that never existed
        if r < 0 and rc in (_c.SHM_ERR_CONFLICT, _c.SHM_ERR_RETRY):
            # it ended the transaction instead of asking for another
            # attempt (an attempt doomed by a failed read): run again in a
            # new one, a few times; else, and at once for a retry in a run
            # that read nothing (RetryNothingError), the end's error
            if self.fresh_ok and r != _c.SHM_ERR_RETRY_NOTHING:
                self.fresh = True
                return True
            txn._raise_end()
        self.done = True
        return False


class _Joined:
    """The attempt of a transaction nested in one that runs: it joins it."""

    again = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class Store(_c.StoreBase):
    """An open store (from shmstore.open). store.root is the root Dict;
    everything reachable from it lives, the rest is reclaimed."""

    __slots__ = ("_explicit",)

    def __repr__(self):
        state = " closed" if self.closed else " read-only" if self.read_only else ""
        return f"<shmstore.Store {self.name!r} at {self.path!r}{state}>"

    def __enter__(self):
        if self.closed:
            raise ClosedError("the store is closed")  # as the store's operations say
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __reduce__(self):
        return (_store_at, (self.path,))

    # -- transactions --------------------------------------------------

    def attempts(self, readonly=False):
        """The attempts of one transaction, for the block form::

            for attempt in store.attempts():
                with attempt:
                    ...   # the body: may run more than once

        Leave the block normally (no return or break inside it: they would
        skip the run that a conflict asks for); keep the result in a variable
        and use it after the loop.

        Each attempt commits when its block ends normally; when another
        transaction changed what it read (or it waits: retry(), a blocking
        queue get), the loop waits and yields the next attempt. An
        exception ends the transaction (nothing written) and propagates.
        Inside a running transaction of this store it yields one attempt
        that joins it."""
        if self._current() is not None:
            yield _Joined()
            return
        txn = self._begin(readonly=readonly)
        fresh = 0
        try:
            while True:
                a = _Attempt(txn, fresh_ok=fresh < 3)
                yield a
                if a.fresh:
                    fresh += 1
                    txn = self._begin(readonly=readonly)
                elif a.again:
                    txn.restart()  # GIL released; Ctrl-C rolls back and raises
                else:
                    return
        finally:
            txn.rollback()  # nothing if over

    def run(self, fn, *args, readonly=False, **kwargs):
        """Call fn(*args, **kwargs) in a transaction, again after conflicts
        (the body may run more than once), and return its result."""
        if self._current() is not None:
            return fn(*args, **kwargs)
        return self._run(fn, args, kwargs or None, readonly)  # attempts()' loop, in C

    def transaction(self, fn=None, /, *, readonly=False):
        """Decorator: each call of the function runs as one transaction,
        run again when another transaction changed what it read, or when it
        waits (retry(), queue get/put), as FoundationDB's @fdb.transactional.
        **The function may run more than once**: keep effects outside the
        store (I/O, appends to outer lists) out of it. Called inside a
        running transaction of this store, it joins it."""
        if fn is None:
            return lambda f: self.transaction(f, readonly=readonly)

        @_functools.wraps(fn)
        def transactional(*args, **kwargs):
            return self.run(fn, *args, readonly=readonly, **kwargs)

        return transactional

    def view(self, fn, *args, **kwargs):
        """Call fn(*args, **kwargs) in a read-only transaction (one
        consistent snapshot; writes raise ReadOnlyError) and return its
        result. fn may run more than once."""
        return self.run(fn, *args, readonly=True, **kwargs)

    def or_else(self, a, b):
        """Call a(); if it waits (retry(), an empty queue's get), undo what
        it wrote and call b() instead; if b waits too, the transaction waits
        for a change to what either read. Returns what the one that ran
        returned. Outside a transaction it runs in its own; in one begun
        with begin() (which nothing runs again) it raises UsageError."""
        cur = self._current()
        if cur is None:
            return self.run(self.or_else, a, b)
        if cur is True:
            raise UsageError("or_else() in the middle of a single operation")
        if cur.explicit():
            # Its first alternative's retry runs the transaction again,
            # skipping it: nothing runs one begun with begin() again.
            raise UsageError("or_else() needs a transaction that can run again: call it in "
                        "@store.transaction, store.run or attempts(), not in one begun with begin()")
        token, first = cur.or_else_begin()
        if first:
            try:
                return a()
            except RetryError:
                cur.or_else_retried(token)  # raises RetryError: the attempt ends
        return b()

    # -- explicit transactions (the REPL) --------------------------------

    def _explicit_local(self):
        try:
            return self._explicit
        except AttributeError:
            self._explicit = _threading.local()
            return self._explicit

    def begin(self, readonly=False):
        """Begin a transaction in this thread by hand (for the REPL):
        every operation on this store's objects in this thread joins it
        until commit() or abort(). Nothing runs it again: a conflict raises
        ConflictError (from the operation or from commit()). A wait
        (retry(), a blocking queue get or put that finds the queue empty
        or full) waits for a change to what the transaction read, then ends
        it and raises ConflictError: begin() again, and the get finds its
        item (queue.Empty or queue.Full at a timeout, RetryNothingError
        at once if it read nothing). Until then, what the thread does on
        the store raises TransactionClosedError, never runs outside the
        transaction. or_else() needs a transaction that can run again.
        begin() while a transaction begun with begin() runs in this thread
        raises UsageError; commit() or abort() without one raises
        TransactionClosedError (a UsageError)."""
        loc = self._explicit_local()
        old = getattr(loc, "txn", None)
        if old is not None and old.active:
            raise UsageError("a transaction begun with begin() runs in this thread: commit() or abort() it first")
        if old is not None and old.ended:
            old._pop()  # over by a wait, which raised: begin() again is the way on
        loc.txn = None
        txn = self._begin(readonly=readonly, explicit=True)
        txn._push()
        loc.txn = txn
        return txn

    def _take_explicit(self):
        loc = self._explicit_local()
        txn = getattr(loc, "txn", None)
        loc.txn = None
        if txn is not None and txn.ended:
            txn._pop()
            return txn, True
        if txn is None or not txn.active:
            raise TransactionClosedError("no transaction begun with begin() runs in this thread")
        return txn, False

    def commit(self):
        """Commit the transaction begun with begin(). ConflictError if
        another transaction changed what it read, or it waited (nothing
        was written: begin again)."""
        txn, ended = self._take_explicit()
        if ended:
            r = _c.SHM_AGAIN
        else:
            try:
                r = txn.end(0)
            finally:
                txn._pop()
        if r == _c.SHM_AGAIN:
            txn.rollback()
            e = ConflictError("the transaction conflicted with another (or waited): "
                              "nothing was written; begin() again")
            e.code = _c.SHM_ERR_CONFLICT
            raise e

    def abort(self):
        """Give up the transaction begun with begin(): nothing it wrote is kept."""
        txn, _ = self._take_explicit()
        txn.rollback()

    # -- maintenance -----------------------------------------------------

    def check(self, recover=True):
        """Check the store's consistency (after recover(), unless
        recover=False, as shmctl check does); raises shmstore.Error
        listing the problems. A store opened with read_only=True is checked
        without recovering (it cannot: it is not attached)."""
        if recover and not self.read_only:
            self.recover()
        super().check()

    # -- helpers ---------------------------------------------------------

    def get(self, path, default=_MISSING):
        """The value at a '/'-separated path of Dict keys from the root."""
        def walk():
            cur = self.root
            for part in [p for p in path.split("/") if p]:
                cur = cur[part]
            return cur
        try:
            return self.view(walk)
        except KeyError:
            if default is _MISSING:
                raise
            return default


def _store_at(path):
    """The open Store of this process at path, opening it (kept open) if needed."""
    st = _stores.get(path)
    if st is not None and not st.closed:
        return st
    with _kept_lock:
        st = _kept_open.get(path)
        if st is None or st.closed:
            st = open(_os.path.basename(path.rstrip("/")),
                      dir=_os.path.dirname(path.rstrip("/")), create=False)
            _kept_open[path] = st
        return st


def _rebuild(path, id):
    """Unpickle a proxy: the container with that id in the store at path."""
    return _store_at(path)._open_id(id)


# --------------------------------------------------------------------------
# Proxies


class _ProxyMixin:
    __slots__ = ()

    def __reduce__(self):
        st = self._shm_store
        if st is None:
            raise TypeError(f"cannot pickle this {type(self).__name__}: it is not in a store yet "
                            f"(store it into a shared container first)")
        return (_rebuild, (st.path, self._shm_id))

    def __copy__(self):
        """copy.copy(x) is x itself for an object in a store: a proxy is a
        handle of the shared object, and a copy of the handle changes the
        same object (x.copy() of a Dict or List is a plain shallow copy).
        An object not stored yet is copied: a new unstored one, its state
        copied shallowly."""
        if self._shm_store is not None:
            return self
        new = self._shm_unbound_like(_copy.copy(self._shm_local))
        d = getattr(self, "__dict__", None)
        if d:
            new.__dict__.update(d)
        return new

    def __deepcopy__(self, memo):
        """copy.deepcopy(x) is x.to_python() for an object in a store: plain
        Python values read in one transaction (Dicts as dicts, Counters as
        ints, records as unstored instances), never the shared object. An
        object not stored yet is copied: a new unstored one, its state
        deep-copied."""
        if self._shm_store is not None:
            return self.to_python()
        new = self._shm_unbound_like(None)
        memo[id(self)] = new  # before the state: it may hold new again
        new._shm_local = _copy.deepcopy(self._shm_local, memo)
        d = getattr(self, "__dict__", None)
        if d:
            new.__dict__.update(_copy.deepcopy(d, memo))
        return new

    def _atomic(self, fn, readonly=False):
        st = self._shm_store
        if st is None:
            return fn()
        return st.run(fn, readonly=readonly)


class _ItemsView(_abc.ItemsView):
    __slots__ = ()

    def __iter__(self):
        return iter(self._mapping._items())


class _ValuesView(_abc.ValuesView):
    __slots__ = ()

    def __iter__(self):
        return iter(self._mapping._values())


class Dict(_c.DictBase, _ProxyMixin, _abc.MutableMapping):
    """A shared dict (collections.abc.MutableMapping). Keys are str,
    bytes, int, bool or None (True and 1 are different keys here, unlike in
    dict); values are anything the store keeps. Iteration and views read a
    snapshot in one transaction. Get one from store.root or a container."""

    __slots__ = ()
    __hash__ = None

    def __iter__(self):
        return iter(self._keys())

    def keys(self):
        return _abc.KeysView(self)

    def items(self):
        return _ItemsView(self)

    def values(self):
        return _ValuesView(self)

    def __eq__(self, other):
        if isinstance(other, Dict) and self._shm_same(other):
            return True
        if not isinstance(other, _abc.Mapping):
            return NotImplemented
        return self._atomic(lambda: dict(self._items()) == dict(other.items()), readonly=True)

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    def update(self, other=(), /, **kwargs):
        """As dict.update, in one transaction."""
        def upd():
            if isinstance(other, _abc.Mapping):
                for k in list(other.keys()):
                    self[k] = other[k]
            elif hasattr(other, "keys"):
                for k in list(other.keys()):
                    self[k] = other[k]
            else:
                for k, v in other:
                    self[k] = v
            for k, v in kwargs.items():
                self[k] = v
        self._atomic(upd)

    def popitem(self):
        """Remove and return some (key, value) pair, in one transaction (KeyError if empty)."""
        def pop():
            keys = self._keys()
            if not keys:
                raise KeyError("popitem(): dictionary is empty")
            k = keys[-1]
            return k, self.pop(k)
        return self._atomic(pop)

    def copy(self):
        """A shallow copy as a plain dict (values as proxies); to_python() copies deep."""
        return dict(self._items())

    def __repr__(self):
        if self._shm_store is None:
            return "shmstore.Dict(<unbound>)"
        try:
            return f"shmstore.Dict({self.to_python()!r})"
        except Error as e:
            return f"<shmstore.Dict {self._shm_id}: {type(e).__name__}>"

    def dict(self, key):
        """The Dict under key, made empty if key is absent (TypeMismatch if it holds something else)."""
        return self._container(key, _c.SHM_DICT)

    def list(self, key):
        """The List under key, made empty if key is absent."""
        return self._container(key, _c.SHM_LIST)

    def counter(self, key):
        """The Counter under key, made at 0 if key is absent."""
        return self._container(key, _c.SHM_COUNTER)

    def queue(self, key, maxsize=0):
        """The Queue under key, made empty (holding at most maxsize items,
        0: unbounded) if key is absent."""
        return self._container(key, _c.SHM_QUEUE, maxsize)


class List(_c.ListBase, _ProxyMixin, _abc.MutableSequence):
    """A shared list (collections.abc.MutableSequence): negative indexes,
    slices (read as plain lists), insert, pop() and pop(0) in O(1),
    extend, comparison with lists. Iteration reads a snapshot in one
    transaction."""

    __slots__ = ()
    __hash__ = None

    def __iter__(self):
        return iter(self._items())

    def __reversed__(self):
        return reversed(self._items())

    def __contains__(self, value):
        return value in self._items()

    def index(self, value, start=0, stop=None):
        items = self._items()
        return items.index(value, start, len(items) if stop is None else stop)

    def count(self, value):
        return self._items().count(value)

    def __eq__(self, other):
        if isinstance(other, List) and self._shm_same(other):
            return True
        if not isinstance(other, (list, tuple, List)):
            return NotImplemented
        return self._atomic(lambda: self._items() == (other._items() if isinstance(other, List) else list(other)),
                            readonly=True)

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    def __iadd__(self, values):
        self.extend(values)
        return self

    def _getslice(self, s):
        def get():
            n = len(self)
            return [self[i] for i in range(*s.indices(n))]
        return self._atomic(get, readonly=True)

    def _setslice(self, s, values):
        values = list(values.to_python() if isinstance(values, List) else values)

        def put():
            n = len(self)
            start, stop, step = s.indices(n)
            if step == 1:
                stop = max(stop, start)
                for _ in range(stop - start):
                    del self[start]
                for j, v in enumerate(values):
                    self.insert(start + j, v)
                return
            idx = list(range(start, stop, step))
            if len(idx) != len(values):
                raise ValueError(f"attempt to assign sequence of size {len(values)} "
                                 f"to extended slice of size {len(idx)}")
            for i, v in zip(idx, values):
                self[i] = v
        self._atomic(put)

    def _delslice(self, s):
        def delete():
            n = len(self)
            for i in sorted(range(*s.indices(n)), reverse=True):
                del self[i]
        self._atomic(delete)

    def remove(self, value):
        """Remove the first item equal to value (ValueError if none), in one transaction."""
        def rm():
            del self[self.index(value)]
        self._atomic(rm)

    def reverse(self):
        """Reverse in place, in one transaction."""
        def rev():
            items = self._items()
            for i, v in enumerate(reversed(items)):
                self[i] = v
        self._atomic(rev)

    def sort(self, *, key=None, reverse=False):
        """Sort in place (as list.sort), in one transaction."""
        def srt():
            items = sorted(self._items(), key=key, reverse=reverse)
            for i, v in enumerate(items):
                self[i] = v
        self._atomic(srt)

    def copy(self):
        """A shallow copy as a plain list (items as proxies); to_python() copies deep."""
        return self._items()

    def __repr__(self):
        if self._shm_store is None:
            return "shmstore.List(<unbound>)"
        try:
            return f"shmstore.List({self.to_python()!r})"
        except Error as e:
            return f"<shmstore.List {self._shm_id}: {type(e).__name__}>"


class Counter(_c.CounterBase, _ProxyMixin):
    """A shared int64 counter. Counter(n) makes one (in the running
    transaction, or kept here until stored into a container: until then
    its operations raise UsageError). add(n) returns the new value;
    ``c += n`` adds without reading (never conflicts); c.value and int(c)
    read it."""

    __slots__ = ()

    def __eq__(self, other):
        if isinstance(other, Counter):
            return self._shm_same(other) or self.value == other.value
        if isinstance(other, int):
            return self.value == other
        return NotImplemented

    def __ne__(self, other):
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    __hash__ = _c.Proxy.__hash__

    def __repr__(self):
        if self._shm_store is None:
            return f"<shmstore.Counter not stored yet: {self._shm_local}>"
        try:
            return f"shmstore.Counter({self.value})"
        except Error as e:
            return f"<shmstore.Counter {self._shm_id}: {type(e).__name__}>"


class Queue(_c.QueueBase, _ProxyMixin):
    """A shared FIFO with queue.Queue's methods: put/get (block, timeout;
    queue.Full / queue.Empty), put_nowait/get_nowait, qsize, empty, full,
    maxsize. Queue(maxsize) makes one (in the running transaction, or kept
    here until stored: until then its operations raise UsageError). A
    blocking get waits without polling and holds nothing (the transaction
    retries); inside a transaction the whole transaction waits, so a get
    and what is done with the item commit together (no item is lost if the
    process dies). task_done/join are not supported."""

    __slots__ = ()

    def put_nowait(self, item):
        """put(item, block=False)."""
        return self.put(item, block=False)

    def get_nowait(self):
        """get(block=False)."""
        return self.get(block=False)

    def empty(self):
        return self.qsize() == 0

    def full(self):
        m = self.maxsize
        return m > 0 and self.qsize() >= m

    def __repr__(self):
        if self._shm_store is None:
            return f"<shmstore.Queue not stored yet: maxsize={self._shm_local}>"
        try:
            return f"<shmstore.Queue {self._shm_id} qsize={self.qsize()} maxsize={self.maxsize}>"
        except Error as e:
            return f"<shmstore.Queue {self._shm_id}: {type(e).__name__}>"


# --------------------------------------------------------------------------
# Records

_record_classes = {}  # class name in the store -> class


class _Field:
    """A field of a shared record class (a data descriptor)."""

    __slots__ = ("name", "default")

    def __init__(self, name, default=_MISSING):
        self.name = name
        self.default = default

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, cls=None):
        if obj is None:
            if self.default is _MISSING:
                raise AttributeError(self.name)
            return self.default
        return obj._shm_get(self.name)

    def __set__(self, obj, value):
        obj._shm_set(self.name, value)

    def __delete__(self, obj):
        raise AttributeError(f"the fields of shared records cannot be deleted ({self.name})")


def _is_classvar(ann):
    if isinstance(ann, str):
        return ann.startswith(("ClassVar", "typing.ClassVar"))
    return getattr(ann, "__origin__", None) is __import__("typing").ClassVar or \
        ann is __import__("typing").ClassVar


def _install_fields(cls):
    fields = []
    for klass in reversed(cls.__mro__):
        for name, ann in klass.__dict__.get("__annotations__", {}).items():
            if name.startswith("_") or _is_classvar(ann) or name in fields:
                continue
            fields.append(name)
    defaults = []
    dc = getattr(cls, "__dataclass_fields__", None)
    for name in fields:
        cur = cls.__dict__.get(name, _MISSING)
        if cur is _MISSING:  # a base record class's field keeps its default here
            cur = next((k.__dict__[name] for k in cls.__mro__[1:]
                        if isinstance(k.__dict__.get(name), _Field)), _MISSING)
        if isinstance(cur, _Field):
            default = cur.default
        elif dc is not None and name in dc:
            default = dc[name].default
            if default is _dataclasses.MISSING:
                default = _MISSING
        else:
            default = cur
        if name in cls.__dict__ or name in klass_annotations(cls):
            setattr(cls, name, _Field(name, default))
        if default is not _MISSING and not isinstance(default, _dataclasses.Field):
            defaults.append((name, default))
    cls._shm_fields_ = tuple(fields)
    cls._shm_fieldset_ = frozenset(fields)
    cls._shm_defaults_ = tuple(defaults) if dc is None else ()


def klass_annotations(cls):
    return cls.__dict__.get("__annotations__", {})


class Object(_c.RecordBase, _ProxyMixin):
    """The base of shared record classes: fields declared as annotations,
    methods in the program::

        class Account(shmstore.Object):
            owner: str
            balance: int = 0

            def __init__(self, owner, balance=0):
                self.owner, self.balance = owner, balance

            def deposit(self, n):
                self.balance += n

    Made inside a transaction, an instance is a new shared record of that
    transaction (keep it by storing it into a container: an unlinked one
    is gone at commit); made outside, it is kept in this process until it
    is stored into a container, which stores it and binds it. __init__
    runs once, when the instance is made; records read from the store come
    back as instances of their class (by name: the class's __qualname__,
    or `class Account(shmstore.Object, name="bank.Account")`) without
    running __init__. Fields start as None (or the class default).

    A class that defines no __init__ takes its fields as arguments, as a
    dataclass does: ``Account("ann", 5)`` or ``Account(owner="ann",
    balance=5)`` (positional in the order the annotations declare them,
    base classes' first; keywords by name). A field not given keeps its
    class default, or None if it has none (no TypeError, unlike a
    dataclass). Too many positional arguments, an unknown keyword or a
    field given twice raise TypeError."""

    _shm_class_ = "shmstore.Object"
    _shm_fields_ = ()
    _shm_fieldset_ = frozenset()
    _shm_defaults_ = ()

    def __init_subclass__(cls, /, name=None, **kwargs):
        super().__init_subclass__(**kwargs)
        _install_fields(cls)
        cls._shm_class_ = name or cls.__qualname__
        _record_classes[cls._shm_class_] = cls

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        for name, default in cls._shm_defaults_:
            self._shm_set(name, default)
        return self

    def __init__(self, *args, **kwargs):
        """Set the fields from the arguments, as a dataclass's __init__
        does (a class's own __init__ replaces this one): positional ones in
        field order, keywords by name; a field not given keeps its default
        (set by __new__), or None."""
        if not args and not kwargs:
            return
        cls = type(self)
        fields = cls._shm_fields_
        given = {}
        if len(args) > len(fields):
            if not fields:
                raise TypeError(f"{cls.__qualname__}() takes no arguments (it declares no fields)")
            raise TypeError(f"{cls.__qualname__}() takes at most {len(fields)} positional "
                            f"argument{'s' if len(fields) != 1 else ''} ({', '.join(fields)}) "
                            f"but {len(args)} were given")
        given.update(zip(fields, args))
        for name, value in kwargs.items():
            if name not in cls._shm_fieldset_:
                raise TypeError(f"{cls.__qualname__}() got an unexpected keyword argument {name!r} "
                                f"(its fields: {', '.join(fields) or 'none'})")
            if name in given:
                raise TypeError(f"{cls.__qualname__}() got multiple values for argument {name!r}")
            given[name] = value
        for name, value in given.items():
            setattr(self, name, value)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if self._shm_store is None:
            local = self._shm_local or {}
            if name in local:
                return local[name]
            raise AttributeError(f"{type(self).__name__!r} object has no field {name!r}")
        return self._shm_get(name)

    def __setattr__(self, name, value):
        if name.startswith("_") or name in type(self)._shm_fieldset_:
            object.__setattr__(self, name, value)
        elif self._shm_store is None and type(self) is not Object:
            raise AttributeError(f"{type(self).__name__} has no field {name!r}: declare it "
                                 f"with an annotation in the class")
        else:
            self._shm_set(name, value)

    def _shm_fields(self):
        return self._shm_stored_fields() if self._shm_store is not None else self._shm_fields_

    def __repr__(self):
        def fmt():
            return ", ".join(f"{f}={self._shm_get(f)!r}" for f in self._shm_fields())
        try:
            body = self._atomic(fmt, readonly=True)
        except Error as e:
            body = f"<{type(e).__name__}>"
        return f"{type(self).__name__}({body})"

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._shm_fields()))


_record_classes[Object._shm_class_] = Object


def record(cls=None, /, *, name=None, **dataclass_options):
    """Class decorator: a dataclass whose instances are shared records.
    The class may subclass shmstore.Object or not::

        @shmstore.record
        class Point:
            x: int = 0
            y: int = 0

    dataclass_options go to dataclasses.dataclass (eq compares the fields)."""

    def wrap(c):
        if not issubclass(c, Object):
            ns = {k: v for k, v in c.__dict__.items() if k not in ("__dict__", "__weakref__")}
            bases = tuple(b for b in c.__bases__ if b is not object) + (Object,)
            c = type(c.__name__, bases, ns, name=name)
        elif name is not None:
            _record_classes.pop(c._shm_class_, None)
            c._shm_class_ = name
            _record_classes[name] = c
        c = _dataclasses.dataclass(c, **dataclass_options)
        _install_fields(c)  # dataclass replaced or removed some descriptors
        return c

    return wrap if cls is None else wrap(cls)


_c._set_classes(Dict, List, Counter, Queue, Object, _record_classes)
