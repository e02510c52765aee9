"""Builds the C agent with the system C compiler as part of `pip install .`.

The agent is an executable, not a Python extension, so it is compiled by a
build_py hook into linx_spec/_bin/; `has_ext_modules` makes the wheel
platform-tagged (it carries a native binary)."""

import glob
import os
import shlex
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
WARN = "-std=gnu11 -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-unused-parameter -D_FORTIFY_SOURCE=2"


class BuildAgent(build_py):
    def run(self):
        super().run()
        out_dir = os.path.join(self.build_lib, "linx_spec", "_bin")
        os.makedirs(out_dir, exist_ok=True)
        out = os.path.join(out_dir, "linx-agent")
        cc = os.environ.get("CC", "cc")
        cflags = os.environ.get("LINX_AGENT_CFLAGS", "-O2 -g")
        sources = sorted(glob.glob(os.path.join(HERE, "agent", "lx_*.c")))
        cmd = [*shlex.split(cc), *shlex.split(cflags), *WARN.split(), "-o", out, *sources]
        # Static when the C library allows it: the agent starts once per
        # workload, and a static one skips the dynamic loader (~0.15 ms, bench/).
        static = [*cmd[:-len(sources)], "-static", *sources]
        print("building the agent:", " ".join(static))
        if subprocess.run(static).returncode != 0:
            print("static link failed; building a dynamic agent:", " ".join(cmd))
            subprocess.run(cmd, check=True)


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


setup(cmdclass={"build_py": BuildAgent}, distclass=BinaryDistribution)
