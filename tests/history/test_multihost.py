"""Several hosts on one PostgreSQL history whose clocks disagree by minutes.

Each "host" is a store with its own clock (the clock seam): one 5 minutes fast, one
5 minutes slow, one right. Leases and leaders are judged on the database server's clock,
so skew changes nothing: a live lease is never taken, however far ahead a host's clock
runs, and an expired one is taken, however far behind it runs. ``planner status`` judges
the rows on the same clock.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest

from planner.clock import SYSTEM_CLOCK
from planner.history import HistoryStore, LeaseHolder, LeaseOwner, LeaseResult, TakeoverReason
from planner.service.status import pipeline_status

pytestmark = pytest.mark.postgres

TTL = 1.5
SKEW = timedelta(minutes=5)


class SkewedClock:
    """The system clock moved by ``offset`` (monotonic time is not skewed)."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return SYSTEM_CLOCK.now() + self.offset

    def monotonic(self) -> float:
        return SYSTEM_CLOCK.monotonic()

    def sleep(self, seconds: float) -> None:
        SYSTEM_CLOCK.sleep(seconds)


@pytest.fixture
def hosts(pg_fresh_url: str) -> Iterator[dict[str, HistoryStore]]:
    """Three hosts on one database: ``fast`` (+5 min), ``slow`` (-5 min), ``right``."""
    made = {
        "fast": HistoryStore(pg_fresh_url, clock=SkewedClock(SKEW)),
        "slow": HistoryStore(pg_fresh_url, clock=SkewedClock(-SKEW)),
        "right": HistoryStore(pg_fresh_url),
    }
    try:
        yield made
    finally:
        for store in made.values():
            store.close()


Acquire = Callable[[HistoryStore, str, LeaseOwner, float, datetime], LeaseResult]
Beat = Callable[[HistoryStore, str, str, float, datetime], bool]
Rows = Callable[[HistoryStore, str], LeaseHolder | None]

KINDS = {
    "lease": (
        lambda s, p, o, ttl, now: s.acquire_lease(p, o, ttl, now),
        lambda s, p, o, ttl, now: s.heartbeat(p, o, ttl, now),
        lambda s, p: s.get_lease(p),
    ),
    "leader": (
        lambda s, p, o, ttl, now: s.acquire_leader(p, o, ttl, now),
        lambda s, p, o, ttl, now: s.heartbeat_leader(p, o, ttl, now),
        lambda s, p: s.leaders([p]).get(p),
    ),
}


def _wait_past(store: HistoryStore, at: datetime) -> None:
    """Until the server's clock has passed ``at`` (what other hosts will judge by)."""
    deadline = time.monotonic() + 30
    while store.lease_time() <= at:
        assert time.monotonic() < deadline, "the server's clock did not pass the expiry"
        time.sleep(0.05)


@pytest.mark.parametrize("kind", ["lease", "leader"])
def test_a_skewed_host_neither_takes_a_live_lease_nor_misses_an_expired_one(
    hosts: dict[str, HistoryStore], kind: str
) -> None:
    acquire, beat, row = KINDS[kind]
    fast, slow, right = hosts["fast"], hosts["slow"], hosts["right"]
    owners = {
        name: LeaseOwner(f"{name}-owner", f"host-{name}", os.getpid(), f"run-{name}")
        for name in hosts
    }
    # the slow host (-5 min) takes it: on caller-clock leases its expiry would lie
    # 5 minutes in the past of every other host, and anyone could take it at once
    got = acquire(slow, "etl", owners["slow"], TTL, slow._clock.now())
    assert got.acquired
    server_now = right.lease_time()
    assert abs((got.holder.acquired_at - server_now).total_seconds()) < 5  # server time
    assert got.holder.expires_at == got.holder.acquired_at + timedelta(seconds=TTL)

    # the fast host (+5 min) and the right one are refused while it lives, passing
    # their own "now" (the caller's clock is not what a server-clock lease is judged by)
    for name in ("fast", "right"):
        other = hosts[name]
        refused = acquire(other, "etl", owners[name], TTL, other._clock.now())
        assert not refused.acquired, name
        assert refused.holder.owner_id == "slow-owner"
    # the slow host's heartbeat extends it on the server's clock, not to its own time
    time.sleep(TTL / 3)
    assert beat(slow, "etl", "slow-owner", TTL, slow._clock.now())
    held = row(slow, "etl")
    assert held is not None
    assert held.heartbeat_at > got.holder.heartbeat_at
    assert abs(held.expires_at - (right.lease_time() + timedelta(seconds=TTL))) < timedelta(
        seconds=1
    )
    assert not acquire(fast, "etl", owners["fast"], TTL, fast._clock.now()).acquired

    # the slow host stops beating: once the lease really expired, the fast host takes it
    # (5 minutes early by the slow host's clock, which does not matter)
    _wait_past(right, held.expires_at)
    took = acquire(fast, "etl", owners["fast"], TTL, fast._clock.now())
    assert took.acquired and took.reason is TakeoverReason.EXPIRED
    assert took.previous is not None and took.previous.owner_id == "slow-owner"
    assert not beat(slow, "etl", "slow-owner", TTL, slow._clock.now())  # lost, said so

    # and the slow host takes an expired lease of the fast one without waiting 5 minutes
    # of its own clock for an expiry that, by its clock, lies in the future
    taken_at = time.monotonic()
    _wait_past(right, took.holder.expires_at)
    back = acquire(slow, "etl", owners["slow"], TTL, slow._clock.now())
    assert back.acquired and back.reason is TakeoverReason.EXPIRED
    assert time.monotonic() - taken_at < TTL + 5


