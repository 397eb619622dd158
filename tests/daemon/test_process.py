"""``planner daemon`` as real processes: real time, real child runs, real histories.

Each test starts ``python -m planner daemon`` on a one-step pipeline whose step sleeps the
next duration of a list (tests/daemon/process_helpers.py), then kills, signals or doubles
the daemon and reads what happened from the daemon's JSON decision lines and from the
history (``HistoryStore``). Every wait is a poll with a deadline; every process the test
started, and every ``planner run`` and task those started, is killed at the end.
"""

from __future__ import annotations

import signal
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon.process_helpers import (
    GRACE_S,
    LEADER_TTL_S,
    PIPELINE,
    DaemonProcess,
    Site,
    freeze_host,
    kill_frozen,
    run_children,
    wait_for,
)

pytestmark = pytest.mark.slow

CADENCE_S = 2.0


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    """The test's pipeline folder; whatever it started is killed at the end."""
    made = Site(tmp_path)
    try:
        yield made
    finally:
        made.cleanup()


def _at(event: dict[str, object], key: str = "at") -> datetime:
    return datetime.fromisoformat(str(event[key]))


def _scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Family name -> its samples (labels, value) as served at ``url``."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        family.name: [(dict(s.labels), s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


# -- 1 ---------------------------------------------------------------------------------


def test_growing_runs_stretch_the_interval_never_overlap_and_sigterm_releases(site) -> None:
    site.write_pipeline([0.3, 0.3, 2.5, 3.5, 3.5, 3.5])
    daemon = site.start("main", "--metrics", "127.0.0.1:0")
    owner, url = daemon.owner, daemon.metrics_url

    def six_finished() -> bool:
        return len([r for r in site.runs() if r.finished_at is not None]) >= 6

    wait_for(">= 6 finished runs", six_finished, 150, context=site.describe)
    runs = site.assert_runs_sane()
    assert all(r.status == "succeeded" for r in runs if r.finished_at), site.describe()

    scheduled = site.store.decisions(PIPELINE, kinds=["scheduled"])
    after = {d.detail.get("after_run"): d for d in scheduled if d.detail.get("after_run")}
    # short runs: the cadence itself
    assert after[runs[1].run_id].interval_s == CADENCE_S, after[runs[1].run_id]
    # grown runs: stretched past the cadence, and the next run waited for it
    stretched = [
        d
        for d in scheduled
        if d.interval_s is not None
        and d.interval_s > CADENCE_S
        and "longer than the cadence" in d.reason
    ]
    assert stretched, [(d.interval_s, d.reason) for d in scheduled]
    order = [r.run_id for r in runs]
    followed = [d for d in stretched if d.detail["after_run"] in order[:-1]]
    assert followed, "no stretched decision was followed by a run yet"
    for decision in followed:
        nxt = runs[order.index(decision.detail["after_run"]) + 1]
        assert decision.next_start is not None and nxt.started_at >= decision.next_start, (
            decision,
            nxt,
        )
    assert any("longer than the cadence" in e["text"] for e in daemon.find("scheduled"))

    def leader_metrics() -> dict[str, list[tuple[dict[str, str], float]]] | None:
        families = _scrape(url)
        leads = [
            value
            for labels, value in families.get("planner_leader", [])
            if labels.get("pipeline") == PIPELINE and labels.get("owner") == owner
        ]
        return families if leads == [1.0] else None  # the row may be between beats

    families = wait_for("planner_leader 1 on /metrics", leader_metrics, 30, interval=0.5)
    next_starts = [
        value
        for labels, value in families["planner_next_start_timestamp_seconds"]
        if labels.get("pipeline") == PIPELINE
    ]
    assert len(next_starts) == 1 and next_starts[0] > runs[0].started_at.timestamp()

    began = time.monotonic()
    code = daemon.stop()
    assert code == 0, daemon.tail()
    assert time.monotonic() - began < GRACE_S + 5, "the daemon did not exit within its grace"
    site.assert_stopped_cleanly(daemon)
    # a run the daemon waited for on its way out ended on its own, not cancelled
    runs = site.assert_runs_sane()
    assert all(r.status == "succeeded" for r in runs), site.describe()


# -- 2 ---------------------------------------------------------------------------------


