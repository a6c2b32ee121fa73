"""Build shmstore's Python package: the Go library (libshmstore.so, built
with go build -buildmode=c-shared from bindings/capi) and the C extension
shmstore._shmstore, which loads that library from the package directory.

    # Debian's Python; no network: setuptools is Debian's python3-setuptools
    /usr/bin/python3 -m pip install --no-build-isolation --break-system-packages ./bindings/python
    # (or, without touching the system: python3 -m venv --system-site-packages v && v/bin/pip install --no-build-isolation ./bindings/python)

    # in place, for the tests (what `make python` runs):
    cd bindings/python && /usr/bin/python3 setup.py build_ext --inplace

Environment:
    GO                      the go command (default: go on PATH, else /usr/local/go/bin/go)
    SHMSTORE_PREBUILT_LIB   use this libshmstore.so instead of building one
    CC, CFLAGS              as setuptools takes them
"""
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CAPI = os.path.join(ROOT, "bindings", "capi")
LIBNAME = "libshmstore.so"


def go_command():
    go = os.environ.get("GO") or shutil.which("go")
    if not go and os.path.exists("/usr/local/go/bin/go"):
        go = "/usr/local/go/bin/go"
    if not go:
        sys.exit("building shmstore needs Go (1.26 or newer) to build libshmstore.so: "
                 "install it, or set SHMSTORE_PREBUILT_LIB to a built library")
    return go


def build_library(build_temp):
    prebuilt = os.environ.get("SHMSTORE_PREBUILT_LIB")
    if prebuilt:
        return prebuilt
    if not os.path.exists(os.path.join(ROOT, "go.mod")):
        sys.exit("the shmstore sources (go.mod) are not two directories above setup.py: "
                 "build from the repository, or set SHMSTORE_PREBUILT_LIB")
    os.makedirs(build_temp, exist_ok=True)
    out = os.path.join(os.path.abspath(build_temp), LIBNAME)
    env = dict(os.environ, CGO_ENABLED="1")
    cmd = [go_command(), "build", "-buildmode=c-shared", "-o", out, "./bindings/capi"]
    print("building", LIBNAME + ":", " ".join(cmd), flush=True)
    subprocess.check_call(cmd, cwd=ROOT, env=env)
    header = os.path.splitext(out)[0] + ".h"  # cgo's own header; shmstore.h is the contract
    if os.path.exists(header):
        os.remove(header)
    return out


class BuildExt(build_ext):
    def run(self):
        lib = build_library(self.build_temp)
        super().run()
        for ext in self.extensions:
            dest = os.path.dirname(self.get_ext_fullpath(ext.name))
            os.makedirs(dest, exist_ok=True)
            target = os.path.join(dest, LIBNAME)
            if os.path.abspath(lib) != os.path.abspath(target):
                shutil.copy2(lib, target)


ext = Extension(
    "shmstore._shmstore",
    sources=["shmstore/_shmstore.c"],
    include_dirs=[CAPI],
    extra_compile_args=["-std=gnu11", "-Wall", "-Wextra",
                        "-fvisibility=hidden"],
    libraries=["dl"],
)

setup(
    name="shmstore",
    version="0.1.0",
    description="Python objects shared between processes in shared memory, with transactions",
    packages=["shmstore"],
    package_data={"shmstore": ["*.pyi", "py.typed", LIBNAME]},
    ext_modules=[ext],
    cmdclass={"build_ext": BuildExt},
    python_requires=">=3.9",
    zip_safe=False,
)
