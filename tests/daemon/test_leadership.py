"""A leader that cannot reach the history stands down on its own monotonic clock.

The rig's daemon (a fake clock, SQLite) leads; then its heartbeats fail as when the
database is unreachable. It keeps leading while its last successful heartbeat is younger
than the leadership's lifetime, measured on the monotonic clock: a jump of the wall clock
(an NTP step, a skewed host) neither ends nor stretches it; past the lifetime it stands
down, as the other daemons, which judge its row on the database's clock, may lead by then.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from planner.errors import StoreError


def _unreachable(*_args: object, **_kwargs: object) -> bool:
    raise StoreError("postgresql+psycopg://db/planner", "connection refused")


def test_a_leader_without_heartbeats_stands_down_after_its_lifetime_on_the_monotonic_clock(
    rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = rig([0.1])
    r.daemon.tick()
    entry = r.daemon.entries["grow"]
    assert entry.leader
    monkeypatch.setattr(r.store, "heartbeat_leader", _unreachable)

    r.clock.advance(10)
    r.daemon.tick()  # fails: said, and still the leader
    assert entry.leader
    assert "leadership: postgresql+psycopg://db/planner: connection refused" in r.out.getvalue()

    # the wall clock jumps an hour ahead (monotonic time does not): still the leader
    r.clock._now += timedelta(hours=1)  # the fake clock's wall time alone
    r.daemon.tick()
    assert entry.leader, r.out.getvalue()

    r.clock.advance(19.5)  # 29.5 s of monotonic time since the last successful beat
    r.daemon.tick()
    assert entry.leader
    r.clock.advance(1.0)  # past the 30 s lifetime
    r.daemon.tick()
    assert not entry.leader
    assert "no longer leads it: no heartbeat for" in r.out.getvalue()
    assert "grow" not in r.timer.at  # and it schedules nothing more
