"""Which integration tests run where, by selection, never by skipping (in CI a
skipped root test is a failure):

- `v2guest`: needs a pure cgroup v2 host (every controller on the unified
  hierarchy); selected only inside the v2 guest (`LINX_IN_V2_GUEST=1`, set by
  ../shared/vm/run-in-v2-guest and by .ci/run's guest job), deselected elsewhere;
- `v1host`: needs cgroup v1 hierarchies; deselected inside the v2 guest.
"""

from __future__ import annotations

import os

import pytest

IN_V2_GUEST = os.environ.get("LINX_IN_V2_GUEST") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "v2guest: runs only inside the pure cgroup v2 guest (LINX_IN_V2_GUEST=1)")
    config.addinivalue_line("markers", "v1host: needs cgroup v1 hierarchies; not run inside the v2 guest")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    unwanted = "v1host" if IN_V2_GUEST else "v2guest"
    drop = [item for item in items if unwanted in item.keywords]
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if unwanted not in item.keywords]