def test_a_daemon_killed_during_a_run_is_replaced_without_a_duplicate_run(site) -> None:
    site.write_pipeline([0.3, 0.3, 4.0, 0.3])
    first = site.start("first")
    wait_for(
        "the third run's step (4 s) to start",
        lambda: site.counter() >= 3,
        90,
        context=site.describe,
    )
    runs = site.runs()
    assert len(runs) == 3 and runs[-1].status == "running", site.describe()
    orphan_id = runs[-1].run_id
    assert first.find("started")[-1]["run_id"] == orphan_id
    child = run_children(site.root).get(orphan_id)
    assert child is not None, "the run's planner run process was not found"

    first.kill9()
    assert child.is_running(), "the run died with its daemon"
    second = site.start("second")
    took = second.wait_event("the new daemon to lead", "leader", timeout=45)
    assert "took over" in took["text"] and f"pid {first.pid}" in took["text"], took

    def orphan_done():
        site.runs()  # the two-running check
        run = site.store.get_run(orphan_id)
        return run if run is not None and run.finished_at is not None else None

    orphan = wait_for("the orphaned run to finish", orphan_done, 45, context=site.describe)
    assert orphan.status == "succeeded", site.describe()
    assert orphan.finished_at is not None

    def new_run():
        found = [r for r in site.succeeded() if r.run_id not in {x.run_id for x in runs}]
        return found[0] if found else None

    later = wait_for("a run after the orphaned one", new_run, 60, context=site.describe)
    assert later.started_at >= orphan.finished_at
    started = second.find("started")
    assert later.run_id in [e["run_id"] for e in started]
    assert orphan_id not in [e["run_id"] for e in started]
    # while the orphan ran, the new daemon deferred (or planned its first start after it)
    deferred = [e for e in second.find("deferred") if e.get("run_id") == orphan_id]
    decided = [e for e in second.events() if e.get("next_start")]
    assert deferred or _at(decided[0], "next_start") >= orphan.finished_at, second.tail()
    # and it never launched a planner run while the orphan held the pipeline
    assert all(_at(e) >= orphan.finished_at for e in started), second.tail()

    runs = site.assert_runs_sane()
    assert all(r.status == "succeeded" for r in runs), site.describe()  # none abandoned
    assert second.stop() == 0, second.tail()
    site.assert_stopped_cleanly(second)
    site.assert_runs_sane()


# -- 3 and 4 -----------------------------------------------------------------------------


def _one_leader_then_takeover(site: Site) -> None:
    site.write_pipeline([0.5])
    pair = [site.start("a"), site.start("b")]
    for daemon in pair:
        daemon.first()  # both are up (each ticks as soon as it has logged its first line)

    def the_leader() -> DaemonProcess | None:
        leading = [d for d in pair if d.find("leader", "now leads it")]
        row = site.store.leaders([PIPELINE]).get(PIPELINE)
        if len(leading) == 1 and row is not None and row.owner_id == leading[0].owner:
            return leading[0]
        return None

    leader = wait_for("one daemon to lead", the_leader, 45, context=site.describe)
    other = pair[1] if leader is pair[0] else pair[0]
    wait_for("two runs to succeed", lambda: len(site.succeeded()) >= 2, 60, context=site.describe)
    # many ticks of the other daemon later: still exactly one leader, and it alone starts runs
    assert [d for d in pair if d.find("leader")] == [leader], site.describe()
    assert site.store.leaders([PIPELINE])[PIPELINE].owner_id == leader.owner
    assert not other.find("started"), other.tail()
    assert {e["run_id"] for e in leader.find("started")} >= {r.run_id for r in site.succeeded()}

    before = {r.run_id for r in site.runs()}
    killed = time.monotonic()
    leader.kill9()
    took = other.wait_event(
        "the other daemon to take over", "leader", "took over", timeout=LEADER_TTL_S + 8
    )
    assert time.monotonic() - killed < LEADER_TTL_S + 8
    assert f"pid {leader.pid}" in took["text"], took
    assert site.store.leaders([PIPELINE])[PIPELINE].owner_id == other.owner

    def run_of_the_new_leader():
        ids = {e["run_id"] for e in other.find("started")}
        done = [r for r in site.succeeded() if r.run_id in ids and r.run_id not in before]
        return done or None

    wait_for("a run of the new leader to succeed", run_of_the_new_leader, 60, context=site.describe)
    site.assert_runs_sane()
    assert other.stop() == 0, other.tail()
    site.assert_stopped_cleanly(other)
    runs = site.assert_runs_sane()
    assert all(r.status == "succeeded" for r in runs), site.describe()


