"""Dict and List checked against dict and list on random operation
sequences (hypothesis stateful testing)."""
import os
import shutil
import tempfile
import uuid

import hypothesis.strategies as st
from hypothesis import settings, HealthCheck
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import shmstore

_DIR = None
_STORE = None


def _store():
    """One store for every example (each uses a container of its own,
    deleted at its end); checked when the module's tests end."""
    global _DIR, _STORE
    if _STORE is None:
        _DIR = tempfile.mkdtemp(dir="/dev/shm", prefix="shmstore-model-")
        _STORE = shmstore.open("model", dir=_DIR)
    return _STORE


def teardown_module():
    if _STORE is not None:
        assert len(_STORE.root) == 0
        _STORE.check()
        _STORE.close()
    if _DIR:
        shutil.rmtree(_DIR, ignore_errors=True)


# Keys: no bools (True == 1 in a dict, but two keys in the store).
keys = st.one_of(st.text(max_size=4), st.binary(max_size=3),
                 st.integers(min_value=-(2**63), max_value=2**63 - 1), st.none())
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                    st.floats(allow_nan=False), st.text(max_size=8), st.binary(max_size=8))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)), max_leaves=6)

SETTINGS = settings(max_examples=int(os.environ.get("SHMSTORE_MODEL_EXAMPLES", 30)),
                    stateful_step_count=20, deadline=None,
                    suppress_health_check=list(HealthCheck))


def plain(v):
    """What a stored value reads back as, copied (tuples are lists)."""
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


class DictMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.store = _store()
        self.key = uuid.uuid4().hex
        self.d = self.store.root.dict(self.key)
        self.m = {}

    def teardown(self):
        del self.store.root[self.key]

    @rule(k=keys, v=values)
    def set(self, k, v):
        self.d[k] = v
        self.m[k] = plain(v)

    @rule(k=keys)
    def delete(self, k):
        try:
            del self.m[k]
            del self.d[k]
        except KeyError:
            try:
                del self.d[k]
                raise AssertionError("deleted a missing key")
            except KeyError:
                pass

    @rule(k=keys)
    def get(self, k):
        assert self.d.get(k, "<none>") == self.m.get(k, "<none>")
        assert (k in self.d) == (k in self.m)

    @rule(k=keys, v=values)
    def setdefault(self, k, v):
        assert self.d.setdefault(k, v) == self.m.setdefault(k, plain(v))

    @rule(k=keys)
    def pop(self, k):
        assert self.d.pop(k, "<none>") == self.m.pop(k, "<none>")

    @rule(kv=st.dictionaries(keys, values, max_size=3))
    def update(self, kv):
        self.d.update(kv)
        self.m.update({k: plain(v) for k, v in kv.items()})

    @precondition(lambda self: len(self.m) > 0)
    @rule()
    def popitem(self):
        k, v = self.d.popitem()
        assert self.m.pop(k) == v

    @rule()
    def clear(self):
        if len(self.m) > 5:
            self.d.clear()
            self.m.clear()

    @invariant()
    def same(self):
        assert len(self.d) == len(self.m)
        assert self.d == self.m
        assert sorted(map(repr, self.d)) == sorted(map(repr, self.m))
        assert self.d.to_python() == self.m


class ListMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.store = _store()
        self.key = uuid.uuid4().hex
        self.l = self.store.root.list(self.key)
        self.m = []

    def teardown(self):
        del self.store.root[self.key]

    def same_error(self, f, g):
        try:
            a = f()
        except (IndexError, ValueError) as e:
            try:
                g()
            except type(e):
                return
            raise AssertionError(f"the store raised {e!r}, list did not")
        b = g()
        assert a == b

    @rule(v=values)
    def append(self, v):
        self.l.append(v)
        self.m.append(plain(v))

    @rule(i=st.integers(-8, 8), v=values)
    def insert(self, i, v):
        self.l.insert(i, v)
        self.m.insert(i, plain(v))

    @rule(vs=st.lists(values, max_size=3))
    def extend(self, vs):
        self.l.extend(vs)
        self.m.extend(plain(vs))

    @rule()
    def pop_back(self):
        self.same_error(self.l.pop, self.m.pop)

    @rule()
    def pop_front(self):
        self.same_error(lambda: self.l.pop(0), lambda: self.m.pop(0))

    @rule(i=st.integers(-8, 8))
    def pop_at(self, i):
        self.same_error(lambda: self.l.pop(i), lambda: self.m.pop(i))

    @rule(i=st.integers(-8, 8))
    def getitem(self, i):
        self.same_error(lambda: self.l[i], lambda: self.m[i])

    @rule(i=st.integers(-8, 8), v=values)
    def setitem(self, i, v):
        def f():
            self.l[i] = v

        def g():
            self.m[i] = plain(v)
        self.same_error(f, g)

    @rule(i=st.integers(-8, 8))
    def delitem(self, i):
        def f():
            del self.l[i]

        def g():
            del self.m[i]
        self.same_error(f, g)

    @rule(a=st.none() | st.integers(-6, 6), b=st.none() | st.integers(-6, 6),
          c=st.none() | st.integers(-3, 3).filter(bool))
    def getslice(self, a, b, c):
        assert self.l[a:b:c] == self.m[a:b:c]

    @rule(a=st.none() | st.integers(-6, 6), b=st.none() | st.integers(-6, 6),
          vs=st.lists(scalars, max_size=3))
    def setslice(self, a, b, vs):
        self.l[a:b] = vs
        self.m[a:b] = vs

    @rule(a=st.none() | st.integers(-6, 6), b=st.none() | st.integers(-6, 6),
          c=st.none() | st.integers(-3, 3).filter(bool))
    def delslice(self, a, b, c):
        del self.l[a:b:c]
        del self.m[a:b:c]

    @rule()
    def reverse(self):
        self.l.reverse()
        self.m.reverse()

    @invariant()
    def same(self):
        assert len(self.l) == len(self.m)
        assert self.l == self.m
        assert list(self.l) == self.m
        assert self.l.to_python() == self.m


TestDictModel = DictMachine.TestCase
TestDictModel.settings = SETTINGS
TestListModel = ListMachine.TestCase
TestListModel.settings = SETTINGS
