"""Leases: one holder per pipeline, takeover when expired or when its process is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta

import psutil

from planner.history import (
    HistoryStore,
    LeaseHolder,
    LeaseOwner,
    TakeoverReason,
    holder_process_alive,
)

from .conftest import T0


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_free_lease_is_acquired_then_held(store: HistoryStore) -> None:
    first = LeaseOwner("owner-1", "host-a", os.getpid(), "run-1")
    got = store.acquire_lease("nightly", first, 60, T0)
    assert got.acquired and got.previous is None and got.reason is None
    assert got.holder.expires_at == T0 + timedelta(seconds=60)

    second = LeaseOwner("owner-2", "host-a", os.getpid(), "run-2")
    refused = store.acquire_lease("nightly", second, 60, T0 + timedelta(seconds=59))
    assert not refused.acquired
    held = refused.holder
    assert (held.owner_id, held.host, held.pid, held.run_id) == (
        "owner-1", "host-a", os.getpid(), "run-1",
    )  # fmt: skip
    assert (held.acquired_at, held.heartbeat_at) == (T0, T0)
    assert held.expires_at == T0 + timedelta(seconds=60)
    # another pipeline is independent
    assert store.acquire_lease("other", second, 60, T0).acquired
    # the holder may ask again (idempotent), keeping its acquisition time
    again = store.acquire_lease("nightly", first, 60, T0 + timedelta(seconds=30))
    assert again.acquired and again.holder.acquired_at == T0
    assert again.holder.expires_at == T0 + timedelta(seconds=90)


def test_expired_lease_is_taken_over_and_names_the_dead_run(store: HistoryStore) -> None:
    old = LeaseOwner("owner-1", "host-b", 1, "run-1")
    assert store.acquire_lease("nightly", old, 60, T0).acquired
    new = LeaseOwner("owner-2", "host-a", os.getpid(), "run-2")
    assert not store.acquire_lease("nightly", new, 60, T0 + timedelta(seconds=59)).acquired
    took = store.acquire_lease("nightly", new, 60, T0 + timedelta(seconds=60))
    assert took.acquired and took.reason is TakeoverReason.EXPIRED
    assert took.previous_run_id == "run-1"
    assert store.get_lease("nightly").owner_id == "owner-2"  # type: ignore[union-attr]
    # the old owner has lost it
    assert not store.heartbeat("nightly", "owner-1", 60, T0 + timedelta(seconds=61))


def test_same_host_dead_owner_is_taken_over_at_once(store: HistoryStore) -> None:
    gone = dead_pid()
    store.acquire_lease("nightly", LeaseOwner("owner-1", "host-a", gone, "run-1"), 3600, T0)
    # another host cannot see that process: it waits for the expiry
    elsewhere = LeaseOwner("owner-3", "host-b", os.getpid(), "run-3")
    assert not store.acquire_lease("nightly", elsewhere, 60, T0 + timedelta(seconds=1)).acquired
    here = LeaseOwner("owner-2", "host-a", os.getpid(), "run-2")
    took = store.acquire_lease("nightly", here, 60, T0 + timedelta(seconds=1))
    assert took.acquired and took.reason is TakeoverReason.OWNER_DEAD
    assert took.previous is not None and took.previous.pid == gone
    assert took.previous_run_id == "run-1"


def test_same_host_live_owner_keeps_it(store_url: str) -> None:
    # the holder's process is alive: the injected check says so
    store = HistoryStore(store_url, alive=lambda holder: True)
    try:
        store.acquire_lease("nightly", LeaseOwner("owner-1", "host-a", 12345, "run-1"), 60, T0)
        refused = store.acquire_lease(
            "nightly", LeaseOwner("owner-2", "host-a", 1, "run-2"), 60, T0 + timedelta(seconds=1)
        )
        assert not refused.acquired and refused.holder.owner_id == "owner-1"
    finally:
        store.close()


def test_heartbeat_extends_and_release_frees(store: HistoryStore) -> None:
    owner = LeaseOwner("owner-1", "host-b", 1, "run-1")
    store.acquire_lease("nightly", owner, 60, T0)
    assert store.heartbeat("nightly", "owner-1", 60, T0 + timedelta(seconds=50))
    lease = store.get_lease("nightly")
    assert lease is not None and lease.run_id == "run-1"
    assert lease.heartbeat_at == T0 + timedelta(seconds=50)
    assert lease.expires_at == T0 + timedelta(seconds=110)
    other = LeaseOwner("owner-2", "host-a", os.getpid(), "run-2")
    assert not store.acquire_lease("nightly", other, 60, T0 + timedelta(seconds=100)).acquired
    store.release_lease("nightly", "owner-2")  # not the holder: nothing happens
    assert store.get_lease("nightly") is not None
    store.release_lease("nightly", "owner-1")
    assert store.get_lease("nightly") is None
    assert not store.heartbeat("nightly", "owner-1", 60, T0 + timedelta(seconds=101))
    assert store.acquire_lease("nightly", other, 60, T0 + timedelta(seconds=101)).acquired


def _holder(pid: int) -> LeaseHolder:
    return LeaseHolder("p", "o", "h", pid, None, T0, T0, T0)


def test_holder_process_alive_sees_dead_and_zombie_pids() -> None:
    assert holder_process_alive(_holder(os.getpid()))
    assert not holder_process_alive(_holder(dead_pid()))
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not holder_process_alive(_holder(zombie.pid))
    finally:
        zombie.wait()
