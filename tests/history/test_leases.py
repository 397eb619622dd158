"""Leases: one holder per pipeline, takeover when expired or when its process is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import psutil

from planner.history import (
    HistoryStore,
    LeaseHolder,
    LeaseOwner,
    TakeoverReason,
    holder_process_alive,
)

from .conftest import T0, LeaseClock


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


#: The lease lifetime of these tests: about a second, waited out for real on PostgreSQL.
TTL = 1.2


def test_free_lease_is_acquired_then_held(leased: tuple[HistoryStore, LeaseClock]) -> None:
    store, clock = leased
    first = LeaseOwner("owner-1", "host-a", os.getpid(), "run-1")
    got = store.acquire_lease("nightly", first, TTL)
    assert got.acquired and got.previous is None and got.reason is None
    t0 = got.holder.acquired_at
    assert got.holder.heartbeat_at == t0 and t0 <= clock.now()
    assert got.holder.expires_at == t0 + timedelta(seconds=TTL)

    second = LeaseOwner("owner-2", "host-a", os.getpid(), "run-2")
    clock.wait(TTL / 4)
    refused = store.acquire_lease("nightly", second, TTL)
    assert not refused.acquired
    held = refused.holder
    assert (held.owner_id, held.host, held.pid, held.run_id) == (
        "owner-1", "host-a", os.getpid(), "run-1",
    )  # fmt: skip
    assert (held.acquired_at, held.heartbeat_at) == (t0, t0)
    assert held.expires_at == t0 + timedelta(seconds=TTL)
    # another pipeline is independent
    assert store.acquire_lease("other", second, TTL).acquired
    # the holder may ask again (idempotent), keeping its acquisition time
    again = store.acquire_lease("nightly", first, TTL)
    assert again.acquired and again.holder.acquired_at == t0
    assert again.holder.heartbeat_at > t0
    assert again.holder.expires_at == again.holder.heartbeat_at + timedelta(seconds=TTL)


def test_expired_lease_is_taken_over_and_names_the_dead_run(
    leased: tuple[HistoryStore, LeaseClock],
) -> None:
    store, clock = leased
    old = LeaseOwner("owner-1", "host-b", 1, "run-1")
    held = store.acquire_lease("nightly", old, TTL).holder
    new = LeaseOwner("owner-2", "host-a", os.getpid(), "run-2")
    assert not store.acquire_lease("nightly", new, TTL).acquired
    clock.wait(TTL + 0.1)
    assert clock.now() >= held.expires_at
    took = store.acquire_lease("nightly", new, TTL)
    assert took.acquired and took.reason is TakeoverReason.EXPIRED
    assert took.previous_run_id == "run-1"
    assert took.holder.acquired_at >= held.expires_at  # judged on the lease clock
    assert store.get_lease("nightly").owner_id == "owner-2"  # type: ignore[union-attr]
    # the old owner has lost it
    assert not store.heartbeat("nightly", "owner-1", TTL)


def test_same_host_dead_owner_is_taken_over_at_once(store: HistoryStore) -> None:
    gone = dead_pid()
    store.acquire_lease("nightly", LeaseOwner("owner-1", "host-a", gone, "run-1"), 3600)
    # another host cannot see that process: it waits for the expiry
    elsewhere = LeaseOwner("owner-3", "host-b", os.getpid(), "run-3")
    assert not store.acquire_lease("nightly", elsewhere, 60).acquired
    here = LeaseOwner("owner-2", "host-a", os.getpid(), "run-2")
    took = store.acquire_lease("nightly", here, 60)
    assert took.acquired and took.reason is TakeoverReason.OWNER_DEAD
    assert took.previous is not None and took.previous.pid == gone
    assert took.previous_run_id == "run-1"


def test_same_host_live_owner_keeps_it(store_url: str) -> None:
    # the holder's process is alive: the injected check says so
    store = HistoryStore(store_url, alive=lambda holder: True)
    try:
        store.acquire_lease("nightly", LeaseOwner("owner-1", "host-a", 12345, "run-1"), 60)
        refused = store.acquire_lease("nightly", LeaseOwner("owner-2", "host-a", 1, "run-2"), 60)
        assert not refused.acquired and refused.holder.owner_id == "owner-1"
    finally:
        store.close()


def test_heartbeat_extends_and_release_frees(leased: tuple[HistoryStore, LeaseClock]) -> None:
    store, clock = leased
    owner = LeaseOwner("owner-1", "host-b", 1, "run-1")
    first = store.acquire_lease("nightly", owner, TTL).holder
    clock.wait(TTL * 0.75)
    assert store.heartbeat("nightly", "owner-1", TTL)
    lease = store.get_lease("nightly")
    assert lease is not None and lease.run_id == "run-1"
    assert lease.heartbeat_at >= first.acquired_at + timedelta(seconds=TTL * 0.75)
    assert lease.expires_at == lease.heartbeat_at + timedelta(seconds=TTL)
    clock.wait(TTL * 0.5)  # past the first expiry, not past the extended one
    assert clock.now() > first.expires_at
    other = LeaseOwner("owner-2", "host-a", os.getpid(), "run-2")
    assert not store.acquire_lease("nightly", other, TTL).acquired
    store.release_lease("nightly", "owner-2")  # not the holder: nothing happens
    assert store.get_lease("nightly") is not None
    store.release_lease("nightly", "owner-1")
    assert store.get_lease("nightly") is None
    assert not store.heartbeat("nightly", "owner-1", TTL)
    assert store.acquire_lease("nightly", other, TTL).acquired


def test_sqlite_judges_leases_by_the_callers_clock(tmp_path: Path) -> None:
    """A SQLite history is one host's file: the caller's clock is the lease clock (and
    ``now`` may be passed explicitly); PostgreSQL ignores it (tests/history/test_multihost.py)."""
    with HistoryStore(f"sqlite:///{tmp_path / 'h.db'}") as store:
        owner = LeaseOwner("owner-1", "host-a", 1, "run-1")
        assert store.acquire_lease("nightly", owner, 60, T0).holder.expires_at == T0 + timedelta(
            seconds=60
        )
        assert store.lease_time(T0) == T0
        late = LeaseOwner("owner-2", "host-a", os.getpid(), "run-2")
        took = store.acquire_lease("nightly", late, 60, T0 + timedelta(seconds=60))
        assert took.acquired and took.reason is TakeoverReason.EXPIRED


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
