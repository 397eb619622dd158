"""The scheduler's side of the history: leaders (one daemon per pipeline, taken like a
lease) and decisions (what it decided, when, why), on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

from planner.history import DecisionRecord, HistoryStore, LeaseOwner, TakeoverReason

from .conftest import T0, LeaseClock


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -- leaders ------------------------------------------------------------------------------


#: The leadership lifetime of these tests: about a second, waited out on PostgreSQL.
TTL = 1.2


def test_a_free_leadership_is_taken_and_a_second_daemon_refused(
    leased: tuple[HistoryStore, LeaseClock],
) -> None:
    store, clock = leased
    first = LeaseOwner("daemon-1", "host-a", os.getpid())
    got = store.acquire_leader("nightly", first, TTL)
    assert got.acquired and got.previous is None and got.reason is None
    t0 = got.holder.acquired_at
    assert got.holder.expires_at == t0 + timedelta(seconds=TTL)
    assert got.holder.run_id is None

    second = LeaseOwner("daemon-2", "host-b", 4242)
    clock.wait(TTL / 4)
    refused = store.acquire_leader("nightly", second, TTL)
    assert not refused.acquired
    assert (refused.holder.owner_id, refused.holder.host) == ("daemon-1", "host-a")
    # the leader asking again keeps it, and its acquisition time
    again = store.acquire_leader("nightly", first, TTL)
    assert again.acquired and again.holder.acquired_at == t0
    assert again.holder.expires_at == again.holder.heartbeat_at + timedelta(seconds=TTL)
    # another pipeline is independent
    assert store.acquire_leader("hourly", second, TTL).acquired
    assert list(store.leaders()) == ["hourly", "nightly"]


def test_leaders_and_run_leases_are_separate_tables(store: HistoryStore) -> None:
    daemon = LeaseOwner("daemon-1", "host-a", os.getpid())
    run = LeaseOwner("run-owner", "host-a", os.getpid(), "run-1")
    assert store.acquire_leader("nightly", daemon, 60).acquired
    assert store.acquire_lease("nightly", run, 60).acquired  # not blocked by the leader
    assert store.get_lease("nightly").run_id == "run-1"  # type: ignore[union-attr]
    assert store.leaders()["nightly"].owner_id == "daemon-1"
    assert not store.release_leader("nightly", "run-owner")  # a lease owner is no leader
    assert store.release_leader("nightly", "daemon-1")
    assert store.get_lease("nightly") is not None  # the run's lease stays


def test_heartbeat_extends_and_release_frees(leased: tuple[HistoryStore, LeaseClock]) -> None:
    store, clock = leased
    owner = LeaseOwner("daemon-1", "host-a", os.getpid())
    first = store.acquire_leader("nightly", owner, TTL).holder
    clock.wait(TTL * 0.75)
    assert store.heartbeat_leader("nightly", "daemon-1", TTL)
    row = store.leaders(["nightly"])["nightly"]
    assert row.heartbeat_at >= first.acquired_at + timedelta(seconds=TTL * 0.75)
    assert row.expires_at == row.heartbeat_at + timedelta(seconds=TTL)
    assert not store.heartbeat_leader("nightly", "someone-else", TTL)
    assert not store.heartbeat_leader("hourly", "daemon-1", TTL)

    assert not store.release_leader("nightly", "someone-else")
    assert store.release_leader("nightly", "daemon-1")
    assert not store.release_leader("nightly", "daemon-1")  # gone already
    assert store.leaders() == {}
    other = LeaseOwner("daemon-2", "host-b", 7)
    assert store.acquire_leader("nightly", other, TTL).acquired


def test_an_expired_leader_is_taken_over_and_loses_its_heartbeat(
    leased: tuple[HistoryStore, LeaseClock],
) -> None:
    store, clock = leased
    old = LeaseOwner("daemon-1", "host-b", 1)
    held = store.acquire_leader("nightly", old, TTL).holder
    new = LeaseOwner("daemon-2", "host-a", os.getpid())
    assert not store.acquire_leader("nightly", new, TTL).acquired
    clock.wait(TTL + 0.1)
    took = store.acquire_leader("nightly", new, TTL)
    assert took.acquired and took.reason is TakeoverReason.EXPIRED
    assert took.holder.acquired_at >= held.expires_at
    assert took.previous is not None and took.previous.owner_id == "daemon-1"
    assert not store.heartbeat_leader("nightly", "daemon-1", TTL)
    assert store.leaders()["nightly"].owner_id == "daemon-2"


def test_a_dead_leader_on_this_host_is_replaced_at_once(store: HistoryStore) -> None:
    gone = dead_pid()
    dying = LeaseOwner("daemon-1", "host-a", gone)
    assert store.acquire_leader("nightly", dying, 3600).acquired
    elsewhere = LeaseOwner("daemon-3", "host-b", os.getpid())
    assert not store.acquire_leader("nightly", elsewhere, 60).acquired
    here = LeaseOwner("daemon-2", "host-a", os.getpid())
    took = store.acquire_leader("nightly", here, 60)
    assert took.acquired and took.reason is TakeoverReason.OWNER_DEAD
    assert took.previous is not None and took.previous.pid == gone


def test_leaders_lists_expired_rows_and_filters(leased: tuple[HistoryStore, LeaseClock]) -> None:
    store, clock = leased
    for name in ("a", "b", "c"):
        store.acquire_leader(name, LeaseOwner(f"d-{name}", "h", os.getpid()), 0.2)
    clock.wait(0.3)
    rows = store.leaders()
    assert list(rows) == ["a", "b", "c"]
    assert all(r.expires_at == r.acquired_at + timedelta(seconds=0.2) for r in rows.values())
    assert all(r.expires_at < clock.now() for r in rows.values())  # expired, still listed
    assert list(store.leaders(["c", "a", "missing"])) == ["a", "c"]
    assert store.leaders([]) == {}


# -- decisions ----------------------------------------------------------------------------


def test_a_decision_round_trips(store: HistoryStore) -> None:
    paris = timezone(timedelta(hours=1))
    at = datetime(2026, 3, 1, 13, 0, 0, 123456, tzinfo=paris)
    detail = {"window": [1, 2], "why": {"late": True}, "bound_s": 12.5, "none": None}
    decision_id = store.record_decision(
        "nightly",
        "scheduled",
        at,
        "the bound ends before 06:00",
        run_id="r1",
        next_start=at + timedelta(hours=1),
        interval_s=3600,
        detail=detail,
        owner_id="daemon-1",
        host="host-a",
    )
    (record,) = store.decisions()
    assert record == DecisionRecord(
        id=decision_id,
        pipeline="nightly",
        at=at.astimezone(UTC),
        kind="scheduled",
        run_id="r1",
        next_start=(at + timedelta(hours=1)).astimezone(UTC),
        interval_s=3600.0,
        reason="the bound ends before 06:00",
        detail=detail,
        owner_id="daemon-1",
        host="host-a",
    )
    assert record.at.tzinfo is not None and record.at.utcoffset() == timedelta(0)
    assert record.at == at  # the same instant
    bare = store.record_decision("nightly", "deferred", T0, "memory")
    (other,) = [d for d in store.decisions() if d.id == bare]
    assert other.detail == {} and other.next_start is None and other.interval_s is None
    assert (other.run_id, other.owner_id, other.host) == (None, None, None)


def test_decisions_newest_first_and_filtered(store: HistoryStore) -> None:
    made = []
    for minutes, pipeline, kind in [
        (0, "a", "scheduled"),
        (1, "a", "deferred"),
        (1, "a", "started"),  # the same instant: the later recorded comes first
        (2, "b", "scheduled"),
        (3, "a", "scheduled"),
    ]:
        at = T0 + timedelta(minutes=minutes)
        made.append(store.record_decision(pipeline, kind, at, f"{kind} at {minutes}"))
    assert [d.id for d in store.decisions()] == [made[4], made[3], made[2], made[1], made[0]]
    assert [d.id for d in store.decisions("a")] == [made[4], made[2], made[1], made[0]]
    assert [d.id for d in store.decisions("a", kinds={"scheduled"})] == [made[4], made[0]]
    assert [d.id for d in store.decisions(kinds=["deferred", "started"])] == [made[2], made[1]]
    assert store.decisions(kinds=[]) == []
    assert [d.id for d in store.decisions(limit=2)] == [made[4], made[3]]
    since = T0 + timedelta(minutes=1)
    assert [d.id for d in store.decisions("a", since=since)] == [made[4], made[2], made[1]]
    assert store.decisions("missing") == []


def test_last_decisions_per_pipeline(store: HistoryStore) -> None:
    def decide(pipeline: str, kind: str, minutes: int) -> int:
        at = T0 + timedelta(minutes=minutes)
        return store.record_decision(pipeline, kind, at, "r", next_start=at)

    decide("a", "scheduled", 0)
    a_last = decide("a", "scheduled", 5)
    a_tie = decide("a", "deferred", 7)
    a_tie_later = decide("a", "deferred", 7)  # same instant: the higher id wins
    decide("b", "scheduled", 9)
    b_old = decide("b", "scheduled", 1)  # recorded later, but older: not the newest
    c_only = decide("c", "deferred", 2)

    scheduled = store.last_decisions(["a", "b", "c", "missing"], "scheduled")
    assert list(scheduled) == ["a", "b"]
    assert scheduled["a"].id == a_last
    assert scheduled["b"].at == T0 + timedelta(minutes=9) and scheduled["b"].id != b_old
    deferred = store.last_decisions(["a", "c"], "deferred")
    assert {p: d.id for p, d in deferred.items()} == {"a": a_tie_later, "c": c_only}
    assert a_tie != a_tie_later
    assert store.last_decisions([], "scheduled") == {}
    # every pipeline, and any kind
    newest = store.last_decisions(None)
    assert {p: d.kind for p, d in newest.items()} == {
        "a": "deferred",
        "b": "scheduled",
        "c": "deferred",
    }
    assert store.last_decisions(None, "scheduled").keys() == {"a", "b"}