def test_two_daemons_on_one_sqlite_file_have_one_leader_and_the_other_takes_over(site) -> None:
    _one_leader_then_takeover(site)


@pytest.mark.postgres
def test_two_daemons_on_postgresql_have_one_leader_and_the_other_takes_over(
    pg_fresh_url: str, tmp_path: Path
) -> None:
    made = Site(tmp_path, db_url=pg_fresh_url)
    try:
        _one_leader_then_takeover(made)
    finally:
        made.cleanup()  # before the database is dropped


# -- 5 ---------------------------------------------------------------------------------


def test_sighup_keeps_the_loaded_pipeline_when_the_file_breaks_and_reloads_a_valid_one(
    site,
) -> None:
    site.write_pipeline([0.3])
    daemon = site.start("main")
    wait_for("a first run to succeed", site.succeeded, 60, context=site.describe)

    site.pipeline_file.write_text("name: grow\nsteps: [oops\n")
    daemon.send(signal.SIGHUP)
    kept = daemon.wait_event("the broken file's reload", "reload", timeout=30)
    assert "keeping the version loaded" in kept["text"], kept

    def run_after(at: datetime):
        return lambda: [r for r in site.succeeded() if r.started_at > at]

    wait_for("a run after the refused reload", run_after(_at(kept)), 60, context=site.describe)

    # a valid file, another cadence (60 s): reloaded, and the next start follows it
    site.write_pipeline(cadence="60s", max_interval=None)
    daemon.send(signal.SIGHUP)

    def reloaded(n: int):
        return lambda: [e for e in daemon.find("reload") if e["text"] == "reloaded"][n:]

    first = wait_for("the valid file's reload", reloaded(0), 30, context=daemon.tail)[0]

    def on_cadence(seconds: float, since: datetime):
        def found():
            decided = site.store.decisions(PIPELINE, kinds=["scheduled"], since=since)
            return [d for d in decided if d.interval_s == seconds]

        return found

    wait_for(
        "a decision on the 60 s cadence", on_cadence(60.0, _at(first)), 30, context=site.describe
    )
    waiting = site.runs()[-1]
    assert waiting.finished_at is not None, site.describe()  # idle until a minute after it
    # back to 3 s while idle: decided anew at once (not the start decided under 60 s)
    site.write_pipeline(cadence="3s", max_interval=None)
    daemon.send(signal.SIGHUP)
    second = wait_for("the second valid reload", reloaded(1), 30, context=daemon.tail)[0]
    decided = wait_for(
        "a decision on the 3 s cadence", on_cadence(3.0, _at(second)), 15, context=site.describe
    )
    assert "cadence 3.0s" in decided[0].reason, decided[0]
    soon = wait_for("a run soon after", run_after(_at(second)), 25, context=site.describe)
    assert (soon[0].started_at - waiting.started_at).total_seconds() < 45, site.describe()
    assert daemon.proc.poll() is None
    assert daemon.stop() == 0, daemon.tail()
    site.assert_stopped_cleanly(daemon)
    runs = site.assert_runs_sane()
    assert all(r.status == "succeeded" for r in runs), site.describe()


# -- 6: several hosts on one PostgreSQL history ---------------------------------------------

LEASE_TTL_S = 4.0


def _connections(url: str) -> dict[str, int]:
    """application_name -> open connections to the site's database (each planner process
    names itself ``planner <host id> <pid>``)."""
    import psycopg
    from sqlalchemy import make_url

    parsed = make_url(url)
    conninfo = f"host={parsed.host} port={parsed.port} user={parsed.username} dbname=postgres"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity WHERE datname = %s "
            "GROUP BY application_name",
            (parsed.database,),
        ).fetchall()
    return {str(name): int(n) for name, n in rows}