def test_planner_status_judges_the_leader_on_the_server_clock(
    hosts: dict[str, HistoryStore],
) -> None:
    """``planner status`` on a host 5 minutes fast still shows a live leader as live, and
    one 5 minutes slow shows an expired leader as expired (times are the server's)."""
    fast, slow, right = hosts["fast"], hosts["slow"], hosts["right"]
    daemon = LeaseOwner("daemon-1", "host-right", os.getpid())
    assert right.acquire_leader("etl", daemon, TTL).acquired
    (seen_fast,) = pipeline_status(fast, ["etl"], fast._clock.now())
    assert seen_fast["leader"]["alive"] is True
    assert seen_fast["leader"]["host"] == "host-right"
    _wait_past(right, right.leaders(["etl"])["etl"].expires_at)
    (seen_slow,) = pipeline_status(slow, ["etl"], slow._clock.now())
    assert seen_slow["leader"]["alive"] is False
    expires = datetime.fromisoformat(seen_slow["leader"]["expires_at"])
    assert abs((expires - right.lease_time()).total_seconds()) < 5  # a server time, shown as is


def test_a_run_on_a_skewed_host_is_refused_while_the_lease_lives(
    hosts: dict[str, HistoryStore],
) -> None:
    """What ``planner run`` asks: the deferral check of the daemon (``active_run``) reads
    the same clock, so a host 5 minutes fast sees the other host's run as active."""
    from pathlib import Path

    from planner.service import Instance
    from planner.service.scheduling import active_run

    right, fast = hosts["right"], hosts["fast"]
    running = LeaseOwner("run-owner", "host-right", os.getpid(), "run-1")
    assert right.acquire_lease("etl", running, TTL).acquired
    instance = Instance(fast, Path("unused-models"), clock=fast._clock)
    holder = active_run(instance, "etl")
    assert holder is not None and holder.run_id == "run-1"
    _wait_past(right, holder.expires_at)
    assert active_run(instance, "etl") is None


# -- host ids -----------------------------------------------------------------------------


def test_the_host_id_comes_from_planner_host_id(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from planner.hosts import host_id

    monkeypatch.delenv("PLANNER_HOST_ID", raising=False)
    assert host_id() == socket.gethostname() == LeaseOwner.here().host
    monkeypatch.setenv("PLANNER_HOST_ID", "  batch-02 ")
    assert host_id() == "batch-02" == LeaseOwner.here("r").host
    monkeypatch.setenv("PLANNER_HOST_ID", " ")
    assert host_id() == socket.gethostname()  # blank: the default


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_dead_holder_is_seen_only_by_its_own_host_id(
    monkeypatch: pytest.MonkeyPatch, tmp_path, request: pytest.FixtureRequest, backend: str
) -> None:
    """Two processes of one machine with distinct host ids are two hosts to each other:
    a holder whose pid is gone is taken over at once only under its own host id."""
    import subprocess
    import sys

    url = (
        f"sqlite:///{tmp_path / 'h.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_fresh_url")
    )
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with HistoryStore(url) as store:
        monkeypatch.setenv("PLANNER_HOST_ID", "host-x")
        dead = LeaseOwner.here("dead-run")
        assert store.acquire_lease(
            "etl", LeaseOwner(dead.owner_id, dead.host, gone.pid, "dead-run"), 600
        ).acquired
        monkeypatch.setenv("PLANNER_HOST_ID", "host-y")
        refused = store.acquire_lease("etl", LeaseOwner.here("run-y"), 600)
        assert not refused.acquired and refused.holder.host == "host-x"
        monkeypatch.setenv("PLANNER_HOST_ID", "host-x")
        took = store.acquire_lease("etl", LeaseOwner.here("run-x"), 600)
        assert took.acquired and took.reason is TakeoverReason.OWNER_DEAD
        assert took.previous_run_id == "dead-run"
