"""Time namespace offsets (issue 20): `namespaces: [time]` with
`time: {monotonic: 1h, boottime: 24h}`.  The workload's own /proc/uptime
(CLOCK_BOOTTIME) and CLOCK_MONOTONIC are the host's plus the offsets, read
from inside, with and without a user namespace of its own."""

from __future__ import annotations

import time

import pytest

from conftest import cli

pytestmark = pytest.mark.root

READ = ("/usr/bin/python3", "-c", "import time; print(open('/proc/uptime').read().split()[0], "
        "time.clock_gettime(time.CLOCK_MONOTONIC))")


def _spec(namespaces: str) -> str:
    return f"""
version: 1
namespaces: {namespaces}
time: {{monotonic: 3600s, boottime: 24h}}
process: {{command: {list(READ)}}}
"""


@pytest.mark.parametrize("namespaces", ["[time]", "[user, time, pid, mount]"])
def test_uptime_and_monotonic_are_shifted_inside(write_spec, namespaces):
    path = write_spec(_spec(namespaces))
    before_boot, before_mono = time.clock_gettime(time.CLOCK_BOOTTIME), time.monotonic()
    proc = cli("apply", str(path))
    after_boot, after_mono = time.clock_gettime(time.CLOCK_BOOTTIME), time.monotonic()
    assert proc.returncode == 0, proc.stderr
    uptime, mono = map(float, proc.stdout.split())
    assert before_boot + 86400 - 1 <= uptime <= after_boot + 86400 + 1
    assert before_mono + 3600 <= mono <= after_mono + 3600


def test_offsets_without_the_namespace_are_a_spec_error(write_spec):
    proc = cli("apply", str(write_spec("version: 1\nnamespaces: [pid]\ntime: {boottime: 24h}\n"
                                       "process: {command: [/bin/true]}\n")))
    assert proc.returncode == 65
    assert "add `time` to namespaces" in proc.stderr


def test_a_new_time_namespace_without_offsets_reads_the_host_clocks(write_spec):
    path = write_spec(f"version: 1\nnamespaces: [time]\nprocess: {{command: {list(READ)}}}\n")
    before = time.clock_gettime(time.CLOCK_BOOTTIME)
    proc = cli("apply", str(path))
    assert proc.returncode == 0, proc.stderr
    uptime = float(proc.stdout.split()[0])
    assert before - 1 <= uptime <= time.clock_gettime(time.CLOCK_BOOTTIME) + 1