@pytest.mark.postgres
def test_three_daemons_on_three_hosts_one_leader_and_a_dead_hosts_run_is_abandoned_after_expiry(
    pg_fresh_url: str, tmp_path: Path
) -> None:
    """Three ``planner daemon`` processes with distinct ``PLANNER_HOST_ID``s (three hosts
    to one another: none can see another's processes) on one PostgreSQL history. One leads;
    its host dies during a run (the daemon, its ``planner run`` and the task, SIGKILL).
    Another daemon takes the leadership once it expired, never sooner; the dead host's run
    holds its lease until that expires too, and is then taken over ``abandoned`` by the
    next run, which starts after it. No two runs overlap; each run was started once."""
    site = Site(tmp_path, db_url=pg_fresh_url)
    peak: dict[str, int] = {}

    def sample() -> None:
        for name, n in _connections(pg_fresh_url).items():
            peak[name] = max(peak.get(name, 0), n)

    try:
        site.write_pipeline([0.3, 0.3, 30.0, 0.3])
        trio = [
            site.start(h, env={"PLANNER_HOST_ID": f"host-{h}", "PLANNER_LEASE_TTL": "4s"})
            for h in ("a", "b", "c")
        ]
        for daemon in trio:
            daemon.first()

        def the_leader() -> DaemonProcess | None:
            sample()
            leading = [d for d in trio if d.find("leader", "now leads it")]
            return leading[0] if len(leading) == 1 else None

        leader = wait_for("one daemon to lead", the_leader, 45, context=site.describe)
        row = site.store.leaders([PIPELINE])[PIPELINE]
        assert row.owner_id == leader.owner and row.host == f"host-{leader.name}", row

        def long_run_going() -> bool:
            sample()
            return site.counter() >= 3 and site.runs()[-1].status == "running"

        wait_for("the third run's 30 s step", long_run_going, 90, context=site.describe)
        dead_run = site.runs()[-1]
        assert dead_run.host == f"host-{leader.name}", dead_run

        frozen = freeze_host(leader, site.root)
        dead_leader = site.store.leaders([PIPELINE])[PIPELINE]  # as its last beat left it
        dead_lease = site.store.get_lease(PIPELINE)
        kill_frozen(leader, frozen)
        assert dead_leader.owner_id == leader.owner
        assert dead_lease is not None and dead_lease.run_id == dead_run.run_id
        others = [d for d in trio if d is not leader]

        def new_leader() -> DaemonProcess | None:
            sample()
            took = [d for d in others if d.find("leader", "took over")]
            return took[0] if took else None

        heir = wait_for("another daemon to take over", new_leader, LEADER_TTL_S + 15)
        took = heir.find("leader", "took over")[0]
        assert f"host-{leader.name} pid {leader.pid}: expired" in took["text"], took
        row = site.store.leaders([PIPELINE])[PIPELINE]
        assert row.owner_id == heir.owner
        assert row.acquired_at >= dead_leader.expires_at  # only once it expired (server time)

        def abandoned() -> Any:
            sample()
            run = site.store.get_run(dead_run.run_id)
            return run if run is not None and run.status == "abandoned" else None

        gone = wait_for(
            "the dead host's run to be abandoned",
            abandoned,
            LEASE_TTL_S + 30,
            context=site.describe,
        )
        # taken over only after its lease expired: not by process checks across hosts
        assert gone.finished_at is not None and gone.finished_at >= dead_lease.expires_at
        (attempt,) = site.store.attempts_for_run(dead_run.run_id)
        assert attempt.status == "interrupted" and attempt.finished_at is not None

        def next_run() -> Any:
            sample()
            after = [r for r in site.succeeded() if r.started_at > dead_run.started_at]
            return after[0] if after else None

        later = wait_for("a run after the dead one", next_run, 45, context=site.describe)
        assert later.started_at >= gone.finished_at >= dead_lease.expires_at
        assert later.host == f"host-{heir.name}"
        # while the dead run held its lease, the heir deferred (or planned after it)
        assert heir.find("deferred") or not [
            e for e in heir.find("started") if _at(e) < dead_lease.expires_at
        ], heir.tail()

        # the record: no two runs overlap; each started once by one daemon; one leader
        runs = site.assert_runs_sane()
        started = [e["run_id"] for d in trio for e in d.find("started")]
        assert len(started) == len(set(started)), started
        assert {r.run_id for r in runs} <= set(started)
        third = next(d for d in others if d is not heir)
        assert not third.find("leader", "now leads it") and not third.find("started")
        assert {r.status for r in runs} == {"succeeded", "abandoned"}, site.describe()
        assert heir.stop() == 0, heir.tail()
        assert third.stop() == 0, third.tail()
        site.assert_stopped_cleanly(heir)
    finally:
        site.cleanup()  # before the database is dropped (and its connections counted)
    planner = {name: n for name, n in peak.items() if name.startswith("planner ")}
    assert planner, peak
    assert max(planner.values()) <= 8, peak  # pool_size 4 + max_overflow 4
    print(f"\npeak connections per process: {sorted(planner.items())}")
