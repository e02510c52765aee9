"""host/network_teardown.py: deferred veth deletes, without root (the deletes are
fakes that block until released): who waits for what, and errors reach settle()."""

from __future__ import annotations

import threading

import pytest

from linx_spec.host import network_teardown as nt


@pytest.fixture(autouse=True)
def drained():
    nt.settle(5)
    yield
    nt.settle(5)


def _blocked(name: str, addresses=frozenset()):
    release, started = threading.Event(), threading.Event()

    def delete():
        started.set()
        assert release.wait(5)

    nt.defer(name, frozenset(addresses), delete)
    assert started.wait(5)
    return release


def test_the_same_name_or_address_waits_for_the_pending_delete():
    release = _blocked("lxa0", {"10.9.9.1"})
    assert nt.pending() == ["lxa0"]
    nt.wait_for("lxb0", {"10.9.9.5"}, timeout=0)  # neither name nor address: does not wait
    waited = threading.Event()
    t = threading.Thread(target=lambda: (nt.wait_for("lxc0", {"10.9.9.1"}), waited.set()))
    t.start()
    assert not waited.wait(0.2)  # the address is still on the pending host end
    release.set()
    assert waited.wait(5)
    t.join(5)
    assert nt.pending() == []


def test_settle_waits_for_all_and_raises_a_failed_delete_once():
    release = _blocked("lxa1")
    assert nt.settle(timeout=0.05) is False
    release.set()
    assert nt.settle(5) is True

    def failing():
        raise OSError(16, "busy")

    nt.defer("lxa2", frozenset(), failing)
    with pytest.raises(OSError):
        nt.settle(5)
    assert nt.settle(5) is True  # reported once


def test_a_forked_child_does_not_wait_for_its_parents_deletes():
    import os

    release = _blocked("lxa3")
    pid = os.fork()
    if pid == 0:  # the child: nothing pending, settle() returns at once
        os._exit(0 if nt.pending() == [] and nt.settle(1) is True else 1)
    _, status = os.waitpid(pid, 0)
    release.set()
    assert os.waitstatus_to_exitcode(status) == 0
    assert nt.settle(5) is True


def test_at_most_max_pending_deletes_wait_at_once(monkeypatch):
    # Workloads ending faster than the kernel deletes their veths: defer() waits
    # instead of piling up a socket per pending delete.
    monkeypatch.setattr(nt, "MAX_PENDING", 2)
    release = _blocked("lxq0")
    nt.defer("lxq1", frozenset(), lambda: None)  # queued behind the blocked one: 2 pending
    third = threading.Event()
    t = threading.Thread(target=lambda: (nt.defer("lxq2", frozenset(), lambda: None), third.set()))
    t.start()
    assert not third.wait(0.2) and len(nt.pending()) == 2
    release.set()
    assert third.wait(5)
    t.join(5)
    assert nt.settle(5) is True
