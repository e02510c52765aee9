"""Builds the C agent with the system C compiler as part of `pip install .`.

The agent is an executable, not a Python extension, so it is compiled by a
build_py hook into linx_spec/_bin/.  The wheel carries that native binary and
no extension module, so it fits every Python 3 of its platform: it is tagged
py3-none-<platform> (e.g. py3-none-linux_x86_64), not cpXY-cpXY.

Warnings are errors only in development builds (LINX_AGENT_WERROR=1, and
agent/Makefile, which the tests use): a newer compiler's new warning must not
break a user's `pip install`.  A missing or failing compiler ends the build with
a message naming the system packages to install, not a Python traceback."""

import glob
import os
import shlex
import shutil
import subprocess

from setuptools import setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
WARN = "-std=gnu11 -Wall -Wextra -Wshadow -Wformat=2 -Wno-unused-parameter -D_FORTIFY_SOURCE=2"
PACKAGES_HINT = ("install a C compiler and the C library headers first, e.g. "
                 "`apt-get install gcc libc6-dev` (Debian/Ubuntu) or `dnf install gcc glibc-devel` (Fedora)")


def _fail(message: str) -> None:
    # SystemExit with a string: the build backend prints it and exits 1, no traceback.
    raise SystemExit(f"error: linx-spec: {message}")


def agent_command(cc: str, cflags: str, werror: bool, out: str, sources: list[str], static: bool) -> list[str]:
    if not sources:
        _fail(f"no agent sources (agent/lx_*.c) under {HERE}: the source tree or sdist is incomplete")
    warn = WARN.split() + (["-Werror"] if werror else [])
    return [*shlex.split(cc), *shlex.split(cflags), *warn, *(["-static"] if static else []), "-o", out, *sources]


def build_agent(out: str) -> None:
    cc = os.environ.get("CC", "cc")
    cflags = os.environ.get("LINX_AGENT_CFLAGS", "-O2 -g")
    werror = os.environ.get("LINX_AGENT_WERROR") == "1"
    sources = sorted(glob.glob(os.path.join(HERE, "agent", "lx_*.c")))
    program = (shlex.split(cc) or [""])[0]
    if not program or shutil.which(program) is None:
        _fail(f"the C agent needs a C compiler and `{cc}` was not found; {PACKAGES_HINT}")
    # Static when the C library allows it: the agent starts once per
    # workload, and a static one skips the dynamic loader (~0.15 ms, bench/).
    static = agent_command(cc, cflags, werror, out, sources, static=True)
    print("building the agent:", " ".join(static))
    if subprocess.run(static).returncode == 0:
        return
    dynamic = agent_command(cc, cflags, werror, out, sources, static=False)
    print("static link failed; building a dynamic agent:", " ".join(dynamic))
    if subprocess.run(dynamic).returncode != 0:
        _fail(f"compiling the C agent with `{cc}` failed (see the compiler's messages above); "
              f"missing headers such as stdio.h mean the C library headers are not installed: {PACKAGES_HINT}")


class BuildAgent(build_py):
    def run(self):
        super().run()
        out_dir = os.path.join(self.build_lib, "linx_spec", "_bin")
        os.makedirs(out_dir, exist_ok=True)
        build_agent(os.path.join(out_dir, "linx-agent"))
        # The JSON Schema ships inside the package too (linx_spec.schema.SCHEMA_FILE): an
        # installed linx-spec can point editors at it without the source tree.
        shutil.copyfile(os.path.join(HERE, "schema", "linx-spec.schema.json"),
                        os.path.join(self.build_lib, "linx_spec", "linx-spec.schema.json"))


class BinaryDistribution(Distribution):
    # A native file inside: the wheel goes to platlib and gets a platform tag.
    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    def get_tag(self):
        _python, _abi, plat = super().get_tag()
        return "py3", "none", plat


# bin/linx-spec: a script, not a [project.scripts] entry point (see the file).
setup(cmdclass={"build_py": BuildAgent, "bdist_wheel": PlatformWheel}, distclass=BinaryDistribution,
      scripts=["bin/linx-spec"])
