#!/usr/bin/env python3
"""Print pip constraints pinning every dependency of pyproject.toml (runtime, the
given extras, and the build backend) to its declared lower bound: `x>=1.2,<2` ->
`x==1.2`.  .ci/run's lowest-versions job installs with them, so a lower bound
that does not work fails CI instead of a user's install.

    .ci/lowest-constraints.py [EXTRA...] > constraints.txt
"""

import re
import sys
import tomllib
from pathlib import Path

REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*)")


def lowest(requirement: str) -> str:
    m = REQ.match(requirement)
    if not m:
        raise SystemExit(f"lowest-constraints: cannot parse requirement {requirement!r}")
    name, spec = m.group(1), m.group(2)
    bounds = re.findall(r">=\s*([0-9][^,\s]*)", spec)
    if len(bounds) != 1:
        raise SystemExit(f"lowest-constraints: {requirement!r} needs exactly one `>=` lower bound")
    return f"{name}=={bounds[0]}"


def main(extras: list[str]) -> None:
    meta = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    reqs = list(meta["project"]["dependencies"]) + list(meta["build-system"]["requires"])
    for extra in extras:
        reqs += meta["project"]["optional-dependencies"][extra]
    print("\n".join(lowest(r) for r in reqs))


if __name__ == "__main__":
    main(sys.argv[1:])
