"""The Python section of the main README.md runs as written: each python
snippet as a script and each sh snippet with bash (from the repository's
root, for bin/shmctl), in order, on stores in a directory of their own
($SHMSTORE_DIR); a snippet followed by a text block ("prints") must print
exactly that. So the README cannot drift from the code."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

import helpers
import shmstore

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)


def python_section():
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    m = re.search(r"^## Python\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, "README.md has no '## Python' section"
    return m.group(1)


def snippets(section):
    """(language, code, expected output or None) for each python and sh
    block; a text block right after one (only a line of prose between)
    is what it prints."""
    blocks = [(m.group(1), m.group(2), m.start(), m.end()) for m in FENCE.finditer(section)]
    out = []
    for i, (lang, code, _, end) in enumerate(blocks):
        if lang not in ("python", "sh"):
            continue
        expected = None
        if i + 1 < len(blocks) and blocks[i + 1][0] == "text":
            between = section[end:blocks[i + 1][2]].strip()
            if "\n" not in between:
                expected = blocks[i + 1][1]
        out.append((lang, code, expected))
    return out


def test_readme_has_the_snippets():
    got = snippets(python_section())
    assert [lang for lang, _, _ in got] == ["python", "python", "python", "sh"]
    assert all(expected for _, _, expected in got), "each snippet says what it prints"
    assert "make python" in python_section() and "bindings/python/README.md" in python_section()


@pytest.fixture
def readme_dir(shm_dir):
    """$SHMSTORE_DIR for the snippets: every store they make is checked
    by the test and removed with the directory at the end."""
    d = tempfile.mkdtemp(dir=shm_dir, prefix="readme-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def runner(readme_dir, tmp_path):
    """Runs one snippet (in a process of its own, ended at the end of the
    test if it still runs) and returns what it printed."""
    ps = helpers.Procs()
    env = dict(os.environ, SHMSTORE_DIR=readme_dir, PYTHONPATH=os.pathsep.join(sys.path))

    def run(i, lang, code):
        if lang == "python":
            script = tmp_path / f"snippet{i}.py"  # a file: spawn's children import it
            script.write_text(code)
            argv = [sys.executable, str(script)]
        else:
            argv = ["bash", "-e", "-o", "pipefail", "-c", code]
        p = ps.popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, f"snippet {i} ({lang}) failed:\n{code}\n{out}{err}"
        return out

    yield run
    ps.end()


def test_readme_python_section_runs(runner, readme_dir):
    assert os.access(os.path.join(ROOT, "bin", "shmctl"), os.X_OK), "make build first: the sh snippet runs bin/shmctl"
    for i, (lang, code, expected) in enumerate(snippets(python_section())):
        out = runner(i, lang, code)
        if expected is not None:
            assert out == expected, f"snippet {i} printed\n{out}\nnot, as the README says,\n{expected}"
    names = sorted(os.listdir(readme_dir))
    assert names == ["bank", "shared", "work"]
    for name in names:
        with shmstore.open(name, dir=readme_dir, create=False) as st:
            st.check()


def test_binding_readme_names_exist():
    """bindings/python/README.md writes the C ABI's names as calls
    (`shm_obj_id()`), each declared in bindings/capi/shmstore.h, so that
    none reads as a Python attribute; the proxies' attributes it names
    (`_shm_...`) exist."""
    with open(os.path.join(ROOT, "bindings", "python", "README.md")) as f:
        text = f.read()
    with open(os.path.join(ROOT, "bindings", "capi", "shmstore.h")) as f:
        header = f.read()
    c_names = re.findall(r"`(shm_\w*)(\(\))?`", text)
    assert c_names, "the README names no C function: this test checks nothing"
    for name, call in c_names:
        assert call, f"`{name}` reads as a Python attribute: write the C function as `{name}()`"
        assert re.search(rf"\b{name}\(", header), f"`{name}()` is not declared in shmstore.h"
    attrs = re.findall(r"`(_shm_\w+)`", text)
    assert attrs
    for name in attrs:
        for cls in (shmstore.Dict, shmstore.List, shmstore.Counter, shmstore.Queue, shmstore.Object):
            assert hasattr(cls, name), f"{cls.__name__} has no attribute {name}"
